"""The station config as plain data: what one TOML file says the station does.

Frozen dataclasses and the Circular 10 facts they are checked against, nothing else: no file
is read, no port opened, no thread started here. That is the point of the room. The reader
(:mod:`edge_agent.config.reader`) turns a TOML document into these objects, collecting every
mistake; the poll room (:mod:`edge_agent.poll.build`) turns ``PollConfig`` into open transports;
the pipeline (:mod:`edge_agent.core.pipeline`) reads ``channels``, ``averaging`` and
``normalise``. Because nothing here does I/O, a test or a tool can build a config from a few
lines of Python, without a TOML file or a serial port, and the sans-IO cores can import it
(import-linter checks both: see ``[tool.importlinter]`` in pyproject.toml).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.profile import Profile
from drivers.serial_settings import SerialSettings
from edge_agent.averaging.normalise import Normalisation
from edge_agent.averaging.rules import RULES, ValidityRule

CIRCULAR10_SYMBOLS = (
    "Flow", "Temp", "Color", "pH", "TSS", "COD", "NH4", "TP", "TN", "TOC", "Cl", "RH", "P", "NO",
    "NO2", "NOx", "CO", "SO2", "O2", "H2S", "NH3", "PM", "O3", "PM10", "PM2,5",
)  # fmt: skip
"""Parameter symbols of Circular 10/2021/TT-BTNMT: the names the centre files records under."""

DAY_S = 86_400
_TAG = re.compile(r"[A-Za-z0-9]{1,16}")


def is_symbol(name: str) -> bool:
    """A Circular 10 symbol, or one tagged for a second measuring point of the same parameter
    (``Temp_inlet``, ``Flow_2``): the centre files it under the symbol before the ``_``."""
    base, sep, tag = name.partition("_")
    return base in CIRCULAR10_SYMBOLS and (not sep or bool(_TAG.fullmatch(tag)))


NAME_PART = re.compile(r"[A-Za-z0-9-]{1,64}")
"""What a province, facility or station name may be in a Circular 10 file name
(``Province_Facility_Station_YYYYMMDDhhmmss.txt``): ``_`` separates them in the file name,
and anything outside ASCII letters, digits and ``-`` is at the mercy of the FTP server. The
reader checks ``[station]`` against it; :mod:`edge_agent.uplinks.circular10.render` names files
with it."""


# ------------------------------------------------------------------ [poll], [[bus]], [[device]]


@dataclass(frozen=True, slots=True)
class Device:
    """One analyser on a bus: which profile, which unit id, which channels, how often."""

    name: str
    profile: Profile
    unit: int
    channels: tuple[str, ...] | None = None  # None: every channel of the profile
    interval: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.unit <= 247:
            raise ValueError(f"device {self.name}: unit id {self.unit} is outside 1..247")
        if not self.interval > 0:
            raise ValueError(f"device {self.name}: interval {self.interval} is not positive")
        for ch in self.channels or ():
            if ch not in self.profile.channel_names:
                raise ValueError(f"device {self.name}: profile {self.profile.name} has no "
                                 f"channel {ch!r}")

    @property
    def channel_names(self) -> list[str]:
        return list(self.channels) if self.channels is not None else self.profile.channel_names


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Per-transaction timeout, retries for a healthy device, back-off for a failing one."""

    timeout: float = 1.0
    retries: int = 1
    backoff_factor: float = 2.0
    backoff_max: float = 60.0


@dataclass(frozen=True, slots=True)
class BusConfig:
    """A ``[[bus]]``: a serial line (``serial``) or a Modbus TCP endpoint (``host``). Opening
    it is :func:`edge_agent.poll.build.open_transport`'s job, not this data's."""

    name: str
    serial: SerialSettings | None = None
    host: str | None = None
    tcp_port: int = 502
    turnaround: float | None = None


@dataclass(frozen=True, slots=True)
class PollConfig:
    policy: PollPolicy
    buses: tuple[BusConfig, ...]
    devices: tuple[tuple[str, Device], ...]  # (bus name, device)


# --------------------------------------------------------------------------- the station


@dataclass(frozen=True, slots=True)
class StationInfo:
    id: str
    province: str = ""
    facility: str = ""
    name: str = ""
    timezone: str = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True, slots=True)
class AgentSettings:
    state_dir: Path
    control_socket: Path
    record_retention_days: float = 60.0
    sample_retention_days: float = 7.0
    sample_flush_s: float = 5.0
    clock_jump_tolerance_s: float = 2.0
    #: how long closing windows waits for a field node's log at most (edge_agent.core.backfill)
    backfill_horizon_s: float = 900.0


@dataclass(frozen=True, slots=True)
class ChannelMap:
    """A profile channel of a device, reported as ``symbol`` in ``unit``."""

    device: str
    channel: str  # the profile's channel name
    symbol: str
    unit: str
    period_s: float  # the device's poll interval: the averaging's expected sample period


@dataclass(frozen=True, slots=True)
class Rollup:
    width: int
    child: int
    rule: ValidityRule


@dataclass(frozen=True, slots=True)
class AveragingSettings:
    windows: tuple[int, ...] = (300,)
    rule: ValidityRule = RULES["coverage_75"]
    grace_s: float = 30.0
    rollups: tuple[Rollup, ...] = ()


@dataclass(frozen=True, slots=True)
class NormaliseSettings:
    channels: tuple[str, ...]
    o2_channel: str | None
    how: Normalisation


@dataclass(frozen=True, slots=True)
class MqttSettings:
    window: int = 8
    ack_timeout_s: float = 60.0
    max_packets_per_s: float = 0.0
    backoff_cap_s: float = 60.0


@dataclass(frozen=True, slots=True)
class StationConfig:
    source: Path
    station: StationInfo
    agent: AgentSettings
    poll: PollConfig
    channels: tuple[ChannelMap, ...]
    averaging: AveragingSettings
    normalise: tuple[NormaliseSettings, ...] = ()
    mqtt: MqttSettings | None = None
    circular10: Circular10Settings | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def channel_of(self, device: str, channel: str) -> ChannelMap | None:
        for c in self.channels:
            if c.device == device and c.channel == channel:
                return c
        return None



@dataclass(frozen=True, slots=True)
class Circular10Settings:
    """``[uplink.circular10]``: where and how the legacy uplink pushes its files."""

    host: str
    port: int = 21
    user: str = "anonymous"
    password: str = field(default="", repr=False)
    directory: str = ""  # "" : the login directory
    tls: bool = True
    ca_file: Path | None = None
    interval_minutes: float = 5.0
    window: int = 300
    retention_days: float = 60.0
    timeout_s: float = 30.0
    backoff_cap_s: float = 300.0



def records_per_day(cfg: StationConfig) -> float:
    """Records the station makes a day: one per channel per window, and per roll-up."""
    widths = [*cfg.averaging.windows, *(r.width for r in cfg.averaging.rollups)]
    return len(cfg.channels) * sum(DAY_S / w for w in widths)

