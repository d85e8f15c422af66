"""The simulated station's config: which analysers, on which bus, with which schedule.

::

    name = "wastewater-demo"

    [[device]]
    name = "cabinet"
    profile = "wastewater_multi"   # a built-in profile, or a path to a .toml (relative to here)
    unit = 1                       # Modbus unit id, unique per transport
    transports = ["tcp", "rtu"]    # served over Modbus TCP, the RTU pty bus, or both
    seed = 11                      # optional: the signals are a function of (seed, channel, t)
    calibration = { every_minutes = 60, seconds = 120, offset_seconds = 0 }   # optional

    [[device.fault]]               # optional, any number: relative to the station's start
    start = 300                    # seconds after start
    duration = 60                  # seconds
    fault = "no_answer"            # a wire fault (see hw_sim.faults.FAULTS) ...
    # status = "fault"             # ... or a status the analyser reports instead
    # code = 4                     # for fault = "exception"; delay = 2.0 for fault = "slow"

Every mistake raises :class:`ConfigError` naming the file, the key path and the value.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.profile import Profile, ProfileError, resolve_profile
from hw_sim.faults import FAULTS, FaultSpec
from protocol.model import Status

TRANSPORTS = ("tcp", "rtu")
_STATUSES = {"calibrating": Status.CALIBRATING, "fault": Status.FAULT,
             "maintenance": Status.MAINTENANCE}


class ConfigError(ValueError):
    """A station config that cannot be used; names the file, the key path and the value."""

    def __init__(self, file: str, key: str, value: object, expected: str) -> None:
        self.file, self.key, self.value = file, key, value
        super().__init__(f"{file}: {key} = {value!r}: {expected}")


@dataclass(frozen=True)
class Calibration:
    """Calibrating for ``seconds`` every ``every_minutes``, aligned to the wall clock."""

    every_minutes: float
    seconds: float
    offset_seconds: float = 0.0

    def active(self, t: float) -> bool:
        return (t - self.offset_seconds) % (self.every_minutes * 60.0) < self.seconds


@dataclass(frozen=True)
class ScheduledFault:
    """A wire fault or a reported status, from ``start`` to ``start + duration`` (station time)."""

    start: float
    duration: float
    fault: FaultSpec | None = None
    status: Status | None = None

    def active(self, elapsed: float) -> bool:
        return self.start <= elapsed < self.start + self.duration


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    profile: Profile
    unit: int
    transports: tuple[str, ...] = ("tcp",)
    seed: int = 0
    calibration: Calibration | None = None
    faults: tuple[ScheduledFault, ...] = ()


@dataclass(frozen=True)
class StationConfig:
    name: str
    devices: tuple[DeviceConfig, ...]
    source: str = ""

    def device(self, unit: int) -> DeviceConfig:
        for d in self.devices:
            if d.unit == unit:
                return d
        raise KeyError(f"no simulated device with unit id {unit}")


def load_station(path: str | Path) -> StationConfig:
    src = str(path)
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(src, "<file>", src, f"cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(src, "<toml>", str(exc), "is not valid TOML") from None
    return parse_station(doc, src)


def _get(doc: Mapping[str, Any], key: str, path: str, src: str, kind: type | tuple[type, ...],
         default: Any = ...) -> Any:
    if key not in doc:
        if default is ...:
            raise ConfigError(src, path, "<missing>", "required key is missing")
        return default
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(src, path, value, f"expected {getattr(kind, '__name__', kind)}")
    return value


def _keys(doc: Any, path: str, src: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise ConfigError(src, path, doc, "expected a table")
    for k in doc:
        if k not in allowed:
            raise ConfigError(src, f"{path}.{k}" if path else k, doc[k],
                              f"unknown key; expected one of {', '.join(sorted(allowed))}")
    return doc


def parse_station(doc: Mapping[str, Any], src: str = "<config>") -> StationConfig:
    _keys(doc, "", src, {"name", "device"})
    name = _get(doc, "name", "name", src, str, "station")
    devices_doc = _get(doc, "device", "device", src, list)
    devices: list[DeviceConfig] = []
    taken: dict[tuple[str, int], str] = {}
    for i, d in enumerate(devices_doc):
        dev = _device(d, f"device[{i}]", src)
        for tr in dev.transports:
            if (tr, dev.unit) in taken:
                raise ConfigError(src, f"device[{i}].unit", dev.unit,
                                  f"unit id already used on {tr} by {taken[(tr, dev.unit)]!r}")
            taken[(tr, dev.unit)] = dev.name
        devices.append(dev)
    if not devices:
        raise ConfigError(src, "device", [], "a station needs at least one [[device]]")
    return StationConfig(name=name, devices=tuple(devices), source=src)


def _device(d: Any, path: str, src: str) -> DeviceConfig:
    d = _keys(d, path, src, {"name", "profile", "unit", "transports", "seed", "calibration",
                             "fault"})
    name = _get(d, "name", f"{path}.name", src, str)
    ref = _get(d, "profile", f"{path}.profile", src, str)
    try:
        profile = resolve_profile(ref, src)
    except ProfileError as exc:
        raise ConfigError(src, f"{path}.profile", ref, f"unusable profile: {exc}") from None
    unit = _get(d, "unit", f"{path}.unit", src, int)
    if not 1 <= unit <= 247:
        raise ConfigError(src, f"{path}.unit", unit, "expected a unit id in 1..247")
    transports = _get(d, "transports", f"{path}.transports", src, list, ["tcp"])
    if not transports or any(t not in TRANSPORTS for t in transports):
        raise ConfigError(src, f"{path}.transports", transports,
                          "expected a non-empty list of 'tcp' and/or 'rtu'")
    seed = _get(d, "seed", f"{path}.seed", src, int, unit)
    calibration = None
    if "calibration" in d:
        cpath = f"{path}.calibration"
        c = _keys(d["calibration"], cpath, src, {"every_minutes", "seconds", "offset_seconds"})
        every = float(_get(c, "every_minutes", f"{cpath}.every_minutes", src, (int, float)))
        seconds = float(_get(c, "seconds", f"{cpath}.seconds", src, (int, float)))
        offset = float(_get(c, "offset_seconds", f"{cpath}.offset_seconds", src, (int, float),
                            0.0))
        if every <= 0 or not 0 < seconds < every * 60:
            raise ConfigError(src, cpath, dict(c),
                              "expected every_minutes > 0 and 0 < seconds < the period")
        calibration = Calibration(every, seconds, offset)
    faults = []
    for j, f in enumerate(_get(d, "fault", f"{path}.fault", src, list, [])):
        faults.append(_fault(f, f"{path}.fault[{j}]", src))
    return DeviceConfig(name=name, profile=profile, unit=unit, transports=tuple(transports),
                        seed=seed, calibration=calibration, faults=tuple(faults))


def _fault(f: Any, path: str, src: str) -> ScheduledFault:
    f = _keys(f, path, src, {"start", "duration", "fault", "status", "code", "delay"})
    start = float(_get(f, "start", f"{path}.start", src, (int, float)))
    duration = float(_get(f, "duration", f"{path}.duration", src, (int, float)))
    if start < 0 or duration <= 0:
        raise ConfigError(src, path, dict(f), "expected start >= 0 and duration > 0")
    if ("fault" in f) == ("status" in f):
        raise ConfigError(src, path, dict(f), "expected exactly one of fault or status")
    if "status" in f:
        status = _get(f, "status", f"{path}.status", src, str)
        if status not in _STATUSES:
            raise ConfigError(src, f"{path}.status", status,
                              f"expected one of {', '.join(_STATUSES)}")
        return ScheduledFault(start, duration, status=_STATUSES[status])
    name = _get(f, "fault", f"{path}.fault", src, str)
    if name not in FAULTS:
        raise ConfigError(src, f"{path}.fault", name, f"expected one of {', '.join(FAULTS)}")
    code = _get(f, "code", f"{path}.code", src, int, 4)
    delay = float(_get(f, "delay", f"{path}.delay", src, (int, float), 2.0))
    try:
        spec = FaultSpec(name, code=code, delay=delay)
    except ValueError as exc:
        raise ConfigError(src, path, dict(f), str(exc)) from None
    return ScheduledFault(start, duration, fault=spec)
