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

Every mistake raises :class:`ConfigError` naming the file, the key and the value.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.profile import ProfileError, resolve_profile
from drivers.transport import RtuTransport, SerialSettings, TcpTransport, Transport
from edge_agent.poller import Bus, Device, PollPolicy


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
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_poll_config(doc, path)


def _get(doc: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...],
         default: Any = ...) -> Any:
    if key not in doc:
        if default is ...:
            raise ConfigError(f"{where}.{key}: required key is missing")
        return default
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where}.{key} = {value!r}: wrong type")
    return value


def parse_poll_config(doc: Mapping[str, Any], source: str | Path) -> PollConfig:
    src = str(source)
    poll = doc.get("poll", {})
    num = (int, float)
    try:
        policy = PollPolicy(
            timeout=float(_get(poll, "timeout", f"{src}: poll", num, 1.0)),
            retries=int(_get(poll, "retries", f"{src}: poll", int, 1)),
            backoff_max=float(_get(poll, "backoff_max", f"{src}: poll", num, 60.0)),
        )
        buses: dict[str, BusConfig] = {}
        for i, b in enumerate(doc.get("bus", [])):
            where = f"{src}: bus[{i}]"
            name = _get(b, "name", where, str)
            if name in buses:
                raise ConfigError(f"{where}.name = {name!r}: duplicate bus name")
            turnaround = b.get("turnaround")
            if turnaround is not None:
                turnaround = float(_get(b, "turnaround", where, num))
            if "port" in b:
                try:
                    serial = SerialSettings(
                        _get(b, "port", where, str), _get(b, "baud", where, int, 9600),
                        _get(b, "parity", where, str, "N"), _get(b, "stopbits", where, int, 1))
                except ValueError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
                buses[name] = BusConfig(name, serial=serial, turnaround=turnaround)
            elif "host" in b:
                buses[name] = BusConfig(name, host=_get(b, "host", where, str),
                                        tcp_port=_get(b, "tcp_port", where, int, 502))
            else:
                raise ConfigError(f"{where}: a bus needs either port (serial) or host (TCP)")
        devices: list[tuple[str, Device]] = []
        names: set[str] = set()
        for i, d in enumerate(doc.get("device", [])):
            where = f"{src}: device[{i}]"
            name = _get(d, "name", where, str)
            if name in names:
                raise ConfigError(f"{where}.name = {name!r}: duplicate device name")
            names.add(name)
            bus = _get(d, "bus", where, str)
            if bus not in buses:
                raise ConfigError(f"{where}.bus = {bus!r}: no such bus "
                                  f"(known: {', '.join(buses) or 'none'})")
            channels = d.get("channels")
            try:
                device = Device(
                    name, resolve_profile(_get(d, "profile", where, str), src),
                    _get(d, "unit", where, int),
                    tuple(_get(d, "channels", where, list)) if channels is not None else None,
                    float(_get(d, "interval", where, num, 10.0)),
                )
            except ValueError as exc:
                if isinstance(exc, ConfigError | ProfileError):
                    raise
                raise ConfigError(f"{where}: {exc}") from None
            devices.append((bus, device))
    except AttributeError:
        raise ConfigError(f"{src}: [[bus]], [[device]] and [poll] must be tables") from None
    return PollConfig(policy, tuple(buses.values()), tuple(devices))

