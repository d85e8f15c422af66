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
from datetime import datetime
from pathlib import Path
from typing import Any

from drivers.profile import Profile
from drivers.serial_settings import SerialSettings
from edge_agent.averaging.normalise import Normalisation
from edge_agent.averaging.rolling import Rolling
from edge_agent.averaging.rules import RULES, ValidityRule
from edge_agent.averaging.totaliser import TotaliserSpec
from edge_agent.config.limits import Limit
from edge_agent.config.sampler import SamplerSettings
from edge_agent.config.web import WebSettings

CIRCULAR10_SYMBOLS = (
    "Flow", "Temp", "Color", "pH", "TSS", "COD", "NH4", "TP", "TN", "TOC", "Cl", "RH", "P", "NO",
    "NO2", "NOx", "CO", "SO2", "O2", "H2S", "NH3", "PM", "O3", "PM10", "PM2,5",
    "H2O", "HCl", "HF",  # stack gas: moisture for wet -> dry; acid gases of QCVN 19:2024
    "TSP", "WS", "WD", "SR", "Level", "Total", "V",
)  # fmt: skip
"""Parameter symbols of Circular 10/2021/TT-BTNMT: the names the centre files records under.

Ambient air (QCVN 05:2023/BTNMT) adds total suspended particulate ``TSP`` and the weather:
wind speed ``WS``, wind direction ``WD`` and solar radiation ``SR`` (temperature, humidity
and pressure are ``Temp``, ``RH``, ``P`` as elsewhere). Provinces' receivers spell some of
these their own way (``PM-10``, ``PM-2-5``, ``PM2.5``, ``Wind_Dir``): that is the receiver's
``aliases``, so the record keeps one name whatever the province.

Groundwater extraction (Circular 17/2021/TT-BTNMT) adds the water level in the production well
``Level`` (m), the flowmeter's totaliser reading ``Total`` (m3) and the extracted volume ``V``
(m3 per day or month, from the totaliser: ``edge_agent.averaging.totaliser``); the flow is
``Flow``. A site's wells are tagged: ``Flow_W1``, ``Level_W1``, ``V_W1``."""

DAY_S = 86_400
_TAG = re.compile(r"[A-Za-z0-9]{1,16}")


def is_symbol(name: str) -> bool:
    """A Circular 10 symbol, or one tagged for a second measuring point of the same parameter
    (``Temp_inlet``, ``Flow_2``): the centre files it under the symbol before the ``_``."""
    base, sep, tag = name.partition("_")
    return base in CIRCULAR10_SYMBOLS and (not sep or bool(_TAG.fullmatch(tag)))


FILE_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""What a Circular 10 file-name prefix may be: the province issues it (``HN_PHCH_NUOPCH_``,
``LSOS_KHIKHO_``) and the station writes it verbatim; anything outside ASCII letters, digits,
``_``, ``-`` and ``.`` (a blank, a slash, a Vietnamese letter) is at the mercy of the FTP
server's code page and of the receiver's pattern, so the reader refuses it."""


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
    """A ``[[bus]]``: a serial line (``serial``) or a TCP endpoint (``host``), the latter
    speaking Modbus TCP (``transport`` "tcp") or raw RTU frames through a serial device server
    ("rtu-over-tcp"). Opening it is :func:`edge_agent.poll.build.open_transport`'s job, not
    this data's."""

    name: str
    serial: SerialSettings | None = None
    host: str | None = None
    tcp_port: int = 502
    turnaround: float | None = None
    transport: str = "tcp"


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
    #: "mean", or "direction" for a wind vane (vector mean; the default for a ``WD`` symbol)
    average: str = "mean"
    #: a direction weighted by this symbol's speed (a channel of the same device)
    speed: str | None = None
    #: with ``speed``: the symbol its window's vector mean speed is reported under
    vector_speed: str | None = None


@dataclass(frozen=True, slots=True)
class Rollup:
    width: int
    child: int
    rule: ValidityRule


@dataclass(frozen=True, slots=True)
class RollingSettings:
    """``[[averaging.rolling]]``: a rolling average (8-hour CO/O3) of these channels."""

    rolling: Rolling
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AveragingSettings:
    windows: tuple[int, ...] = (300,)
    rule: ValidityRule = RULES["coverage_75"]
    grace_s: float = 30.0
    rollups: tuple[Rollup, ...] = ()
    rolling: tuple[RollingSettings, ...] = ()


@dataclass(frozen=True, slots=True)
class NormaliseSettings:
    channels: tuple[str, ...]
    o2_channel: str | None
    how: Normalisation
    h2o_channel: str | None = None  # the measured H2O (%) when how.h2o_measured
    standard: str | None = None  # e.g. "QCVN 19:2024": edge_agent.config.standards
    source: str | None = None  # its source category, e.g. "gas_turbine"


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
    totalisers: tuple[TotaliserSpec, ...] = ()  # [[totaliser]]: edge_agent.config.totalisers
    limits: tuple[Limit, ...] = ()  # [[limit]]: edge_agent.config.limits
    sampler: SamplerSettings | None = None  # [sampler]: edge_agent.config.sampler
    web: WebSettings | None = None  # [web]: edge_agent.config.web

    def channel_of(self, device: str, channel: str) -> ChannelMap | None:
        for c in self.channels:
            if c.device == device and c.channel == channel:
                return c
        return None



REMOTE_DIR_FIELDS = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "yyyyMM": "%Y%m", "yyyyMMdd": "%Y%m%d"}
"""The fields a ``remote_dir`` template may use, each filled from the file's local time."""
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def remote_dir_ok(template: str) -> bool:
    """A ``remote_dir`` template the uplink can fill: only :data:`REMOTE_DIR_FIELDS` in
    braces, no ``.``/``..`` segment, no backslash or line break (a path on any server)."""
    bare = _PLACEHOLDER.sub("", template)
    return (all(f in REMOTE_DIR_FIELDS for f in _PLACEHOLDER.findall(template))
            and not any(c in bare for c in "\r\n\0\\{}")
            and not any(part in (".", "..") for part in template.split("/")))


def fill_remote_dir(template: str, at_local: datetime) -> str:
    """The folder of a file stamped ``at_local``: ``/{yyyy}/{MM}/{dd}`` -> ``2026/11/23``
    (no leading or trailing ``/``: it is joined under the station's ``directory``)."""
    return _PLACEHOLDER.sub(lambda m: at_local.strftime(REMOTE_DIR_FIELDS[m[1]]),
                            template).strip("/")


TRANSPORTS = ("ftp", "ftps", "sftp")
"""How files reach a province: plain FTP (most, from a whitelisted address), SFTP (some), FTPS
(explicit ``AUTH TLS``; rare)."""


@dataclass(frozen=True, slots=True)
class Circular10Receiver:
    """``[uplink.circular10.receiver]``: what the province's receiving software expects.

    Everything that varies from one province to the next is here, as data, so a new province
    is a config change, not a code change. Each field says what receivers in service do that
    made it necessary; :mod:`edge_agent.uplinks.circular10.render` applies the file-shape ones,
    the uplink the transfer ones.
    """

    #: the file name is this prefix, verbatim as the province issued it (``HN_PHCH_NUOPCH_``,
    #: ``LSOS_KHIKHO_``), then ``yyyyMMddHHmmss.txt``: receivers match the prefix exactly
    file_prefix: str
    #: the dated folder under ``directory`` a file goes into: receivers scan only dated
    #: sub-folders (``/{yyyy}/{MM}/{dd}``, ``/{yyyyMMdd}``); ``""`` is the base folder itself
    remote_dir: str = "/{yyyy}/{MM}/{dd}"
    #: which instant names a window: ``end`` (when its mean exists: a 10:00-10:05 mean is
    #: stamped 10:05, so it is not read as 5 minutes late) or ``start``
    stamp: str = "end"
    #: how the receiver splits a line: ``tab`` (exactly 5 TAB-separated fields) or
    #: ``whitespace`` (any run of blanks; an empty field then shifts the columns, so the
    #: placeholders below must not be empty)
    fields: str = "tab"
    line_end: str = "\r\n"
    #: the value field of a window without a value (never a number); ``omit_missing`` drops
    #: such lines instead
    missing_value: str = ""
    omit_missing: bool = False
    #: a window whose coverage is below the validity rule: ``report`` its mean with the
    #: instrument's status, or ``omit`` the line
    invalid: str = "report"
    #: the unit field of a unitless parameter (pH)
    empty_unit: str = ""
    #: symbol in our config -> name in the file (``PM2,5`` -> ``PM2.5``)
    aliases: tuple[tuple[str, str], ...] = ()
    #: symbol -> the ASCII unit the file carries, when not the ASCII form of the display unit
    units: tuple[tuple[str, str], ...] = ()
    transport: str = "ftps"
    passive: bool = True
    #: ``rename``: store as a temp name, then rename (falls back to ``direct`` by itself, and
    #: remembers, when the account may not rename); ``direct``: store under the final name
    upload: str = "rename"
    #: 0: as fast as the link allows; a receiver that reads only the newest file needs at
    #: most one file per scan period
    files_per_minute: float = 0.0

    def alias(self, symbol: str) -> str:
        return dict(self.aliases).get(symbol, symbol)

    def unit_for(self, symbol: str) -> str | None:
        return dict(self.units).get(symbol)


@dataclass(frozen=True, slots=True)
class Circular10Settings:
    """``[uplink.circular10]``: where and how the legacy uplink pushes its files."""

    host: str
    receiver: Circular10Receiver
    port: int = 21
    user: str = "anonymous"
    password: str = field(default="", repr=False)
    directory: str = ""  # "" : the login directory; the dated folders go under it
    ca_file: Path | None = None
    #: SFTP: the server's key as the province's sheet gives it (``ssh-ed25519 AAAA...``)
    #: and/or an OpenSSH known_hosts file; one of them is required (no trust on first use)
    host_key: str | None = None
    known_hosts: Path | None = None
    key_file: Path | None = None  # SFTP: a private key instead of (or with) the password
    interval_minutes: float = 5.0
    allow_interval_over_5_min: bool = False
    window: int = 300
    retention_days: float = 60.0
    timeout_s: float = 30.0
    backoff_cap_s: float = 300.0

    @property
    def transport(self) -> str:
        return self.receiver.transport


def circular10_warnings(c: Circular10Settings) -> list[str]:
    """What ``config check`` should say about a config that is valid but not compliant."""
    out: list[str] = []
    if c.interval_minutes > 5 and not c.allow_interval_over_5_min:
        out.append(f"uplink.circular10.interval_minutes = {c.interval_minutes:g}: Circular 10 "
                   "wants a file every 5 minutes at most; set allow_interval_over_5_min = true "
                   "if the province agreed to this")
    if c.transport == "ftp":
        out.append("uplink.circular10.receiver.transport = 'ftp': the password and the files "
                   "cross the network in clear text (usual for provinces; ftps or sftp if "
                   "the province offers it)")
    return out


def records_per_day(cfg: StationConfig) -> float:
    """Records the station makes a day: one per channel per window, and per roll-up; a
    rolling average one per child window of each of its channels."""
    widths = [*cfg.averaging.windows, *(r.width for r in cfg.averaging.rollups)]
    rolling = sum(len(ro.channels) * DAY_S / ro.rolling.child_s for ro in cfg.averaging.rolling)
    derived = sum(1 for c in cfg.channels if c.vector_speed)  # a vector mean speed each
    # [[totaliser]]: a volume a day, and a month's (1/28 a day at most)
    volumes = sum(("day" in t.periods) + ("month" in t.periods) / 28 for t in cfg.totalisers)
    return (len(cfg.channels) + derived) * sum(DAY_S / w for w in widths) + rolling + volumes

