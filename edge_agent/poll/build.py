"""The buses-and-devices part of a station config: what to poll, where, how often.

The smallest shape the agent's config will later extend (``quantrac diag watch --config``
reads it today)::

    [poll]                      # optional: defaults for every device
    timeout = 1.0               # seconds per transaction
    retries = 1
    backoff_max = 60.0

    [[bus]]
    name = "rs485-1"
    port = "/dev/ttyUSB0"       # a serial line: port, baud, parity (N/E/O), stopbits
    baud = 9600
    parity = "N"
    turnaround = 0.005          # optional pause between frames (default: 3.5 characters)

    [[bus]]
    name = "plc"
    host = "192.168.1.10"       # or Modbus TCP: host, tcp_port (default 502)
    tcp_port = 502

    [[device]]
    name = "ph1"
    bus = "rs485-1"
    profile = "ph_probe"        # a built-in profile name, or a path to a .toml file
    unit = 1
    interval = 10.0             # seconds between polls (default 10)
    channels = ["pH", "Temp"]   # optional: default every channel of the profile

Parsing lives in :mod:`edge_agent.config.reader` (the full station config, which extends this
shape); every mistake is reported there, all at once, as a ``ConfigError`` (a subclass of the
one here) naming the file, the key path, the value and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.transport import RtuTransport, SerialSettings, TcpTransport, Transport
from edge_agent.poll.poller import Bus, Device, PollPolicy


class ConfigError(ValueError):
    """A config that cannot be used; names the file, the key path and the value."""


@dataclass(frozen=True, slots=True)
class BusConfig:
    name: str
    serial: SerialSettings | None = None
    host: str | None = None
    tcp_port: int = 502
    turnaround: float | None = None

    def transport(self) -> Transport:
        if self.serial is not None:
            return RtuTransport(self.serial, turnaround=self.turnaround)
        assert self.host is not None
        return TcpTransport(self.host, self.tcp_port)


@dataclass(frozen=True, slots=True)
class PollConfig:
    policy: PollPolicy
    buses: tuple[BusConfig, ...]
    devices: tuple[tuple[str, Device], ...]  # (bus name, device)

    def build(self) -> list[Bus]:
        """Fresh transports, one per bus, with their devices (buses without devices dropped)."""
        out = []
        for bus in self.buses:
            devices = tuple(d for b, d in self.devices if b == bus.name)
            if devices:
                out.append(Bus(bus.transport(), devices))
        return out


def load_poll_config(path: str | Path) -> PollConfig:
    """The [poll], [[bus]] and [[device]] of a config file (a full station config, or only
    those tables). The one loader is :func:`edge_agent.config.reader.load_config`; this is its
    poll-only view, so ``diag watch`` reads the agent's own config the same way the agent does.
    """
    from edge_agent.config.reader import load_config

    return load_config(path, station_required=False).poll


def parse_poll_config(doc: Mapping[str, Any], source: str | Path) -> PollConfig:
    from edge_agent.config.reader import parse_config

    return parse_config(doc, Path(source), station_required=False).poll
