"""The simulated station's config: which analysers, on which bus, with which schedule.

::

    name = "wastewater-demo"

    [[device]]
    name = "cabinet"
    profile = "wastewater_multi"   # a built-in profile, or a path to a .toml (relative to here)
    unit = 1                       # Modbus unit id, unique per transport
    transports = ["tcp", "rtu"]    # served over Modbus TCP, the RTU pty bus, or both
                                   # (the rtu units are also behind --rtu-tcp-port)
    coils = 4                      # optional: coils 0..3 (FC01/05/15), all off at start
    discrete_inputs = 4            # optional: inputs 0..3 (FC02); input i reads coil i,
                                   # as a sampler's busy contact follows its trigger relay
    holding = { address = 100, count = 4 }   # optional: holding registers 100..103 that a
                                   # master writes (FC06/FC16) and reads back (FC03), 0 at
                                   # start: a sampler's trigger or setpoint words. Not over
                                   # the profile's own FC03 registers (those are measured)
    log_period_s = 60              # field_node profile only: the node's log slot, seconds
                                   # (a divisor of 3600; default 60, as the firmware's)
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

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from drivers.profile import Profile, ProfileError, resolve_profile
from hw_sim.faults import FAULTS, FaultSpec
from protocol.config_file import ConfigError as _ConfigBase
from protocol.config_file import Reader, read_toml
from protocol.model import Status

TRANSPORTS = ("tcp", "rtu")
_STATUSES = {"calibrating": Status.CALIBRATING, "fault": Status.FAULT,
             "maintenance": Status.MAINTENANCE}


class ConfigError(_ConfigBase):
    """A station config that cannot be used; names the file, the key path and the value.

    Reading, type checks and the message are :mod:`protocol.config_file`'s, the same as every
    config file's; the first mistake raises.
    """


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
    coils: int = 0
    discrete_inputs: int = 0
    holding: tuple[int, int] | None = None  # (first address, count) of writable registers
    log_period_s: int = 60

    @property
    def field_node(self) -> bool:
        """The quantrac field node's profile (or a renamed copy: its model line stays): the
        simulator then serves the node's register map and log (hw_sim.field_node)."""
        return self.profile.name == "field_node" or self.profile.model.startswith(
            "quantrac field node")


@dataclass(frozen=True)
class SimStationConfig:
    """The simulated station: its devices (named so, not ``StationConfig``, because
    ``edge_agent.config.model.StationConfig`` is the gateway's own station config)."""

    name: str
    devices: tuple[DeviceConfig, ...]
    source: str = ""

    def device(self, unit: int) -> DeviceConfig:
        for d in self.devices:
            if d.unit == unit:
                return d
        raise KeyError(f"no simulated device with unit id {unit}")


def load_station(path: str | Path) -> SimStationConfig:
    return parse_station(read_toml(path, ConfigError), str(path))


def parse_station(doc: Mapping[str, Any], src: str = "<config>") -> SimStationConfig:
    r = Reader(src, ConfigError, collect=False)
    r.table(doc, "", {"name", "device"})
    name = r.get(doc, "name", "", "str", "station")
    devices_doc = r.get(doc, "device", "", "list")
    devices: list[DeviceConfig] = []
    taken: dict[tuple[str, int], str] = {}
    for i, d in enumerate(devices_doc):
        dev = _device(d, f"device[{i}]", r)
        for tr in dev.transports:
            if (tr, dev.unit) in taken:
                raise r.error(f"device[{i}].unit", dev.unit,
                              f"a unit id not already used on {tr} by {taken[(tr, dev.unit)]!r}")
            taken[(tr, dev.unit)] = dev.name
        devices.append(dev)
    if not devices:
        raise r.error("device", [], "at least one [[device]]")
    return SimStationConfig(name=name, devices=tuple(devices), source=src)


def _device(d: Any, path: str, r: Reader) -> DeviceConfig:
    d = r.table(d, path, {"name", "profile", "unit", "transports", "seed", "calibration",
                             "fault", "coils", "discrete_inputs", "holding",
                             "log_period_s"})
    name = r.get(d, "name", path, "str")
    ref = r.get(d, "profile", path, "str")
    try:
        profile = resolve_profile(ref, r.source)
    except ProfileError as exc:
        raise r.error(f"{path}.profile", ref, f"a usable profile ({exc})") from None
    unit = r.get(d, "unit", path, "int")
    if not 1 <= unit <= 247:
        raise r.error(f"{path}.unit", unit, "a unit id in 1..247")
    transports = r.get(d, "transports", path, "list", ["tcp"])
    if not transports or any(t not in TRANSPORTS for t in transports):
        raise r.error(f"{path}.transports", transports,
                      "a non-empty list of 'tcp' and/or 'rtu'")
    seed = r.get(d, "seed", path, "int", unit)
    bits = {key: r.get(d, key, path, "int", 0, check=lambda v: 0 <= v <= 0x10000,
                       expected="a count of bits in 0..65536") for key in
            ("coils", "discrete_inputs")}
    calibration = None
    if "calibration" in d:
        cpath = f"{path}.calibration"
        c = r.table(d["calibration"], cpath, {"every_minutes", "seconds", "offset_seconds"})
        every = float(r.get(c, "every_minutes", cpath, "number"))
        seconds = float(r.get(c, "seconds", cpath, "number"))
        offset = float(r.get(c, "offset_seconds", cpath, "number",
                            0.0))
        if every <= 0 or not 0 < seconds < every * 60:
            raise r.error(cpath, dict(c),
                          "every_minutes > 0 and 0 < seconds < the period")
        calibration = Calibration(every, seconds, offset)
    faults = []
    for j, f in enumerate(r.get(d, "fault", path, "list", [])):
        faults.append(_fault(f, f"{path}.fault[{j}]", r))
    device = DeviceConfig(name=name, profile=profile, unit=unit, transports=tuple(transports),
                          seed=seed, calibration=calibration, faults=tuple(faults),
                          coils=bits["coils"], discrete_inputs=bits["discrete_inputs"])
    holding = _holding(d, path, r, profile) if "holding" in d else None
    period = r.get(d, "log_period_s", path, "int", 60,
                   check=lambda v: 1 <= v <= 3600 and 3600 % v == 0,
                   expected="a log period in seconds dividing 3600")
    if device.field_node and holding is not None:
        raise r.error(f"{path}.holding", dict(d["holding"]),
                      "no holding block on a field node (its holding registers are the "
                      "node's own: clock, relay, cursor)")
    if "log_period_s" in d and not device.field_node:
        raise r.error(f"{path}.log_period_s", period,
                      f"no log_period_s: profile {profile.name!r} is not a field node")
    return replace(device, holding=holding, log_period_s=period)


def _holding(d: Mapping[str, Any], path: str, r: Reader, profile: Profile) -> tuple[int, int]:
    hpath = f"{path}.holding"
    h = r.table(d["holding"], hpath, {"address", "count"})
    address = r.get(h, "address", hpath, "int", check=lambda v: 0 <= v <= 0xFFFF,
                    expected="a register address in 0..65535")
    count = r.get(h, "count", hpath, "int", check=lambda v: 1 <= v <= 0x10000 - address,
                  expected=f"a count of registers in 1..{0x10000 - address}")
    measured = sorted(a for ch in profile.channels for fc, a in ch.registers()
                      if fc == 3 and address <= a < address + count)
    if measured:
        raise r.error(hpath, dict(h), f"registers the profile {profile.name!r} does not read "
                      f"(FC03 {measured[0]} is a measured value)")
    return address, count


def _fault(f: Any, path: str, r: Reader) -> ScheduledFault:
    f = r.table(f, path, {"start", "duration", "fault", "status", "code", "delay"})
    start = float(r.get(f, "start", path, "number"))
    duration = float(r.get(f, "duration", path, "number"))
    if start < 0 or duration <= 0:
        raise r.error(path, dict(f), "start >= 0 and duration > 0")
    if ("fault" in f) == ("status" in f):
        raise r.error(path, dict(f), "exactly one of fault or status")
    if "status" in f:
        status = r.get(f, "status", path, "str")
        if status not in _STATUSES:
            raise r.error(f"{path}.status", status,
                          f"one of {', '.join(_STATUSES)}")
        return ScheduledFault(start, duration, status=_STATUSES[status])
    name = r.get(f, "fault", path, "str")
    if name not in FAULTS:
        raise r.error(f"{path}.fault", name, f"one of {', '.join(FAULTS)}")
    code = r.get(f, "code", path, "int", 4)
    delay = float(r.get(f, "delay", path, "number", 2.0))
    try:
        spec = FaultSpec(name, code=code, delay=delay)
    except ValueError as exc:
        raise r.error(path, dict(f), str(exc)) from None
    return ScheduledFault(start, duration, fault=spec)
