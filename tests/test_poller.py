"""The poller reads every shipped profile off the simulator, over a socat pty, over TCP and
through the emulated serial device server (RTU frames on a TCP socket, the RTU units on a pty
of their own behind it), and decodes exactly what the simulator served: integers equal, floats
bit for bit, statuses mapped, in every status the profile can express.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from collections.abc import Callable, Iterator

import pytest

from drivers.modbus import FrameError
from drivers.profile import builtin_profile, builtin_profile_names
from drivers.transport import (
    RtuOverTcpTransport,
    RtuTransport,
    SerialSettings,
    TcpTransport,
    Transport,
    TransportTimeout,
)
from edge_agent.config.model import Device, PollPolicy
from edge_agent.poll.poller import Bus, DevicePoller, Poller, queue_sink
from hw_sim import RunningStation, parse_station, running_station
from protocol.model import Sample, Status

T0 = 1_780_000_000.0  # the simulator's frozen clock: every block of a poll sees one instant
STATUSES = (None, "calibrating", "fault", "maintenance")
UNITS = {(name, status): 1 + i * len(STATUSES) + j
         for i, name in enumerate(builtin_profile_names())
         for j, status in enumerate(STATUSES)}


def _station() -> dict[str, object]:
    devices = []
    for (name, status), unit in UNITS.items():
        d: dict[str, object] = {"name": f"{name}-{status or 'ok'}", "profile": name,
                                "unit": unit, "transports": ["rtu", "tcp"], "seed": unit}
        if status:
            d["fault"] = [{"start": 0, "duration": 1e9, "status": status}]
        devices.append(d)
    return {"name": "every-profile", "device": devices}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningStation]:
    with running_station(parse_station(_station()), tcp_port=0, pty=True, rtu_tcp_port=0,
                         clock=lambda: T0) as s:
        yield s


@pytest.fixture(scope="module", params=["rtu", "tcp", "rtu-over-tcp"])
def transport(request: pytest.FixtureRequest, sim: RunningStation) -> Iterator[Transport]:
    assert sim.pty_path is not None and sim.tcp_port is not None
    assert sim.rtu_tcp_port is not None
    makers: dict[str, Callable[[], Transport]] = {
        "rtu": lambda: RtuTransport(SerialSettings(sim.pty_path or "", 19200)),
        "tcp": lambda: TcpTransport("127.0.0.1", sim.tcp_port or 0),
        "rtu-over-tcp": lambda: RtuOverTcpTransport("127.0.0.1", sim.rtu_tcp_port or 0),
    }
    t = makers[request.param]()
    yield t
    t.close()


def _bits(x: float) -> bytes:
    return struct.pack(">d", x)


@pytest.mark.parametrize(("profile", "status"), list(UNITS), ids=lambda v: str(v or "ok"))
def test_decoded_values_and_statuses_match_what_the_sim_served(
    sim: RunningStation, transport: Transport, profile: str, status: str | None
) -> None:
    unit = UNITS[(profile, status)]
    ticks = iter(range(1000, 2000))
    poller = DevicePoller(Device(f"d{unit}", builtin_profile(profile), unit), transport.name,
                          lambda: float(next(ticks)), PollPolicy(timeout=1.0))
    samples = poller.poll(transport)
    served = sim.served(unit)
    assert served is not None
    assert poller.health.polls_ok == 1 and poller.health.consecutive_failures == 0
    assert [s.channel for s in samples] == builtin_profile(profile).channel_names
    for s in samples:
        ch = builtin_profile(profile).channel(s.channel)
        assert s.status is served.statuses[s.channel], s.channel
        if ch.dtype.startswith("float"):
            assert _bits(s.value) == _bits(served.values[s.channel]), s.channel
        else:
            assert s.value == served.values[s.channel], s.channel
        # t is a clock reading taken after a response arrived, never before the first send
        assert 1000 <= s.t < 1000 + len(poller.blocks)
    wanted = {None: Status.MEASURING, "calibrating": Status.CALIBRATING,
              "fault": Status.FAULT, "maintenance": Status.MAINTENANCE}[status]
    # where the profile can say the status, we see it (ph_probe has no status register at all)
    prof = builtin_profile(profile)
    specs = [prof.device_status, *(c.status for c in prof.channels)]
    if any(sp is not None and wanted in sp.mapping.values() for sp in specs):
        assert wanted in {s.status for s in samples}
    else:
        assert all(s.status is Status.MEASURING for s in samples)


def test_sample_time_is_when_the_answer_arrived_not_when_asked(sim: RunningStation) -> None:
    """A unit answering 0.3 s late: t is the arrival time, 0.3 s after the request went out."""
    unit = UNITS[("ph_probe", None)]
    assert sim.tcp_port is not None
    t = TcpTransport("127.0.0.1", sim.tcp_port)
    sim.set_fault(unit, "slow", delay=0.3)
    try:
        poller = DevicePoller(Device("ph", builtin_profile("ph_probe"), unit), t.name,
                              time.time, PollPolicy(timeout=2.0))
        asked = time.time()
        samples = poller.poll(t)
    finally:
        sim.set_fault(unit, "slow", on=False)
        t.close()
    assert all(s.status is Status.MEASURING for s in samples)
    assert all(s.t >= asked + 0.3 for s in samples)


def test_asyncio_daemon_receives_samples_through_queue_sink(sim: RunningStation) -> None:
    assert sim.pty_path is not None and sim.tcp_port is not None

    async def main() -> dict[str, list[Sample]]:
        queue: asyncio.Queue[tuple[str, list[Sample]]] = asyncio.Queue()
        buses = [
            Bus(RtuTransport(SerialSettings(sim.pty_path or "", 19200)),
                (Device("hach", builtin_profile("hach_sc"), UNITS[("hach_sc", None)], None,
                        0.05),)),
            Bus(TcpTransport("127.0.0.1", sim.tcp_port or 0),
                (Device("cems", builtin_profile("cems"), UNITS[("cems", None)], None, 0.05),)),
        ]
        got: dict[str, list[Sample]] = {}
        with Poller(buses, queue_sink(asyncio.get_running_loop(), queue), time.time):
            while len(got) < 2:
                device, samples = await asyncio.wait_for(queue.get(), 10)
                got[device] = samples
        return got

    got = asyncio.run(main())
    assert {s.channel for s in got["hach"]} == set(builtin_profile("hach_sc").channel_names)
    assert all(not math.isnan(s.value) for s in got["cems"])


class _Scripted:
    """A bus whose every read fails, alternating a timeout and a bad frame, as the stale
    bytes of a late answer make a real RTU line do (seen in CI with the simulator's 'slow'
    fault); then answers again."""

    name = "scripted"

    def __init__(self) -> None:
        self.reads = 0
        self.healthy = False

    def read_registers(self, unit: int, function: int, address: int, count: int,
                       timeout: float) -> list[int]:
        self.reads += 1
        if self.healthy:
            return [0] * count
        if self.reads % 2:
            raise TransportTimeout(f"unit {unit}: no answer in {timeout} s")
        raise FrameError(f"unit {unit}: bad CRC at byte 7")

    def close(self) -> None:
        pass


def test_a_failure_kind_is_warned_once_per_episode_however_the_kinds_alternate(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="quantrac.edge_agent.poller")
    bus = _Scripted()
    poller = DevicePoller(Device("ph", builtin_profile("ph_probe"), 3), bus.name,
                          lambda: T0, PollPolicy(timeout=0.1, retries=0))

    def warnings() -> list[str]:
        return [getattr(r, "kind", "") for r in caplog.records
                if r.getMessage() == "poll_failed" and r.levelno == logging.WARNING]

    for _ in range(12):
        assert all(s.status is Status.OFFLINE for s in poller.poll(bus))
    assert sorted(warnings()) == ["bad_frame", "timeout"]  # not one per alternation
    assert sum(r.getMessage() == "poll_failed" for r in caplog.records) >= 12  # rest at debug
    bus.healthy = True
    poller.poll(bus)
    assert [r.getMessage() for r in caplog.records][-1] == "device_recovered"
    bus.healthy = False
    poller.poll(bus)
    assert len(warnings()) == 3  # a new episode warns again
