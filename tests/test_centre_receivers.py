"""Many receivers on one shared subscription and one store; a receiver killed; the store down.

The kill test runs real processes only: Mosquitto, two ``quantrac centre serve`` in one
``$share`` group on one store, and twenty station uplinks (six on SQLite) draining 500
records each. One
receiver or the other is SIGKILLed whenever the store passes a randomly drawn record count
(so the kills land mid-drain, mid-batch, at moments the seed decides and the failure message
names) and started again. Afterwards every record is held exactly once, the right record
under each seq, every outbox is empty (everything acknowledged), and no security event was
raised: a kill between commit and PUBACK comes back as a broker redelivery, which the store
recognises, never as a duplicate or a conflict.

The store-down test drives one receiver's packet handler in-process on a real SQLite store
made full (``max_page_count`` at its current size: what a full partition looks like to
SQLite) and then given room again.
"""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from centre.receiver import STORE_PROBE_S, STORE_UNAVAILABLE, Receiver, ReceiverSettings
from centre.registry import Registry
from centre.store import CentreStore
from centre.store_backends.sqlite import SqliteBackend
from protocol.payload import same_record
from tests.mqtt_world import World, make_records, seal_as, wait_for, world_at

if TYPE_CHECKING:
    from tests.pg_server import PgServer

PER_STATION = 500
#: stations and kills per backend: the issue's 20 x 500 on PostgreSQL (what a province runs
#: several receivers on); six on SQLite, to keep the suite inside CI's time
SIZES = {"postgresql": (20, 4), "sqlite": (6, 2)}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from world_at(tmp_path)


def _at_least(location: Path | str, count: int) -> bool:
    return _held(location) >= count


def _said(world: World, logs: list[str], event: str) -> int:
    """How many times the receivers' ``logs`` said ``event``."""
    return sum(world.log(name).count(f"event={event} ") for name in logs)


def _more(count: Callable[[], int], than: int) -> bool:
    return count() > than


def _held(location: Path | str) -> int:
    """Records the store holds now (0 before the first receiver has created it)."""
    if isinstance(location, Path) and not location.exists():
        return 0
    with CentreStore(location, read_only=True) as store:
        return sum(s.records for s in store.summaries())


def _serve(world: World, config: Path, log_name: str) -> subprocess.Popen[bytes]:
    """``quantrac centre serve`` without waiting for it to connect (its store may be down)."""
    log = (world.root / log_name).open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent.daemon.cli", "centre", "serve", "--config",
         str(config)], stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    log.close()
    world.procs.append(proc)
    return proc


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_receivers_one_killed_at_random_moments_store_everything_once(
    world: World, backend: str, request: pytest.FixtureRequest
) -> None:
    """The kill test of the module docstring; on PostgreSQL also the database missing at the
    first receiver's start (a DSN naming a database not created yet: it waits, says so, and
    starts when the database exists) and the server stopped and started again mid-drain (the
    receivers stop acking, say so once, and resume; the stations' resends fill in)."""
    seed = int(os.environ.get("KILL_SEED", random.SystemRandom().randrange(1 << 30)))
    rng = random.Random(seed)
    why = f"(KILL_SEED={seed})"
    n_stations, kills = SIZES[backend]
    pg: PgServer | None = None
    location: Path | str = world.store_path
    if backend == "postgresql":
        pg = request.getfixturevalue("pg_server")
        database = f"receivers_{seed}"
        location = pg.dsn(database)
    stations = [world.add_station(f"QTR-{i:03d}") for i in range(n_stations)]
    sent = {}
    for i, station in enumerate(stations):
        records = make_records(PER_STATION, salt=100 + i)
        sent[station.station_id] = (station.fill(records), records)
    total = n_stations * PER_STATION
    configs = []
    for n in (1, 2):
        path = world.centre_config(f"r{n}.toml", client_id=f"receiver-{n}")
        path.write_text(path.read_text().replace(f'store = "{world.store_path}"',
                                                 f'store = "{location}"'))  # fmt: skip
        configs.append(path)
    starts = [0, 0]

    def start(n: int) -> subprocess.Popen[bytes]:
        starts[n] += 1
        return world.start_centre(configs[n], f"r{n + 1}-{starts[n]}.log")

    if pg is not None:  # the first receiver starts before its database exists
        starts[0] += 1
        first = _serve(world, configs[0], "r1-1.log")
        wait_for(lambda: "store_unavailable" in world.log("r1-1.log"), 30,
                 "the receiver to say its store is unavailable")  # fmt: skip
        assert first.poll() is None, world.log("r1-1.log")
        pg.admin(f"CREATE DATABASE {database}", "postgres")
        wait_for(lambda: "receiver_connected" in world.log("r1-1.log"), 30,
                 "the receiver to start once its database exists")  # fmt: skip
        receivers = [first, start(1)]
    else:
        receivers = [start(0), start(1)]
    uplinks = [
        world.start_uplink(s, "--until-drained", "--max-packet", "4096", "--ack-timeout", "3")
        for s in stations
    ]
    # kill when the store first holds at least each of these counts (drawn, sorted); on
    # PostgreSQL the server also goes away once, drawn in the first half of the drain (the
    # stations may still have drained by then: a restarted receiver takes a second or two to
    # start, the other drains meanwhile; the receivers' probe reports the store back then)
    marks = [(m, "kill") for m in rng.sample(range(total // 10, total * 9 // 10), kills)]
    if pg is not None:
        marks.append((rng.randrange(total // 10, total // 2), "outage"))
    for mark, what in sorted(marks):
        wait_for(partial(_at_least, location, mark), 120, f"{mark} records stored {why}")
        if what == "kill":
            victim = rng.randrange(2)
            receivers[victim].send_signal(signal.SIGKILL)
            receivers[victim].wait(10)
            receivers[victim] = start(victim)
            continue
        assert pg is not None
        # counted: the first receiver may have said both already, at its start
        logs = [f"r{n + 1}-{starts[n]}.log" for n in (0, 1)]
        gone = partial(_said, world, logs, "store_unavailable")
        back = partial(_said, world, logs, "store_available")
        before = gone(), back()
        pg.stop()
        try:
            wait_for(partial(_more, gone, before[0]), 30,
                     f"a receiver to notice the database is gone {why}")  # fmt: skip
        finally:
            pg.start()
        wait_for(partial(_more, back, before[1]), 30, f"a receiver to resume {why}")
    for up, station in zip(uplinks, stations, strict=True):
        assert up.wait(180) == 0, f"{why} " + world.log(f"uplink-{station.station_id}.log")

    with CentreStore(location, read_only=True) as store:
        assert sum(s.records for s in store.summaries()) == total, why
        for station in stations:
            seqs, records = sent[station.station_id]
            stored = store.by_seq(station.station_id)
            assert [seq for seq, _ in stored] == seqs, f"{station.station_id}: each once {why}"
            wrong = [s for (s, got), want in zip(stored, records, strict=True)
                     if not same_record(got, want)]  # fmt: skip
            assert wrong == [], f"{station.station_id}: other records at {wrong[:5]} {why}"
            assert station.unacked() == 0, f"{station.station_id}: all acknowledged {why}"
        assert store.security_events() == [], why
    assert sum(starts) == 2 + kills
    for log_name in (f"r{n + 1}-{i}.log" for n in (0, 1) for i in range(1, starts[n] + 1)):
        text = world.log(log_name)
        said = re.findall(r"event=(store_unavailable|store_available) ", text)
        # once each way per outage, in that order (the first PostgreSQL receiver may see two:
        # its database missing at start, then the server stopped; a receiver that no packet
        # reached after the server came back has not said "available" yet: a packet is what
        # tells it; one started after the outage says nothing)
        turns = ["store_unavailable", "store_available"] * 2
        assert said == turns[: len(said)], f"{log_name}: {said}"
    if pg is not None:
        pg.admin(f"DROP DATABASE {database} WITH (FORCE)", "postgres")


def _in_process_receiver(world: World, store: CentreStore, registry: Registry,
                         now: list[float]) -> Receiver:
    """A receiver whose packet handler the test drives, on ``store``, its clock ``now[0]``;
    its broker (port 1) refuses, so ``step`` only tries the store and fails to connect."""
    key = world.centre.packet_private
    settings = ReceiverSettings("127.0.0.1", 1, world.broker.ca_path,
                                world.receiver_cert.cert, world.receiver_cert.key)  # fmt: skip
    return Receiver(settings, store, lambda d: registry.open_packet(d, key),
                    world.centre.signing_private, clock=lambda: now[0])  # fmt: skip


def _store_changes(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, object]]]:
    """The receiver's ``store_unavailable``/``store_available`` lines, with their fields."""
    return [(r.getMessage(), r.__dict__) for r in caplog.records
            if r.getMessage() in ("store_unavailable", "store_available")]  # fmt: skip


def test_a_full_store_stops_the_acks_says_so_once_and_they_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = World(tmp_path)  # keys, registry and a station; no broker process needed
    station = world.add_station("QTR-FULL")
    records = make_records(1200, salt=7)
    seqs = station.fill(records)
    pairs = list(zip(seqs, records, strict=True))
    packets = [seal_as(station, pairs[i : i + 300]) for i in range(0, 1200, 300)]
    topic = f"quantrac/v1/{station.station_id}/up"
    registry = world.centre.registry()
    caplog.set_level(logging.INFO, logger="quantrac.centre.receiver")
    now = [1_000_000.0]
    with CentreStore(world.store_path) as store:
        receiver = _in_process_receiver(world, store, registry, now)
        assert receiver.handle_packet(topic, packets[0]) == "stored"
        assert receiver.stats.acks_sent == 1
        # the partition is full: SQLite may use no page beyond those it has
        assert isinstance(store.db, SqliteBackend)
        conn = store.db.conn
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        conn.execute(f"PRAGMA max_page_count = {pages}")
        assert receiver.handle_packet(topic, packets[1]) == STORE_UNAVAILABLE
        assert receiver.handle_packet(topic, packets[2]) == STORE_UNAVAILABLE
        assert receiver.stats.acks_sent == 1, "nothing uncommitted is acknowledged"
        assert not receiver.store_available
        # the timer's probe is not tried on a full store: an empty transaction succeeds there,
        # so it would say "available" while every write still fails (and flap with each packet)
        now[0] += STORE_PROBE_S + 1
        receiver.step()
        assert not receiver.store_available
        # room again: the stations' resends (here: the same packets) are stored and acked
        conn.execute("PRAGMA max_page_count = 1073741823")
        for packet in packets[1:]:
            assert receiver.handle_packet(topic, packet) == "stored"
        assert receiver.stats.acks_sent == 4
        assert receiver.store_available
        assert [s for s, _ in store.by_seq(station.station_id)] == seqs
        assert store.security_events() == []
        receiver.close()
    registry.close()
    said = _store_changes(caplog)
    assert [m for m, _ in said] == ["store_unavailable", "store_available"], "once per change"
    assert "full" in said[0][1]["error"]
    assert said[1][1]["unacked_packets"] == 2
    assert said[1][1]["proved_by"] == "packet"


def test_a_store_that_comes_back_while_no_packet_comes_is_said_to_be_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, pg_server: PgServer
) -> None:
    """The database restarted after the last packet (a drained backlog, quiet stations): the
    receiver's timer probe finds it back and says so, without waiting for a packet. Failed in
    CI as the kill test's outage landing after the stations had sent everything."""
    world = World(tmp_path)
    station = world.add_station("QTR-IDLE")
    records = make_records(10, salt=3)
    pairs = list(zip(station.fill(records), records, strict=True))
    topic = f"quantrac/v1/{station.station_id}/up"
    registry = world.centre.registry()
    caplog.set_level(logging.INFO, logger="quantrac.centre.receiver")
    now = [1_000_000.0]
    with CentreStore(pg_server.fresh()) as store:
        receiver = _in_process_receiver(world, store, registry, now)
        pg_server.stop()
        try:
            assert receiver.handle_packet(topic, seal_as(station, pairs)) == STORE_UNAVAILABLE
            now[0] += STORE_PROBE_S + 1
            receiver.step()  # the probe: the server is still down
            assert not receiver.store_available
        finally:
            pg_server.start()
        receiver.step()  # not due yet: probes are STORE_PROBE_S apart
        assert not receiver.store_available
        now[0] += STORE_PROBE_S + 1
        receiver.step()
        assert receiver.store_available
        assert receiver.handle_packet(topic, seal_as(station, pairs)) == "stored"
        receiver.close()
    registry.close()
    said = _store_changes(caplog)
    assert [m for m, _ in said] == ["store_unavailable", "store_available"], "once per change"
    assert said[1][1]["proved_by"] == "probe"
    assert said[1][1]["unacked_packets"] == 1
