"""Peer check of the simulator's Modbus slave: pymodbus reads it, our decoder decodes it.

For every shipped profile, over a real socat pty pair, over TCP loopback and through the
emulated serial device server (pymodbus's TCP client with its RTU framer, as a master behind a
converter is set up): the words pymodbus
reads are the words the simulator says it served, and decode_samples gives exactly the values
(bitwise) and statuses it served.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from drivers.decode import decode_samples
from drivers.planner import plan_reads
from drivers.profile import builtin_profile, builtin_profile_names, profile_registers
from hw_sim import RunningStation, parse_station, running_station
from protocol.model import Status

NAMES = builtin_profile_names()
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC; calibration windows below start at T0 + 600


def _config() -> dict[str, object]:
    return {"name": "peer", "device": [
        {"name": n, "profile": n, "unit": i + 1, "transports": ["tcp", "rtu"], "seed": i,
         "calibration": {"every_minutes": 60, "seconds": 120, "offset_seconds": 600},
         "fault": [{"start": 1000, "duration": 100, "status": "maintenance"},
                   {"start": 2000, "duration": 100, "status": "fault"}]}
        for i, n in enumerate(NAMES)]}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(T0 + 100.0)


@pytest.fixture(scope="module")
def sim(clock: Clock) -> Iterator[RunningStation]:
    with running_station(parse_station(_config()), tcp_port=0, pty=True, rtu_tcp_port=0,
                         clock=clock) as s:
        yield s


def _bits(x: float) -> bytes:
    return struct.pack(">d", x)


def _read_all(client: ModbusTcpClient | ModbusSerialClient, unit: int, name: str
              ) -> dict[tuple[int, int], int]:
    image: dict[tuple[int, int], int] = {}
    for block in plan_reads(profile_registers(builtin_profile(name))):
        read = (client.read_holding_registers if block.function == 3
                else client.read_input_registers)
        rr = read(block.address, count=block.count, device_id=unit)
        assert not rr.isError(), rr
        image.update(zip([(block.function, a) for a in block.registers()], rr.registers,
                         strict=True))
    return image


def _check(sim: RunningStation, client: ModbusTcpClient | ModbusSerialClient, clock: Clock,
           expected: Status) -> None:
    for unit, name in enumerate(NAMES, start=1):
        profile = builtin_profile(name)
        image = _read_all(client, unit, name)
        served = sim.served(unit)
        assert served is not None and served.t == clock.t
        assert image == {reg: served.image.get(reg, 0) for reg in image}
        samples = decode_samples(profile, image, clock.t)
        for s in samples:
            assert _bits(s.value) == _bits(served.values[s.channel]), (name, s)
            assert s.status is served.statuses[s.channel]
            ch = profile.channel(s.channel)
            assert ch.lo - ch.scale <= s.value <= ch.hi + ch.scale
            can = (ch.status or profile.device_status) and all(
                expected in spec.mapping.values() or expected is spec.default
                for spec in (ch.status, profile.device_status) if spec)
            assert s.status is (expected if can else Status.MEASURING), (name, s)


@pytest.mark.parametrize("transport", ["tcp", "rtu", "rtu-over-tcp"])
@pytest.mark.parametrize(("moment", "expected"), [
    (100.0, Status.MEASURING),
    (700.0, Status.CALIBRATING),    # inside the calibration window
    (1150.0, Status.MAINTENANCE),   # the scheduled maintenance (station started at T0 + 100)
    (2150.0, Status.FAULT),         # the scheduled fault
])
def test_pymodbus_reads_what_the_sim_served(sim: RunningStation, clock: Clock, transport: str,
                                            moment: float, expected: Status) -> None:
    clock.t = T0 + moment
    if transport == "tcp":
        client: ModbusTcpClient | ModbusSerialClient = ModbusTcpClient(
            "127.0.0.1", port=sim.tcp_port or 0, timeout=2)
    elif transport == "rtu-over-tcp":
        client = ModbusTcpClient("127.0.0.1", port=sim.rtu_tcp_port or 0, framer=FramerType.RTU,
                                 timeout=2, retries=0)
    else:
        assert sim.pty_path is not None
        client = ModbusSerialClient(sim.pty_path, baudrate=19200, timeout=2, retries=0)
    assert client.connect()
    try:
        _check(sim, client, clock, expected)
    finally:
        client.close()


def test_values_move_over_the_day_and_stay_in_range(sim: RunningStation, clock: Clock) -> None:
    client = ModbusTcpClient("127.0.0.1", port=sim.tcp_port or 0, timeout=2)
    assert client.connect()
    try:
        unit = NAMES.index("cems") + 1
        seen: dict[str, set[float]] = {}
        for hour in range(0, 24, 3):
            clock.t = T0 + 3 * 86400 + hour * 3600 + 5.0
            _read_all(client, unit, "cems")
            served = sim.served(unit)
            assert served is not None
            for ch, v in served.values.items():
                spec = builtin_profile("cems").channel(ch)
                assert spec.lo <= v <= spec.hi
                seen.setdefault(ch, set()).add(v)
        assert all(len(vs) == 8 for vs in seen.values())  # a different value every 3 hours
    finally:
        client.close()
