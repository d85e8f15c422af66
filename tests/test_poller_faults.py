"""Every fault the simulator injects, seen through the running poller; and multidrop.

For each fault, over the pty bus (victim and bystander on one RS-485 line) and over TCP (each
device its own connection): the victim yields OFFLINE samples (FAULT with no value for swapped
words), never a made-up value; ``poll_failed`` is logged; it recovers when the fault clears
(``device_recovered``); the bystander never goes offline and keeps being polled.

No timing assertions: every wait is a condition with a deadline, and the multidrop rates are
counts of completed polls over a window the test measures itself.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from drivers import modbus
from drivers.profile import builtin_profile
from drivers.transport import RtuTransport, SerialSettings, TcpTransport
from edge_agent.config.model import Device, PollPolicy
from edge_agent.poll.poller import Bus, Poller
from hw_sim import FAULTS, RunningStation, parse_station, running_station
from protocol.model import Sample, Status

T0 = 1_780_000_000.0  # frozen sim clock; at T0 hach's swapped floats are all implausible
VICTIM, BYSTANDER, SILENT = 1, 2, 3
POLICY = PollPolicy(timeout=0.15, retries=1, backoff_max=0.3)
INTERVAL = 0.05


def wait_for(cond: Callable[[], bool], what: str, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


class Collector:
    """The poller's sink: every device's samples, in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_device: dict[str, list[list[Sample]]] = {}

    def __call__(self, device: str, samples: list[Sample]) -> None:
        with self.lock:
            self.by_device.setdefault(device, []).append(samples)

    def polls(self, device: str) -> list[list[Sample]]:
        with self.lock:
            return list(self.by_device.get(device, []))


@pytest.fixture
def sim() -> Iterator[RunningStation]:
    doc = {"name": "faults", "device": [
        {"name": "victim", "profile": "hach_sc", "unit": VICTIM, "transports": ["rtu", "tcp"],
         "seed": 7},
        {"name": "bystander", "profile": "ph_probe", "unit": BYSTANDER,
         "transports": ["rtu", "tcp"]},
        {"name": "silent", "profile": "cems", "unit": SILENT, "transports": ["rtu"]},
    ]}
    with running_station(parse_station(doc), tcp_port=0, pty=True, clock=lambda: T0) as s:
        yield s


def _devices() -> tuple[Device, Device]:
    return (Device("victim", builtin_profile("hach_sc"), VICTIM, None, INTERVAL),
            Device("bystander", builtin_profile("ph_probe"), BYSTANDER, None, INTERVAL))


def _buses(sim: RunningStation, transport: str) -> list[Bus]:
    victim, bystander = _devices()
    if transport == "rtu":
        assert sim.pty_path is not None
        return [Bus(RtuTransport(SerialSettings(sim.pty_path, 19200)), (victim, bystander))]
    assert sim.tcp_port is not None
    return [Bus(TcpTransport("127.0.0.1", sim.tcp_port), (victim,)),
            Bus(TcpTransport("127.0.0.1", sim.tcp_port), (bystander,))]


def _bad(samples: list[Sample]) -> bool:
    return any(math.isnan(s.value) for s in samples)


@pytest.mark.parametrize("transport", ["rtu", "tcp"])
@pytest.mark.parametrize("fault", FAULTS)
def test_fault_gives_offline_log_recovery_and_spares_the_bystander(
    sim: RunningStation, caplog: pytest.LogCaptureFixture, fault: str, transport: str
) -> None:
    caplog.set_level(logging.INFO, logger="quantrac.edge_agent.poller")
    got = Collector()
    with Poller(_buses(sim, transport), got, time.time, POLICY):
        wait_for(lambda: len(got.polls("victim")) >= 2 and len(got.polls("bystander")) >= 2,
                 "first good polls")
        assert not any(_bad(p) for p in got.polls("victim"))
        mark = len(got.polls("victim")), len(got.polls("bystander"))
        sim.set_fault(VICTIM, fault, delay=0.5, code=4)
        wait_for(lambda: any(_bad(p) for p in got.polls("victim")[mark[0]:]),
                 f"a {fault} to show on the victim")
        wait_for(lambda: len(got.polls("bystander")) >= mark[1] + 10,
                 "the bystander to keep being polled during the fault")
        sim.set_fault(VICTIM, fault, on=False)
        cleared = len(got.polls("victim"))
        wait_for(lambda: any(not _bad(p) for p in got.polls("victim")[cleared:]),
                 "the victim to recover")

    served = sim.served(VICTIM)
    assert served is not None
    for poll in got.polls("victim"):
        for s in poll:
            if math.isnan(s.value):
                assert s.status in (Status.OFFLINE, Status.FAULT)
            else:  # anything with a value is what the analyser meant, bit for bit
                assert s.status is Status.MEASURING
                assert s.value == served.values[s.channel]
    bad = [p for p in got.polls("victim") if _bad(p)]
    if fault == "wrong_word_order":  # the device answered, with swapped words
        assert all(s.status is Status.FAULT for p in bad for s in p)
        events = ["implausible_value"]
    else:
        assert all(s.status is Status.OFFLINE for p in bad for s in p)
        events = ["poll_failed", "device_recovered"]
    for event in events:
        recs = [r for r in caplog.records if r.getMessage() == event]
        assert recs, f"no {event} logged"
        assert all(getattr(r, "device", None) == "victim" for r in recs)
        assert all(getattr(r, "unit", None) == VICTIM for r in recs)
    failed = [r for r in caplog.records if r.getMessage() == "poll_failed"
              and r.levelno == logging.WARNING]
    if failed:  # which register, and why; logged per state change, not per poll
        assert {getattr(r, "register", None) for r in failed} <= {0, 48}
        assert len(failed) <= 3  # a state change or two, however many polls failed
        expected_kind = {"no_answer": "timeout", "slow": "timeout", "crc_error": "bad_frame",
                         "garbage": "bad_frame", "exception": "exception_04"}[fault]
        assert expected_kind in {getattr(r, "kind", None) for r in failed}
    # the bystander never lost a sample to its neighbour's fault
    assert not any(_bad(p) for p in got.polls("bystander"))


def test_multidrop_silent_unit_costs_only_its_share_of_the_bus(sim: RunningStation) -> None:
    """Three units on one pty bus, one silent: the other two keep their poll rate.

    Each of the two answering units wants a poll every 0.1 s. The silent unit (no answer at
    all) costs one 0.15 s timeout per poll, backed off to at most one every 0.3 s. The two
    answering units must still complete at least 60% of their nominal polls over the window.
    """
    assert sim.pty_path is not None
    sim.set_fault(SILENT, "no_answer")
    interval = 0.1
    devices = (Device("a", builtin_profile("hach_sc"), VICTIM, None, interval),
               Device("b", builtin_profile("ph_probe"), BYSTANDER, None, interval),
               Device("silent", builtin_profile("cems"), SILENT, None, interval))
    got = Collector()
    poller = Poller([Bus(RtuTransport(SerialSettings(sim.pty_path, 19200)), devices)], got,
                    time.time, POLICY)
    with poller:
        wait_for(lambda: len(got.polls("silent")) >= 2, "the silent unit to be tried twice")
        start = time.monotonic()
        before = {d: len(got.polls(d)) for d in ("a", "b", "silent")}
        time.sleep(2.0)  # the observation window (measured, not asserted on)
        window = time.monotonic() - start
        after = {d: len(got.polls(d)) for d in ("a", "b", "silent")}
        health = {h.device: h for h in poller.health()}
    nominal = window / interval
    for d in ("a", "b"):
        assert after[d] - before[d] >= 0.6 * nominal, (d, after[d] - before[d], nominal)
        assert not any(_bad(p) for p in got.polls(d))
        assert health[d].consecutive_failures == 0
    # the silent unit was backed off: polled far less often than its interval asks
    print("polls in window", window, {d: after[d] - before[d] for d in after}, nominal)
    assert after["silent"] - before["silent"] <= 0.5 * nominal
    assert all(s.status is Status.OFFLINE for p in got.polls("silent") for s in p)
    assert health["silent"].consecutive_failures >= 2
    assert health["silent"].last_error is not None and "timeout" in health["silent"].last_error
    served, answered = sim.requests(SILENT)
    assert answered == 0 and served >= 2


class HangingConnectionServer:
    """A Modbus TCP server whose first connection goes silent while new ones are served.

    What a device or gateway does when its Modbus task hangs on one socket but its listener
    lives on (or when a NAT forgets the flow): the first connection answers ``answered``
    requests, then reads and drops every later one without a word, and never closes. Every
    later connection is served in full. The answers come from the simulator's own slave
    (``SimStation.handle_tcp``), so they are what a real analyser would send.
    """

    def __init__(self, sim: RunningStation, answered: int) -> None:
        self.sim = sim
        self.answered = answered
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = 0
        self.swallowed = 0  # requests read and left unanswered on the hung connection
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                first = self.connections == 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, first), daemon=True).start()

    def _serve(self, conn: socket.socket, first: bool) -> None:
        buf = b""
        answers = 0
        while True:
            try:
                chunk = conn.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= modbus.MBAP_LENGTH:
                total = modbus.tcp_frame_length(buf[:modbus.MBAP_LENGTH])
                if len(buf) < total:
                    break
                adu, buf = buf[:total], buf[total:]
                if first and answers >= self.answered:
                    with self.lock:
                        self.swallowed += 1
                    continue  # hung: the request is read, nothing ever comes back
                reply = self.sim.station.handle_tcp(adu)
                answers += 1
                if reply is not None:
                    try:
                        conn.sendall(reply.data)
                    except OSError:
                        return

    def close(self) -> None:
        self.server.close()
        with self.lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()


def test_tcp_connection_that_goes_silent_is_dropped_and_the_device_recovers(
    sim: RunningStation, caplog: pytest.LogCaptureFixture
) -> None:
    """S6: the first connection stops answering while new connections would be served.

    Before the fix the transport kept the hung socket for good and the device stayed OFFLINE
    forever; now repeated timeouts on one connection drop it, and the next poll reconnects.
    """
    caplog.set_level(logging.INFO, logger="quantrac")
    rogue = HangingConnectionServer(sim, answered=3)
    _, bystander = _devices()
    got = Collector()
    try:
        with Poller([Bus(TcpTransport("127.0.0.1", rogue.port), (bystander,))], got,
                    time.time, POLICY):
            wait_for(lambda: any(_bad(p) for p in got.polls("bystander")),
                     "the hung connection to show as offline samples")
            went_bad = len(got.polls("bystander"))
            wait_for(lambda: any(not _bad(p) for p in got.polls("bystander")[went_bad:]),
                     "good samples again over a new connection")
    finally:
        rogue.close()
    polls = got.polls("bystander")
    assert not any(_bad(p) for p in polls[:3])  # the three answers on the first connection
    bad = [p for p in polls if _bad(p)]
    assert all(s.status is Status.OFFLINE for p in bad for s in p)
    assert rogue.connections >= 2 and rogue.swallowed >= 1
    dropped = [r for r in caplog.records if r.getMessage() == "tcp_connection_dropped"]
    assert dropped and dropped[0].levelno == logging.WARNING
    assert getattr(dropped[0], "endpoint", None) == f"127.0.0.1:{rogue.port}"
    assert getattr(dropped[0], "timeouts", 0) >= 1
    recovered = [r for r in caplog.records if r.getMessage() == "device_recovered"]
    assert recovered and getattr(recovered[0], "device", None) == "bystander"
    # the recovery came after the drop, not from the hung socket answering again
    assert caplog.records.index(dropped[0]) < caplog.records.index(recovered[0])


class OrderCollector(Collector):
    """A Collector that also keeps one list of (device, good) for every poll, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[tuple[str, bool]] = []

    def __call__(self, device: str, samples: list[Sample]) -> None:
        with self.lock:
            self.by_device.setdefault(device, []).append(samples)
            self.order.append((device, not _bad(samples)))

    def since(self, mark: int) -> list[tuple[str, bool]]:
        with self.lock:
            return self.order[mark:]


def test_returning_unit_is_probed_in_idle_time_and_seen_within_two_cycles(
    sim: RunningStation,
) -> None:
    """S11: a silent unit on a bus with slack is probed in the idle time, so when it answers
    again it is polled within two poll cycles of the bus, not after its back-off (60 s by
    default: up to a minute of data lost per fault); the answering units lose no polls.

    Counted in polls, not seconds: the fault is cleared right after one of the silent unit's
    failed polls, when its back-off (0.2 s x 2**failures) already spans eight cycles or more;
    the test counts how many polls unit ``a`` completes before the silent unit's first good
    one.
    """
    assert sim.pty_path is not None
    sim.set_fault(SILENT, "no_answer")
    interval = 0.2
    devices = (Device("a", builtin_profile("hach_sc"), VICTIM, None, interval),
               Device("b", builtin_profile("ph_probe"), BYSTANDER, None, interval),
               Device("silent", builtin_profile("cems"), SILENT, None, interval))
    policy = PollPolicy(timeout=0.1, retries=1)  # backoff_max: the 60 s default
    got = OrderCollector()
    poller = Poller([Bus(RtuTransport(SerialSettings(sim.pty_path, 19200)), devices)], got,
                    time.time, policy)
    with poller:
        wait_for(lambda: len(got.polls("a")) >= 1, "the first poll of a")
        start, before = time.monotonic(), {d: len(got.polls(d)) for d in ("a", "b")}
        wait_for(lambda: len(got.polls("silent")) >= 3, "three failed polls of the silent unit")
        tried = len(got.polls("silent"))
        wait_for(lambda: len(got.polls("silent")) > tried, "one more failed poll")
        sim.set_fault(SILENT, "no_answer", on=False)  # it answers again from now on
        window = time.monotonic() - start
        after = {d: len(got.polls(d)) for d in ("a", "b")}
        mark = len(got.since(0))
        wait_for(lambda: ("silent", True) in got.since(mark)
                 or sum(d == "a" for d, _ in got.since(mark)) >= 12,
                 "a good poll of the returned unit, or twelve cycles of the bus")
        order = got.since(mark)
    assert all(_bad(p) for p in got.polls("silent")[:tried + 1])
    assert ("silent", True) in order, f"not polled again within 12 cycles: {order}"
    first_good = order.index(("silent", True))
    cycles = sum(d == "a" for d, _ in order[:first_good])
    assert cycles <= 2, f"the returned unit waited {cycles} cycles of the bus: {order}"
    # the answering units kept their rate while the silent unit was probed (as multidrop)
    nominal = window / interval
    for d in ("a", "b"):
        assert after[d] - before[d] >= 0.6 * nominal, (d, after[d] - before[d], nominal)
        assert not any(_bad(p) for p in got.polls(d))
