"""The automatic sampler (issue 15 item 5), against the simulator's coils and inputs.

Real parts: hw_sim serves a COD analyser (hach_sc, unit 2) and a sampler (unit 9: coils and
discrete inputs; input i reads coil i, as a sampler's busy contact follows its start relay)
over Modbus TCP on loopback; the agent's pipeline makes the records, ``Exceedances`` decides
and flags, the sampler's own thread writes the coil through the same transport the poller
uses. Wall time is a parameter (sans-IO), so the hour of cooldown is not waited for.

Hand-worked example. COD limited at 150 mg/L on the 5-minute mean; cooldown 3600 s, cap 2 a
day. Five-minute windows from 10:00 (local) at 160, 170, 180 mg/L: three exceedances, the
sampler starts on the first only (10:05 and 10:10 are within the hour). 11:05 at 200: the
cooldown has passed, the second start. 12:10 at 190: the cap of 2 is reached, refused.
Flags: SAMPLER_TRIGGERED on the 10:00 and the 11:05 record only; the coil was switched on and
off twice (4 FC05 writes), never more.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.transport import TcpTransport
from edge_agent.config.reader import ConfigError, parse_config
from edge_agent.core.pipeline import Pipeline
from edge_agent.daemon.exceedance import Exceedances
from edge_agent.poll.poller import Bus, Poller
from edge_agent.poll.sampler import STATE_BACKOFF_S, STATE_EVERY_S, SamplerWorker
from edge_agent.uplinks.mqtt.uplink import URGENT_FLAGS
from hw_sim import RunningStation, parse_station, running_station
from protocol.model import Record, RecordFlag, Sample, Status
from tests.mqtt_world import wait_for

OFFSET = 7 * 3600
DAY0 = 1_790_035_200  # 2026-09-22 00:00 local (UTC+7)
T10 = DAY0 + 10 * 3600 - OFFSET  # 10:00 local, as UTC epoch seconds
SAMPLER_UNIT = 9


@pytest.fixture
def sim() -> Iterator[RunningStation]:
    doc = {"name": "sampler-station", "device": [
        {"name": "hach", "profile": "hach_sc", "unit": 2, "transports": ["tcp"]},
        {"name": "sampler", "profile": "ph_probe", "unit": SAMPLER_UNIT, "transports": ["tcp"],
         "coils": 2, "discrete_inputs": 2},
    ]}
    with running_station(parse_station(doc), tcp_port=0) as s:
        yield s


def station_doc(port: int, interval: float = 10.0, **sampler: Any) -> dict[str, Any]:
    return {
        "station": {"id": "HCM-WW-0001"},
        "agent": {"state_dir": "/nonexistent"},
        "poll": {"timeout": 0.3, "retries": 0},
        "bus": [{"name": "lan", "host": "127.0.0.1", "tcp_port": port}],
        "device": [{"name": "hach", "bus": "lan", "profile": "hach_sc", "unit": 2,
                    "interval": interval, "channels": ["COD"]}],
        "averaging": {"windows": [300], "grace_s": 1.0},
        "limit": [{"channel": "COD", "window": 300, "max": 150.0}],
        "sampler": {"bus": "lan", "unit": SAMPLER_UNIT, "trigger_coil": 0, "busy_input": 0,
                    "cooldown_s": 3600.0, "daily_cap": 2, "timeout_s": 0.3, "pulse_s": 0.2,
                    **sampler},
    }


class Counting:
    """The real transport, with its FC05 writes counted (what the sampler was sent)."""

    def __init__(self, inner: TcpTransport) -> None:
        self.inner = inner
        self.coil_writes: list[bool] = []
        self.lock = threading.Lock()

    def read_bits(self, unit: int, function: int, address: int, count: int,
                  timeout: float) -> list[bool]:
        return self.inner.read_bits(unit, function, address, count, timeout)

    def write_coil(self, unit: int, address: int, on: bool, timeout: float) -> None:
        self.inner.write_coil(unit, address, on, timeout)
        with self.lock:
            self.coil_writes.append(on)

    def write_register(self, unit: int, address: int, value: int, timeout: float) -> None:
        self.inner.write_register(unit, address, value, timeout)


def five_minutes(p: Pipeline, start: int, value: float) -> list[Record]:
    """Five minutes of COD at ``value``, one sample every 10 s; the closed records."""
    for i in range(30):
        t = start + 10 * i
        p.feed("hach", [Sample("COD", t, value, Status.MEASURING)], now=t + 0.1)
    return p.tick(start + 302.0)


def test_an_exceedance_starts_the_sampler_once_within_the_cooldown(sim: RunningStation) -> None:
    assert sim.tcp_port is not None
    cfg = parse_config(station_doc(sim.tcp_port), Path("station.toml"))
    now = [0.0]
    pipeline = Pipeline(cfg, OFFSET)
    pipeline.clock_state(T10, synced=True)
    desk = Exceedances(cfg, OFFSET, clock=lambda: now[0])
    bus = Counting(TcpTransport("127.0.0.1", sim.tcp_port))
    desk.start_sampler(lambda: bus)
    try:
        out: list[Record] = []
        for start, value in ((T10, 160.0), (T10 + 300, 170.0), (T10 + 600, 180.0),
                             (T10 + 3900, 200.0), (T10 + 7800, 190.0)):
            records = five_minutes(pipeline, start, value)
            now[0] = start + 302.0
            out += [r for r in desk.judge(records) if r.valid]  # not the empty windows between
        assert [r.start for r in out] == [T10, T10 + 300, T10 + 600, T10 + 3900, T10 + 7800]
        assert all(r.flags & RecordFlag.EXCEEDANCE for r in out)
        assert [bool(r.flags & RecordFlag.SAMPLER_TRIGGERED) for r in out] == \
            [True, False, False, True, False]
        assert desk.worker is not None
        wait_for(lambda: desk.status()["sampler"]["starts"] == 2, 10, "two sampler starts")
        wait_for(lambda: sim.station.coils(SAMPLER_UNIT) == [False, False], 5, "coil off")
        with bus.lock:
            assert bus.coil_writes == [True, False, True, False]
        st = desk.status()
        assert st["exceedances"]["count"] == 5
        assert st["exceedances"]["last"]["mean"] == pytest.approx(190.0)
        sampler = st["sampler"]
        assert (sampler["failed"], sampler["problem"], sampler["starts_today"]) == (0, None, 2)
        assert sampler["refused"] == 3
        assert sampler["last_start"]["by"] == "exceedance"
        assert sampler["last_start"]["window_start"] == T10 + 3900
        assert sampler["next_allowed"] == "daily cap: 2 of 2 starts today"
        # a person's start obeys the same cap
        assert desk.command() == {"ok": False, "error": "sampler not started: daily cap: 2 of "
                                                        "2 starts today"}
    finally:
        desk.stop()
        bus.inner.close()


def test_the_busy_contact_is_read_while_the_sampler_runs(sim: RunningStation) -> None:
    """FC02 input 0 follows coil 0 in the simulator: with a long pulse, the worker reads
    busy while the coil is on, idle after."""
    assert sim.tcp_port is not None
    cfg = parse_config(station_doc(sim.tcp_port, pulse_s=3.0), Path("station.toml"))
    desk = Exceedances(cfg, OFFSET, clock=time.time)
    t = TcpTransport("127.0.0.1", sim.tcp_port)
    desk.start_sampler(lambda: t)
    try:
        assert desk.command()["ok"] is True
        wait_for(lambda: sim.station.coils(SAMPLER_UNIT)[0], 5, "the start coil on")
        wait_for(lambda: desk.status()["sampler"]["starts"] == 1, 10, "the start done")
        # after the start the worker reads the contact: the coil is off again by then
        wait_for(lambda: desk.status()["sampler"]["busy"] is False, 10, "busy read back idle")
    finally:
        desk.stop()
        t.close()


def test_a_silent_sampler_is_reported_and_polling_goes_on(sim: RunningStation) -> None:
    """The sampler's unit does not answer: the start fails after one timeout and is
    reported (status problem, failed count); the analyser on the same bus keeps being polled
    through the shared transport, and judging the record never waited for the bus."""
    assert sim.tcp_port is not None
    cfg = parse_config(station_doc(sim.tcp_port, interval=0.5), Path("station.toml"))
    sim.set_fault(SAMPLER_UNIT, "no_answer")
    got: list[Sample] = []
    lock = threading.Lock()

    def sink(device: str, samples: list[Sample]) -> None:
        with lock:
            got.extend(samples)

    [(_, device)] = cfg.poll.devices
    poller = Poller([Bus(TcpTransport("127.0.0.1", sim.tcp_port), (device,))], sink,
                    time.time, cfg.poll.policy)
    poller.start()
    desk = Exceedances(cfg, OFFSET, clock=time.time)
    transport = poller.transport(f"127.0.0.1:{sim.tcp_port}")
    assert transport is not None
    desk.start_sampler(lambda: transport)  # type: ignore[arg-type, return-value]
    try:
        over = Record("COD", T10, T10 + 300, 200.0, 190.0, 210.0, 1.0, 30, 30, True,
                      Status.MEASURING, "mg/L", RecordFlag.EXCEEDANCE)
        [judged] = desk.judge([over])  # returns at once: the Modbus part is on its thread
        assert judged.flags & RecordFlag.SAMPLER_TRIGGERED
        wait_for(lambda: desk.status()["sampler"]["failed"] == 1, 10, "the start failed")
        problem = desk.status()["sampler"]["problem"]
        assert problem == ("sampler (bus lan unit 9) did not take the start: unit 9: no "
                           "answer within 0.300 s")
        assert desk.status()["sampler"]["last_start"]["ok"] is False
        with lock:
            before = sum(1 for s in got if s.status is Status.MEASURING)
        wait_for(lambda: sum(1 for s in got if s.status is Status.MEASURING) >= before + 3, 15,
                 "the analyser polled on while the sampler is silent")
        assert all(h.consecutive_failures == 0 for h in poller.health())
    finally:
        desk.stop()
        poller.stop(5.0)


def cod(start: int, mean: float = 100.0, channel: str = "COD") -> Record:
    """A valid 5-minute record under the 150 mg/L limit."""
    return Record(channel, start, start + 300, mean, mean, mean, 0.0, 30, 30, True,
                  Status.MEASURING, "mg/L")


def test_a_command_start_is_reported_with_the_record_it_fell_in(sim: RunningStation) -> None:
    """`quantrac sampler trigger` at 10:02: the 10:00-10:05 COD record (under its limit) is
    flagged SAMPLER_TRIGGERED and not EXCEEDANCE, so the uplink sends it ahead of its backlog
    as it does an exceedance; the window that ended before the command, a channel the
    sampler is not for and the window after are not flagged; a second command within the
    cooldown is refused and flags nothing."""
    assert sim.tcp_port is not None
    cfg = parse_config(station_doc(sim.tcp_port), Path("station.toml"))
    now = [float(T10 + 120)]
    desk = Exceedances(cfg, OFFSET, clock=lambda: now[0])
    t = TcpTransport("127.0.0.1", sim.tcp_port)
    desk.start_sampler(lambda: t)
    try:
        assert desk.command()["ok"] is True
        [before] = desk.judge([cod(T10 - 300)])
        [other] = desk.judge([cod(T10, channel="TSS")])
        [during, after] = desk.judge([cod(T10), cod(T10 + 300)])
        assert during.flags == RecordFlag.SAMPLER_TRIGGERED and during.flags & URGENT_FLAGS
        assert (before.flags, other.flags, after.flags) == (RecordFlag.NONE,) * 3
        wait_for(lambda: desk.status()["sampler"]["starts"] == 1, 10, "the start done")
        assert desk.status()["sampler"]["last_start"]["by"] == "command"
        now[0] += 60
        assert desk.command()["ok"] is False  # the cooldown
        [later] = desk.judge([cod(T10 + 600)])
        assert later.flags == RecordFlag.NONE
    finally:
        desk.stop()
        t.close()


def test_a_silent_sampler_is_read_at_the_slower_rate(sim: RunningStation) -> None:
    """Its state is read every STATE_EVERY_S while it answers, every STATE_BACKOFF_S after a
    failure: a silent sampler costs its bus one timeout a minute, not one per 5 s. The
    worker's steps are run here one by one with its monotonic clock in hand (no thread), and
    the simulator counts what reached the sampler's unit."""
    assert sim.tcp_port is not None
    cfg = parse_config(station_doc(sim.tcp_port), Path("station.toml"))
    assert cfg.sampler is not None
    mono = [0.0]
    t = TcpTransport("127.0.0.1", sim.tcp_port)
    worker = SamplerWorker(cfg.sampler, t, clock=time.time, monotonic=lambda: mono[0])

    def asked_after(at: float) -> int:
        mono[0] = at
        worker._step()
        return sim.station.requests(SAMPLER_UNIT)[0]

    sim.set_fault(SAMPLER_UNIT, "no_answer")
    try:
        assert asked_after(0.0) == 1
        assert worker.status()["problem"] is not None and worker.status()["busy"] is None
        assert asked_after(STATE_EVERY_S + 1) == 1  # silent: no read at the normal rate
        assert asked_after(STATE_BACKOFF_S - 0.1) == 1
        assert asked_after(STATE_BACKOFF_S + 0.1) == 2
        sim.set_fault(SAMPLER_UNIT, "no_answer", on=False)
        assert asked_after(2 * STATE_BACKOFF_S + 0.2) == 3  # it answers: back to 5 s
        assert worker.status()["problem"] is None and worker.status()["busy"] is False
        assert asked_after(2 * STATE_BACKOFF_S + 0.2 + STATE_EVERY_S + 0.1) == 4
    finally:
        t.close()


BASE_SAMPLER = station_doc(1502)


@pytest.mark.parametrize(("change", "key", "value"), [
    ({"bus": "rs485-9"}, "sampler.bus", "'rs485-9'"),
    ({"unit": 0}, "sampler.unit", "0"),
    ({"trigger_coil": 70000}, "sampler.trigger_coil", "70000"),
    ({"trigger_register": 40}, "sampler.trigger_coil", "0"),
    ({"trigger_value": 1}, "sampler.trigger_value", "1"),
    ({"busy_coil": 1}, "sampler.busy_coil", "1"),
    ({"cooldown_s": 10}, "sampler.cooldown_s", "10"),
    ({"daily_cap": 0}, "sampler.daily_cap", "0"),
    ({"channels": ["TSS"]}, "sampler.channels", "'TSS'"),
    ({"timeout_s": 30}, "sampler.timeout_s", "30"),
    ({"pulse": 1}, "sampler.pulse", "1"),
])
def test_config_check_refuses_a_broken_sampler_naming_key_and_value(
        change: dict[str, Any], key: str, value: str) -> None:
    doc = copy.deepcopy(BASE_SAMPLER)
    doc["sampler"].update(change)
    with pytest.raises(ConfigError) as err:
        parse_config(doc, Path("/etc/quantrac/station.toml"))
    problems = [str(p) for p in err.value.problems]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"/etc/quantrac/station.toml: {key} = {value}: expected")


def test_without_a_trigger_the_sampler_is_refused() -> None:
    doc = copy.deepcopy(BASE_SAMPLER)
    del doc["sampler"]["trigger_coil"]
    with pytest.raises(ConfigError) as err:
        parse_config(doc, Path("s.toml"))
    assert str(err.value) == ("s.toml: sampler.trigger_coil: missing; expected one of "
                              "trigger_coil (FC05) or trigger_register (FC06), not both")


def test_status_shows_the_exceedance_and_the_sampler_in_80_columns() -> None:
    from edge_agent.console.status_view import render
    from edge_agent.console.width import WIDTH

    now = float(T10 + 900)
    st = {"station": "HCM-WW-0001", "started": now - 60, "ready": True, "clock": {},
          "exceedances": {"count": 3, "last": {
              "channel": "COD", "window_start": T10 + 600, "width": 300, "mean": 180.0,
              "unit": "mg/L", "limit": "max 150", "source": "permit"}},
          "sampler": {"busy": True, "starts_today": 1, "daily_cap": 4, "last_start": {
              "at": T10 + 302, "by": "exceedance", "ok": False, "error": "x"},
              "problem": "sampler (bus lan unit 9) does not answer: unit 9: no answer"}}
    lines = render(st, now)
    tail = [line for line in lines if "exceed" in line or "sampler" in line]
    assert tail == [
        "! exceed 3 over limit; last COD 180 mg/L (5m, 5m ago), limit max 150 (permit)",
        "sampler busy, 1/4 today, last start 10m ago by exceedance, NOT acknowledged",
        "! sampler sampler (bus lan unit 9) does not answer: unit 9: no answer",
    ]
    assert all(len(line) <= WIDTH for line in lines)
    quiet = render({**st, "exceedances": {"count": 0, "last": None}}, now)
    assert "exceed  none since start" in quiet


def test_a_reload_keeps_the_starts_so_the_cooldown_holds(sim: RunningStation) -> None:
    """A changed [sampler] (a longer pulse) after a start: the new policy still knows the
    start, so an exceedance a minute later is refused by the cooldown."""
    assert sim.tcp_port is not None
    cfg = parse_config(station_doc(sim.tcp_port), Path("station.toml"))
    now = [float(T10 + 302)]
    desk = Exceedances(cfg, OFFSET, clock=lambda: now[0])
    t = TcpTransport("127.0.0.1", sim.tcp_port)
    desk.start_sampler(lambda: t)
    try:
        over = Record("COD", T10, T10 + 300, 200.0, 190.0, 210.0, 1.0, 30, 30, True,
                      Status.MEASURING, "mg/L", RecordFlag.EXCEEDANCE)
        [first] = desk.judge([over])
        assert first.flags & RecordFlag.SAMPLER_TRIGGERED
        wait_for(lambda: desk.status()["sampler"]["starts"] == 1, 10, "the start done")
        desk.reconfigure(parse_config(station_doc(sim.tcp_port, pulse_s=0.5),
                                      Path("station.toml")), OFFSET)
        assert desk.worker is None  # the daemon starts the new one with the poller
        desk.start_sampler(lambda: t)
        now[0] += 60
        [second] = desk.judge([over])
        assert not second.flags & RecordFlag.SAMPLER_TRIGGERED
        assert desk.status()["sampler"]["next_allowed"].startswith("cooldown: last start 60 s")
    finally:
        desk.stop()
        t.close()
