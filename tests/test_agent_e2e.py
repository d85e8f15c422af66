"""The whole station end to end: simulated analysers on a pty RTU bus and over TCP, the agent
(`quantrac run`), real Mosquitto, the centre receiver. Windows of 10 s keep the tests short.

Each acceptance line of issue 7 is its own test: averages at the centre match the simulator's
served values; a silent analyser is flagged and recovers without disturbing the others; the
broker down for 60 s; the agent SIGKILLed and restarted; SIGTERM leaves a clean database.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from edge_agent.console.control_client import request
from protocol.model import RecordFlag, Status
from tests.agent_world import (
    SID,
    WIDTH,
    StationWorld,
    expected_record,
    fault,
    full_windows,
    station_world,
)
from tests.mqtt_world import wait_for

pytestmark = pytest.mark.slow
N_CHANNELS = 8


@pytest.fixture
def sw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StationWorld]:
    yield from station_world(tmp_path, monkeypatch)


def centre_matches_outbox(sw: StationWorld) -> None:
    """Every record the outbox holds is at the centre, exactly once, identical."""
    with sw.outbox() as store:
        last = store.status().last_seq
        held = store.get(1, last)
    wait_for(lambda: sw.world.stored_count(SID) >= len(held), 60,
             f"all {len(held)} records at the centre\n{sw.log()[-2000:]}", poll=0.2)
    stored = sw.centre_records()
    assert [seq for seq, _ in stored] == [seq for seq, _ in held], "exactly once"
    for (_, got), (_, want) in zip(stored, held, strict=True):
        assert (got.channel, got.start, got.end, got.n_valid, got.valid, got.flags) == \
            (want.channel, want.start, want.end, want.n_valid, want.valid, want.flags)


def test_averages_at_the_centre_match_the_simulators_served_values(sw: StationWorld) -> None:
    agent = sw.start_agent()
    sw.wait_centre(3 * N_CHANNELS, 90)
    assert sw.stop_agent(agent) == 0, sw.log()
    centre_matches_outbox_but_partials = sw.centre_records()
    with sw.outbox() as store:
        samples = store.samples_between(0, time.time() + 60)
    checked = 0
    for rec in full_windows(centre_matches_outbox_but_partials):
        assert rec.end - rec.start == WIDTH
        n_valid, mean = expected_record(sw.station, samples, rec)
        assert rec.n_valid == n_valid, rec
        if n_valid:
            assert rec.mean == pytest.approx(mean, rel=1e-12, abs=1e-12), rec
            checked += 1
    assert checked >= 2 * N_CHANNELS
    channels = {r.channel for _, r in centre_matches_outbox_but_partials}
    assert channels == {"pH", "Temp", "TSS", "COD", "NH4", "TN", "TP", "Flow"}
    # this sandbox runs no NTP: the records say so rather than pretending
    assert all(r.flags & RecordFlag.CLOCK_UNSYNCED for _, r in centre_matches_outbox_but_partials)
    assert sw.world.security_events() == []


def test_a_silent_analyser_is_flagged_offline_and_recovers(sw: StationWorld) -> None:
    agent = sw.start_agent()
    sw.wait_centre(N_CHANNELS, 60)
    with fault(sw.sim, 2, "no_answer"):  # the Hach controller, on the shared RTU bus
        silent_from = time.time()
        wait_for(lambda: any(
            r.channel == "COD" and r.start >= silent_from and r.status is Status.OFFLINE
            for _, r in sw.centre_records()), 60, "an OFFLINE COD record at the centre")
        status = request(sw.socket, {"op": "status"})["status"]
        hach = next(d for d in status["devices"] if d["device"] == "hach")
        assert hach["consecutive_failures"] > 0 and "timeout" in hach["last_error"]
        silent_to = time.time()
    wait_for(lambda: any(
        r.channel == "COD" and r.start >= silent_to and r.valid
        for _, r in sw.centre_records()), 60, "a valid COD record after recovery")
    assert sw.stop_agent(agent) == 0
    records = [r for _, r in sw.centre_records()]
    offline = [r for r in records if r.channel in ("COD", "NH4") and r.status is Status.OFFLINE]
    assert offline and all(not r.valid for r in offline)
    # windows wholly inside the silence have no value at all, never a made-up one
    windows = {r.start for r in offline if r.start >= silent_from and r.end <= silent_to}
    assert windows
    assert all(r.n_valid == 0 and r.mean != r.mean for r in offline if r.start in windows)
    # the others, on the same bus and on TCP, were unaffected in those same windows
    others = [r for r in records if r.start in windows and r.channel not in ("COD", "NH4")]
    assert len(others) == 6 * len(windows)
    assert all(r.valid and r.status is Status.MEASURING for r in others), others
    log = sw.log()
    assert "event=poll_failed device=hach" in log and "event=device_recovered device=hach" in log


def test_broker_down_60s_everything_arrives_once_in_order(sw: StationWorld) -> None:
    agent = sw.start_agent()
    sw.wait_centre(N_CHANNELS, 60)
    sw.world.broker.stop()
    down_at = time.time()
    with sw.outbox() as store:
        before = store.status().last_seq
    wait_for(lambda: time.time() - down_at >= 60, 70, "60 s of outage", poll=1)
    with sw.outbox() as store:
        during = store.status()
    assert during.last_seq >= before + 4 * N_CHANNELS, "records kept coming while offline"
    assert during.unacked >= 4 * N_CHANNELS
    status = request(sw.socket, {"op": "status"})["status"]
    assert status["uplink"]["state"] == "connecting"
    assert status["outbox"]["unacked"] >= 4 * N_CHANNELS
    # The receiver subscribes again before the station may publish. Mosquitto (2.0.11, as
    # Debian ships it) restores a persistent session's plain subscriptions from its database
    # but not a shared one's: until a receiver of the group is back, a packet is dropped, and
    # the station sends it again after its ack timeout, behind newer ones (failed in a loaded
    # CI run, seqs 65-72 before 9-64). That recovery is tested in test_mqtt_faults; this test
    # is about the order of the drain, so the agent is held while the receiver resubscribes
    # (its retained state message arriving says the subscription is in place).
    centre_log = partial(sw.world.log, "centre.log")
    states = centre_log().count("event=station_state")
    agent.send_signal(signal.SIGSTOP)
    try:
        sw.world.broker.start()
        wait_for(lambda: centre_log().count("event=station_state") > states, 60,
                 "the receiver to subscribe again")
    finally:
        agent.send_signal(signal.SIGCONT)
    sw.wait_centre(during.last_seq, 60)
    assert sw.stop_agent(agent) == 0
    centre_matches_outbox_partly(sw, during.last_seq)
    conn = sqlite3.connect(sw.world.store_path)
    received = [row[0] for row in conn.execute(
        "SELECT received FROM records WHERE station = ? ORDER BY seq", (SID,))]
    conn.close()
    assert received == sorted(received), "oldest first"
    assert "uplink_disconnected" in sw.log() and sw.world.security_events() == []


def centre_matches_outbox_partly(sw: StationWorld, up_to: int) -> None:
    """Seqs 1..up_to are at the centre exactly once (later ones may still be on their way)."""
    seqs = [seq for seq, _ in sw.centre_records()]
    assert Counter(seqs).most_common(1)[0][1] == 1
    assert [s for s in seqs if s <= up_to] == list(range(1, up_to + 1))


def test_agent_sigkilled_and_restarted_loses_and_duplicates_nothing(sw: StationWorld) -> None:
    first = sw.start_agent()
    sw.wait_centre(2 * N_CHANNELS, 60)
    time.sleep(WIDTH / 2)  # let the kill fall in the middle of a window (not a wait-and-hope)
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    killed_at = time.time()
    second = sw.start_agent(log_name="agent-2.log")
    wait_for(lambda: any(r.start >= killed_at + WIDTH for _, r in sw.centre_records()), 90,
             "records from the restarted agent")
    wait_for(lambda: "event=resumed" in sw.log("agent-2.log"), 5, "the resume log line")
    assert sw.stop_agent(second) == 0, sw.log("agent-2.log")
    restart = time.time()
    centre_matches_outbox(sw)  # the restarted agent drained the first one's backlog too
    assert time.time() - restart < 60
    records = [r for _, r in sw.centre_records() if not r.flags & RecordFlag.PARTIAL]
    keys = Counter((r.channel, r.start) for r in records)
    assert max(keys.values()) == 1, "no window reported twice"
    for channel in {r.channel for r in records}:
        starts = sorted(r.start for r in records if r.channel == channel)
        assert starts == list(range(starts[0], starts[-1] + WIDTH, WIDTH)), \
            f"{channel}: a window is missing around the kill"
    # the window cut by the kill was rebuilt from the raw samples the store kept
    cut = [r for r in records if r.start <= killed_at < r.end]
    assert len(cut) == N_CHANNELS and all(r.n_valid > 0 for r in cut)


def test_sigterm_closes_partial_windows_leaves_a_clean_database_and_exits_0(
        sw: StationWorld) -> None:
    agent = sw.start_agent()
    sw.wait_centre(N_CHANNELS, 60)
    status = request(sw.socket, {"op": "status"})["status"]
    assert status["ready"] and len(status["channels"]) == N_CHANNELS
    stopped_at = time.time()
    assert sw.stop_agent(agent) == 0
    log = sw.log()
    assert "event=agent_stopped" in log
    assert "Traceback" not in log
    assert not sw.socket.exists()
    with sw.outbox() as store:
        assert store.integrity_check(full=True) == ["ok"]
        last = store.get(1, store.status().last_seq)
    partial = [r for _, r in last if r.flags & RecordFlag.PARTIAL]
    assert {r.channel for r in partial} == {r.channel for _, r in last}
    assert all(r.start <= stopped_at < r.end for r in partial)
    assert not Path(str(sw.state_dir / "outbox.sqlite") + "-wal").exists() or \
        Path(str(sw.state_dir / "outbox.sqlite") + "-wal").stat().st_size == 0
    lines = [line for line in log.splitlines() if line.startswith("ts=")]
    assert lines and all(" event=" in line for line in lines), "one logfmt line per event"
    assert json.loads(json.dumps(status))  # the status document is plain JSON
