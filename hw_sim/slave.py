"""The simulated station's Modbus slave logic: a request frame in, a reply (bytes, delay) out.

No sockets or ports here (hw_sim.server does that), so every answer and every fault can be
reasoned about byte by byte. Built on drivers.modbus, not on a library server, because faults
must be injected at the byte level (a broken CRC, random bytes, a late answer).

Register space of a device: for each function, every address between the lowest and the highest
register its profile uses is readable (unused words read 0, as on most analysers, so the
planner may bridge gaps); anything outside is exception 02; a count outside 1..125 is
exception 03. A device with ``coils`` / ``discrete_inputs`` also answers FC01/05/15 and FC02 on
them (a sampler's trigger relay and its contacts: discrete input i reads coil i); a device with
a ``holding`` block answers FC06/FC16 writes into it and FC03 reads of what was written (outside
the block a write is exception 02; a device without one refuses writes with 01); every other
function is exception 01. A field node (``field_node`` profile) answers with the firmware's
register map and log instead (:mod:`hw_sim.field_node`), so the agent's backfill reads it.
"""

from __future__ import annotations

import logging
import random
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers import modbus
from drivers.decode import DEVICE, decode_samples, encode_image
from drivers.modbus import FrameError, ReadRequest
from drivers.profile import ChannelSpec, StatusSpec
from hw_sim import faults as F
from hw_sim.config import DeviceConfig, SimStationConfig
from hw_sim.field_node import ST_LOW, SimNode
from hw_sim.signals import channel_value
from protocol.clock import Clock
from protocol.model import Status

log = logging.getLogger("quantrac.hw_sim.slave")

Image = dict[tuple[int, int], int]


@dataclass(frozen=True)
class Reply:
    """Bytes to send after ``delay`` seconds (0 for an immediate answer)."""

    data: bytes
    delay: float = 0.0


@dataclass(frozen=True)
class Served:
    """What a device put on the wire in its last data answer.

    ``image`` is every word of the device at ``t`` as served (after ``wrong_word_order``, if
    on); ``values``/``statuses`` are what the analyser meant: the decoding of its correct image,
    so a faithful client decodes exactly these (bitwise for floats).
    """

    t: float
    image: Image
    values: dict[str, float]
    statuses: dict[str, Status]
    request: ReadRequest


@dataclass
class _State:
    faults: dict[str, F.FaultSpec] = field(default_factory=dict)
    served: Served | None = None
    coils: list[bool] = field(default_factory=list)
    holding: list[int] = field(default_factory=list)
    received: int = 0
    answered: int = 0


def _spans(device: DeviceConfig) -> dict[int, tuple[int, int]]:
    regs: set[tuple[int, int]] = set()
    for ch in device.profile.channels:
        regs.update(ch.registers())
        if ch.status:
            regs.add((ch.status.function, ch.status.address))
    if device.profile.device_status:
        ds = device.profile.device_status
        regs.add((ds.function, ds.address))
    if device.holding:
        a, n = device.holding
        regs.update(((modbus.READ_HOLDING, a), (modbus.READ_HOLDING, a + n - 1)))
    spans: dict[int, tuple[int, int]] = {}
    for fn, a in regs:
        lo, hi = spans.get(fn, (a, a))
        spans[fn] = (min(lo, a), max(hi, a))
    return spans


def _says(spec: StatusSpec, status: Status) -> bool:
    return status in spec.mapping.values() or status is spec.default


def _can_say(ch: ChannelSpec, device_status: StatusSpec | None, status: Status) -> bool:
    """Whether the channel's status can be ``status`` (a flowmeter cannot calibrate)."""
    specs = [s for s in (ch.status, device_status) if s is not None]
    return bool(specs) and all(_says(s, status) for s in specs)


class SimStation:
    """Every simulated device of a station, their faults, and what they served.

    Thread-safe: the TCP connections and the RTU bus thread call :meth:`handle_rtu` /
    :meth:`handle_tcp` concurrently with :meth:`set_fault` from a test or the control socket.
    """

    def __init__(self, config: SimStationConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.start = clock()
        self._lock = threading.Lock()
        self._devices = {d.unit: d for d in config.devices}
        self._spans = {d.unit: _spans(d) for d in config.devices}
        self._state = {d.unit: _State(coils=[False] * d.coils,
                                      holding=[0] * (d.holding[1] if d.holding else 0))
                       for d in config.devices}
        self._nodes = {d.unit: SimNode(d.profile, self.start, self._node_value(d),
                                       period_s=d.log_period_s)
                       for d in config.devices if d.field_node}
        self._rng = random.Random(0x5157)

    def _node_value(self, device: DeviceConfig) -> Callable[[ChannelSpec, float],
                                                            tuple[float, int]]:
        def value_of(ch: ChannelSpec, t: float) -> tuple[float, int]:
            status = ST_LOW if self.device_status(device.unit, t) is Status.FAULT else 0
            return channel_value(device.seed, ch, t), status
        return value_of

    # ----------------------------------------------------------------- control

    def set_fault(self, unit: int, fault: str, on: bool = True, *, code: int = 4,
                  delay: float = 2.0) -> None:
        """Switch a wire fault on or off for ``unit`` (see hw_sim.faults.FAULTS)."""
        spec = F.FaultSpec(fault, code=code, delay=delay)
        if unit not in self._devices:
            raise KeyError(f"no simulated device with unit id {unit}")
        with self._lock:
            if on:
                self._state[unit].faults[fault] = spec
            else:
                self._state[unit].faults.pop(fault, None)
        log.info("fault_set", extra={"unit": unit, "fault": fault, "on": on})

    def clear_faults(self, unit: int | None = None) -> None:
        with self._lock:
            for u, st in self._state.items():
                if unit is None or u == unit:
                    st.faults.clear()

    def served(self, unit: int) -> Served | None:
        with self._lock:
            return self._state[unit].served

    def requests(self, unit: int) -> tuple[int, int]:
        """(requests received, requests answered) for ``unit``."""
        with self._lock:
            st = self._state[unit]
            return st.received, st.answered

    def coils(self, unit: int) -> list[bool]:
        """The coils of ``unit`` as the last write left them."""
        with self._lock:
            return list(self._state[unit].coils)

    def holding(self, unit: int) -> list[int]:
        """The writable holding registers of ``unit`` (its ``holding`` block) as written."""
        with self._lock:
            return list(self._state[unit].holding)

    def units(self, transport: str) -> list[int]:
        return sorted(u for u, d in self._devices.items() if transport in d.transports)

    # ----------------------------------------------------------------- signals

    def active_faults(self, unit: int, t: float) -> dict[str, F.FaultSpec]:
        device = self._devices[unit]
        with self._lock:
            active = dict(self._state[unit].faults)
        for sf in device.faults:
            if sf.fault is not None and sf.active(t - self.start):
                active.setdefault(sf.fault.name, sf.fault)
        return active

    def device_status(self, unit: int, t: float) -> Status:
        """What the analyser reports at ``t``: a scheduled status, a calibration, or measuring."""
        device = self._devices[unit]
        for sf in device.faults:
            if sf.status is not None and sf.active(t - self.start):
                return sf.status
        if device.calibration and device.calibration.active(t):
            return Status.CALIBRATING
        return Status.MEASURING

    def snapshot(self, unit: int, t: float) -> tuple[Image, dict[str, float], dict[str, Status]]:
        """The device's full register image at ``t`` and the values/statuses it stands for."""
        device = self._devices[unit]
        profile = device.profile
        status = self.device_status(unit, t)
        values = {ch.name: channel_value(device.seed, ch, t) for ch in profile.channels}
        statuses = {ch.name: status if _can_say(ch, profile.device_status, status)
                    else Status.MEASURING for ch in profile.channels}
        ds = profile.device_status
        statuses[DEVICE] = status if ds and _says(ds, status) else Status.MEASURING
        image = encode_image(profile, values, statuses)
        samples = decode_samples(profile, image, t)
        return (image, {s.channel: s.value for s in samples},
                {s.channel: s.status for s in samples})

    # ----------------------------------------------------------------- requests

    def _bits(self, unit: int, req: ReadRequest) -> bytes | int:
        """The response PDU to a coil or discrete-input request, or an exception code.

        Discrete input i reads coil i (the relay's feedback contact); inputs past the last
        coil read 0.
        """
        device = self._devices[unit]
        fn = req.function
        size = device.discrete_inputs if fn == modbus.READ_DISCRETE_INPUTS else device.coils
        if not size:  # a device without coils (or inputs) does not know the function
            return modbus.ILLEGAL_FUNCTION
        count = 1 if fn == modbus.WRITE_COIL else req.count
        limit = modbus.MAX_WRITE_COILS if fn == modbus.WRITE_COILS else modbus.MAX_BIT_COUNT
        bad_coil = fn == modbus.WRITE_COIL and req.count not in (modbus.COIL_ON, modbus.COIL_OFF)
        bad_bytes = fn == modbus.WRITE_COILS and len(req.data) != (count + 7) // 8
        if not 1 <= count <= limit or bad_coil or bad_bytes:
            return modbus.ILLEGAL_DATA_VALUE
        if req.address + count > size:
            return modbus.ILLEGAL_DATA_ADDRESS
        request = struct.pack(">BHH", fn, req.address, req.count)
        with self._lock:
            coils = self._state[unit].coils
            if fn == modbus.WRITE_COIL:
                coils[req.address] = req.count == modbus.COIL_ON
                return modbus.write_response_pdu(request)
            if fn == modbus.WRITE_COILS:
                coils[req.address:req.address + count] = modbus.unpack_bits(req.data, count)
                return modbus.write_response_pdu(request)
            padded = coils + [False] * max(0, req.address + count - len(coils))
            return modbus.read_bits_response_pdu(fn, padded[req.address:req.address + count])

    def _write(self, unit: int, req: ReadRequest, t: float) -> bytes | int:
        """The response PDU to an FC06/FC16 request, or an exception code (nothing written)."""
        fn = req.function
        if fn == modbus.WRITE_REGISTER:
            words = [req.count]
        else:
            if not 1 <= req.count <= modbus.MAX_WRITE_COUNT or len(req.data) != 2 * req.count:
                return modbus.ILLEGAL_DATA_VALUE
            words = list(struct.unpack(f">{req.count}H", req.data))
        request = struct.pack(">BHH", fn, req.address, req.count)
        node = self._nodes.get(unit)
        block = self._devices[unit].holding
        with self._lock:
            if node is not None:
                code = node.write(req.address, words, t)
                if code is not None:
                    return code
                return modbus.write_response_pdu(request)
            if block is None:
                return modbus.ILLEGAL_FUNCTION
            first, n = block
            if req.address < first or req.address + len(words) > first + n:
                return modbus.ILLEGAL_DATA_ADDRESS
            regs = self._state[unit].holding
            regs[req.address - first:req.address - first + len(words)] = words
        return modbus.write_response_pdu(request)

    def _words(self, unit: int, req: ReadRequest, image: Image, t: float) -> list[int] | int:
        node = self._nodes.get(unit)
        block = self._devices[unit].holding
        with self._lock:
            if node is not None:
                return node.read(req.function, req.address, req.count, t, image)
            regs = self._state[unit].holding
        out = []
        for a in range(req.address, req.address + req.count):
            if block and req.function == modbus.READ_HOLDING and 0 <= a - block[0] < block[1]:
                out.append(regs[a - block[0]])
            else:
                out.append(image.get((req.function, a), 0))
        return out

    def _answer(self, unit: int, req: ReadRequest, transport: str
                ) -> tuple[str, list[int] | bytes | int | None, float, F.FaultSpec | None]:
        """(kind, payload, delay, corrupting fault): kind is 'data' (words), 'pdu' (a whole
        response PDU), 'exception' or 'silent'."""
        t = self.clock()
        active = self.active_faults(unit, t)
        with self._lock:
            self._state[unit].received += 1
        if "no_answer" in active:
            return "silent", None, 0.0, None
        delay = active["slow"].delay if "slow" in active else 0.0
        corrupt = active.get("garbage") or active.get("crc_error")
        if req.function in (*modbus.BIT_READ_FUNCTIONS, modbus.WRITE_COIL, modbus.WRITE_COILS):
            if "exception" in active:
                return "exception", active["exception"].code, delay, corrupt
            answer = self._bits(unit, req)
            if isinstance(answer, int):
                return "exception", answer, delay, corrupt
            return "pdu", answer, delay, corrupt
        if req.function in (modbus.WRITE_REGISTER, modbus.WRITE_MULTIPLE):
            if "exception" in active:
                return "exception", active["exception"].code, delay, corrupt
            written = self._write(unit, req, t)
            if isinstance(written, int):
                return "exception", written, delay, corrupt
            return "pdu", written, delay, corrupt
        if req.function not in modbus.READ_FUNCTIONS:
            return "exception", modbus.ILLEGAL_FUNCTION, delay, corrupt
        if not 1 <= req.count <= modbus.MAX_READ_COUNT:
            return "exception", modbus.ILLEGAL_DATA_VALUE, delay, corrupt
        span = self._spans[unit].get(req.function)
        outside = span is None or req.address < span[0] or req.address + req.count - 1 > span[1]
        if outside and unit not in self._nodes:  # a node's map is its own (field_node.read)
            return "exception", modbus.ILLEGAL_DATA_ADDRESS, delay, corrupt
        if "exception" in active:
            return "exception", active["exception"].code, delay, corrupt
        image, values, statuses = self.snapshot(unit, t)
        if "wrong_word_order" in active:
            image = F.swap_words(self._devices[unit].profile, image)
        words = self._words(unit, req, image, t)
        if isinstance(words, int):
            return "exception", words, delay, corrupt
        with self._lock:
            self._state[unit].served = Served(t, image, values, statuses, req)
        return "data", words, delay, corrupt

    def _finish(self, frame: bytes, corrupt: F.FaultSpec | None, tcp: bool, delay: float,
                unit: int) -> Reply:
        if corrupt is not None:
            if corrupt.name == "garbage":
                with self._lock:
                    frame = F.garbage(self._rng)
            else:
                frame = F.corrupt_tcp_pdu(frame) if tcp else F.corrupt_rtu_crc(frame)
        with self._lock:
            self._state[unit].answered += 1
        return Reply(frame, delay)

    def handle_rtu(self, frame: bytes) -> Reply | None:
        """The reply to one RTU request frame; None when the bus must stay silent.

        Silent for a bad CRC (a real slave cannot trust the unit id), for broadcasts (unit 0),
        and for units not on this bus (another slave's request: multidrop).
        """
        try:
            req = modbus.parse_rtu_request(frame)
        except FrameError:
            if len(frame) >= 4 and modbus.crc16(frame[:-2]) == frame[-2] | frame[-1] << 8:
                req = ReadRequest(frame[0], frame[1], 0, 0)  # a valid frame, not a read
            else:
                return None
        device = self._devices.get(req.unit)
        if device is None or "rtu" not in device.transports:
            return None
        kind, payload, delay, corrupt = self._answer(req.unit, req, "rtu")
        if kind == "silent":
            return None
        if kind == "exception":
            assert isinstance(payload, int)
            out = modbus.rtu_exception_response(req.unit, req.function, payload)
        elif kind == "pdu":
            assert isinstance(payload, bytes)
            out = modbus.rtu_frame(req.unit, payload)
        else:
            assert isinstance(payload, list)
            out = modbus.rtu_read_response(req.unit, req.function, payload)
        return self._finish(out, corrupt, False, delay, req.unit)

    def handle_tcp(self, adu: bytes) -> Reply | None:
        """The reply to one complete MBAP frame; None for no answer.

        A unit id not served over TCP gets exception 0B (gateway target failed to respond),
        as a Modbus TCP gateway in front of a serial bus answers.
        """
        tid = int.from_bytes(adu[:2], "big")
        unit = adu[6]
        try:
            _, req = modbus.parse_tcp_request(adu)
        except FrameError:
            pdu = adu[modbus.MBAP_LENGTH:]
            if not pdu:
                return None
            req = ReadRequest(unit, pdu[0], 0, 0)
        device = self._devices.get(unit)
        if device is None or "tcp" not in device.transports:
            return Reply(modbus.tcp_exception_response(tid, unit, req.function, 0x0B))
        kind, payload, delay, corrupt = self._answer(unit, req, "tcp")
        if kind == "silent":
            return None
        if kind == "exception":
            assert isinstance(payload, int)
            out = modbus.tcp_exception_response(tid, unit, req.function, payload)
        elif kind == "pdu":
            assert isinstance(payload, bytes)
            out = modbus.tcp_adu(tid, unit, payload)
        else:
            assert isinstance(payload, list)
            out = modbus.tcp_read_response(tid, unit, req.function, payload)
        return self._finish(out, corrupt, True, delay, unit)
