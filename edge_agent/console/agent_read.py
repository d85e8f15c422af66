"""The technician's register read, scan and watch, done by the running agent on its own bus.

``quantrac diag read --agent SOCKET`` (or ``--bus NAME``) asks the daemon over its control
socket (op ``read``) instead of opening the port itself: the agent owns the serial line, and a
second master on an RS-485 bus garbles both. The daemon's control socket hands the request to
:func:`read_on_agent_bus`, which finds the bus in the running config (by name, by serial port,
or by ``host:port``), takes that bus's open transport from the poller and reads the registers.
The transport serialises transactions, so the read lands between the agent's own polls and
neither sees the other's answer.

``scan`` (:func:`scan_on_agent_bus`) probes unit ids on the same open transport, one
transaction at a time, so the agent's own polls of that bus interleave with the scan's (a
short pause after each unit lets the bus worker take the line: a lock released and taken
again at once by the same thread would starve it), and the other buses never notice. One
scan per bus at a time. ``watch`` (:func:`watch_answer`) is the agent's own view of its
devices, what it last decoded and when, so a technician sees the truth instead of a second
master's timeouts: a unit that answers the agent is never reported offline by ``diag``.

Blocking (one Modbus transaction, up to ``timeout``): the daemon runs it on a worker thread,
never on its event loop. A bus the config names but whose worker is not running (no devices
on it) is refused with a hint to use ``diag`` directly; a Modbus failure is an answer
(``ok: false`` with the reason), not an exception, so the technician sees what the bus said.
A request's fields are checked first and a wrong one named (a ValueError: ``unit: 'x' is not
a whole number``); the per-unit timeout is bounded (``MAX_TIMEOUT_S`` for a read,
``MAX_SCAN_TIMEOUT_S`` for each unit of a scan), because the bus is the agent's for that long.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from drivers.modbus import ModbusError, ModbusExceptionResponse
from drivers.transport import Transport
from edge_agent.config.model import BusConfig, Device, PollConfig
from edge_agent.poll.poller import Poller
from protocol.model import Sample

log = logging.getLogger("quantrac.edge_agent.console")


class NotPolled(ValueError):
    """The bus asked for is not one the agent polls (not in its config, or no devices on it):
    the port is free, so ``diag`` opens it itself. Answered ``"not_polled": true``."""


def find_bus(buses: Sequence[BusConfig], want: str) -> BusConfig:
    """The bus called ``want`` (its name, its serial port, or ``host:port``); NotPolled (a
    ValueError) if none."""
    names = {b.name: b for b in buses}
    bus = names.get(want) or next(
        (b for b in buses
         if want in (getattr(b.serial, "port", None), f"{b.host}:{b.tcp_port}")), None)
    if bus is None:
        raise NotPolled(f"no bus {want!r} in the running config (known: {', '.join(names)})")
    return bus


def _polled(buses: Sequence[BusConfig], poller: Poller, want: str
            ) -> tuple[BusConfig, Transport]:
    bus = find_bus(buses, want)
    wanted = bus.serial.port if bus.serial else f"{bus.host}:{bus.tcp_port}"
    transport = poller.transport(wanted)
    if transport is None:
        raise NotPolled(f"bus {bus.name!r} has no devices, so the agent has it closed; "
                        "use diag directly")
    return bus, transport


#: the longest one unit may be waited for: the agent's own polls of that bus wait as long
MAX_TIMEOUT_S = 10.0
#: the same for each unit of a scan, which waits that long at every silent unit (up to 247
#: of them: 8 minutes at this bound, 41 at a read's)
MAX_SCAN_TIMEOUT_S = 2.0


def _field(msg: Mapping[str, Any], key: str, kind: type[int] | type[float],
           default: float | None = None) -> Any:
    """``msg[key]`` as ``kind``; a ValueError naming the key, never a bare ``int()`` message
    (``invalid literal for int()`` does not say which field the technician got wrong)."""
    value = msg.get(key, default)
    if value is None:
        raise ValueError(f"{key}: missing")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key}: {value!r} is not a number")
    try:
        return kind(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{key}: {value!r} is not a "
                         f"{'whole number' if kind is int else 'number'}") from None


def _unit(unit: int) -> int:
    """A unit id (0..247, as the RTU framing takes them: a TCP one would fail in struct)."""
    if not 0 <= unit <= 247:
        raise ValueError(f"unit: {unit} is outside 0..247")
    return unit


def _timeout(msg: Mapping[str, Any], default: float, most: float = MAX_TIMEOUT_S) -> float:
    """The per-unit timeout asked (none or 0: ``default``), at most ``most``. Bounded because
    the transport holds the bus for it: ``"timeout": 1e9`` to a silent unit stopped the agent
    polling every device on that bus for good, and a NaN one never times out at all."""
    timeout = float(_field({"timeout": msg.get("timeout") or default}, "timeout", float))
    if not 0 < timeout <= most:  # NaN fails this too
        raise ValueError(f"timeout: {timeout!r} s is outside 0..{most:g} s (the agent's "
                         "polls of the bus would wait that long)")
    return timeout


def read_on_agent_bus(buses: Sequence[BusConfig], poller: Poller,
                      msg: Mapping[str, Any]) -> dict[str, Any]:
    """Answer a control-socket ``read`` request (``bus``, ``unit``, ``address``, and optional
    ``function`` 3, ``count`` 2, ``timeout`` 1.0) with ``{"ok": ..., "words"|"error", "bus"}``."""
    try:
        bus, transport = _polled(buses, poller, str(msg["bus"]))
    except NotPolled as exc:
        return {"ok": False, "error": str(exc), "not_polled": True}
    unit, function = _unit(_field(msg, "unit", int)), _field(msg, "function", int, 3)
    address, count = _field(msg, "address", int), _field(msg, "count", int, 2)
    timeout = _timeout(msg, 1.0)
    try:
        words = transport.read_registers(unit, function, address, count, timeout)
    except ModbusExceptionResponse as exc:  # the code, so diag can say what to try
        return {"ok": False, "error": str(exc), "bus": bus.name, "exception": exc.code}
    except ModbusError as exc:
        return {"ok": False, "error": str(exc), "bus": bus.name}
    log.info("diag_read_via_agent", extra={"bus": bus.name, "unit": unit,
                                           "register": address, "count": count})
    return {"ok": True, "words": words, "bus": bus.name}


#: pause after each unit of a scan, so the bus worker's waiting poll takes the line
SCAN_YIELD_S = 0.02


def _bus_devices(config: PollConfig, bus: BusConfig) -> list[Device]:
    return [d for b, d in config.devices if b == bus.name]


def device_summary(config: PollConfig, bus: BusConfig) -> list[dict[str, Any]]:
    """The configured devices of ``bus`` as a scan is compared with them."""
    return [{"device": d.name, "unit": d.unit, "profile": d.profile.name,
             "channels": d.channel_names} for d in _bus_devices(config, bus)]


class ScanBusy(ValueError):
    """A scan of that bus is already running (two would only slow each other down)."""


class AgentScans:
    """The scans running on the agent's buses, and how far each has got (``scan_progress``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.progress: dict[str, dict[str, int]] = {}

    def begin(self, bus: str, total: int) -> None:
        with self._lock:
            if bus in self.progress:
                raise ScanBusy(f"a scan of bus {bus!r} is already running; wait for it")
            self.progress[bus] = {"done": 0, "total": total, "found": 0}

    def update(self, bus: str, done: int, total: int, found: int) -> None:
        with self._lock:
            self.progress[bus] = {"done": done, "total": total, "found": found}

    def end(self, bus: str) -> None:
        with self._lock:
            self.progress.pop(bus, None)

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {k: dict(v) for k, v in self.progress.items()}


def scan_on_agent_bus(config: PollConfig, poller: Poller, scans: AgentScans,
                      msg: Mapping[str, Any]) -> dict[str, Any]:
    """Answer a control-socket ``scan`` request (``bus``; optional ``units``, a list of ids,
    default 1..247, and ``timeout`` per unit, default 0.1 serial / 0.2 TCP)."""
    from drivers.profile import builtin_profile, builtin_profile_names
    from edge_agent.console.diag import hit_dict, scan

    try:
        bus, transport = _polled(config.buses, poller, str(msg["bus"]))
    except NotPolled as exc:
        return {"ok": False, "error": str(exc), "not_polled": True}
    raw_units = msg.get("units") or range(1, 248)
    if not isinstance(raw_units, list | range):
        raise ValueError(f"units: {raw_units!r} is not a list of unit ids")
    # each unit once (in the order asked): a list of one silent unit 16,000 times (64 KiB)
    # would hold the bus's scan for half an hour
    units = list(dict.fromkeys(_field({"units": u}, "units", int) for u in raw_units))
    if not units or not all(1 <= u <= 247 for u in units):
        raise ValueError("units: unit ids are 1..247")
    timeout = _timeout(msg, 0.1 if bus.serial else 0.2, MAX_SCAN_TIMEOUT_S)
    devices = _bus_devices(config, bus)
    profiles = {n: builtin_profile(n) for n in builtin_profile_names()}
    profiles.update((d.profile.name, d.profile) for d in devices)  # a profile from a file too

    def progress(done: int, total: int, found: int) -> None:
        scans.update(bus.name, done, total, found)
        time.sleep(SCAN_YIELD_S)

    scans.begin(bus.name, len(units))
    log.info("diag_scan_via_agent", extra={"bus": bus.name, "units": len(units)})
    try:
        hits, complete = scan(transport, units, list(profiles.values()), timeout, progress)
    finally:
        scans.end(bus.name)
    return {"ok": True, "bus": bus.name, "complete": complete, "units": units,
            "hits": [hit_dict(h) for h in hits], "devices": device_summary(config, bus)}


def remember(latest: dict[tuple[str, str], Sample], device: str,
             samples: Sequence[Sample]) -> None:
    """Keep each channel's newest sample (a field node's backfilled history is older: it
    never hides the live value)."""
    for s in samples:
        old = latest.get((device, s.channel))
        if old is None or s.t >= old.t:
            latest[(device, s.channel)] = s


def watch_answer(config: PollConfig, poller: Poller | None,
                 latest: Mapping[tuple[str, str], Sample]) -> dict[str, Any]:
    """Answer a control-socket ``watch`` request: every configured device with its health
    and every channel with the last sample the agent decoded."""
    health = {h.device: h for h in (poller.health() if poller else [])}
    ports = {b.name: b.serial.port if b.serial else f"{b.host}:{b.tcp_port}"
             for b in config.buses}
    devices = []
    for bus_name, d in config.devices:
        h = health.get(d.name)
        channels = []
        for ch in d.channel_names:
            s = latest.get((d.name, ch))
            channels.append({"channel": ch, "unit": d.profile.channel(ch).unit,
                             "value": None if s is None else s.value,
                             "status": None if s is None else s.status.name.lower(),
                             "t": None if s is None else s.t})
        devices.append({"device": d.name, "bus": bus_name, "port": ports.get(bus_name),
                        "unit": d.unit,
                        "profile": d.profile.name, "channels": channels,
                        **({} if h is None else {
                            "last_good": h.last_good, "last_error": h.last_error,
                            "last_error_at": h.last_error_at,
                            "consecutive_failures": h.consecutive_failures})})
    return {"ok": True, "devices": devices}
