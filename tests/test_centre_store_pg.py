"""What only the PostgreSQL record store has to show: receivers racing on one database, the
schema's migrations, and a database that is wrong, gone or full, never showing its password.

Every other store test runs on both backends (``store_location``); these use the session's
real PostgreSQL server (``tests/pg_server.py``) and a database of their own where they change
what the database itself does (connections refused, a full tablespace).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from centre import migrations
from centre.serve_config import load
from centre.store import (
    REDELIVERED,
    STORED,
    CentreStore,
    NotACentreStoreError,
    StoreUnavailableError,
)
from edge_agent.daemon.cli import main
from protocol.model import Record
from protocol.payload import same_record
from tests.mosquitto import free_port
from tests.mqtt_world import make_records
from tests.pg_server import SERVER_USER, PgServer, execute_sql
from tests.test_buffer_safety import fill, tmpfs

CLOCK = 1_800_000_000.0
Packet = tuple[list[tuple[int, Record]], bytes]


def packets(station: str, n_packets: int, per_packet: int) -> list[Packet]:
    """``n_packets`` packets of ``per_packet`` records from seq 1, each with its digest."""
    records = make_records(n_packets * per_packet)
    out: list[Packet] = []
    for p in range(n_packets):
        first = 1 + p * per_packet
        chunk = records[first - 1 : first - 1 + per_packet]
        pairs = list(zip(range(first, first + per_packet), chunk, strict=True))
        out.append((pairs, hashlib.sha256(f"{station}:{p}".encode()).digest()))
    return out


def at_once(work: Callable[[], None], n: int) -> None:
    """``work`` in ``n`` threads at the same time (``n`` receivers); fails with what any raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a receiver thread hung"


@pytest.fixture
def database(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of this test's own (dropped after): its ``postgresql://`` URL."""
    name = "t_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    pg_server.admin(f"CREATE DATABASE {name}", "postgres")
    try:
        yield pg_server.dsn(name)
    finally:
        pg_server.admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true", "postgres")
        pg_server.admin(f"DROP DATABASE {name} WITH (FORCE)", "postgres")


# --- receivers racing -----------------------------------------------------------------------
def test_two_receivers_ingesting_the_same_packets_at_once_store_each_record_once(
    pg_server: PgServer,
) -> None:
    """Two connections (two receivers) ingest the same 3 stations x 30 packets concurrently, in
    the same order, so nearly every packet is in flight on both at once. Each packet is stored
    by exactly one of them; the other sees it held (a redelivery) and nothing is stored twice,
    nothing lost, and no unique-key violation escapes (the per-station lock serialises the
    rule; without it the second COPY hits the primary key)."""
    dsn = pg_server.fresh()
    work = [(st, pairs, digest) for st in ("S1", "S2", "S3")
            for pairs, digest in packets(st, 30, 20)]
    outcomes: dict[int, list[str]] = {i: [] for i in range(len(work))}
    start = threading.Barrier(2)

    def receiver() -> None:
        with CentreStore(dsn, clock=lambda: CLOCK) as store:
            start.wait(timeout=30)
            for i, (station, pairs, digest) in enumerate(work):
                result = store.ingest(station, pairs, digest, 1, redelivery=True)
                outcomes[i].append(result.outcome)

    at_once(receiver, 2)
    assert all(sorted(o) == [REDELIVERED, STORED] for o in outcomes.values()), outcomes
    with CentreStore(dsn) as store:
        for station in ("S1", "S2", "S3"):
            held = store.by_seq(station)
            want = [p for pairs, _ in packets(station, 30, 20) for p in pairs]
            assert [s for s, _ in held] == [s for s, _ in want]
            assert all(same_record(a, b) for (_, a), (_, b) in zip(held, want, strict=True))
        assert store.count() == 3 * 30 * 20
        # one counter series per station, shared by both receivers: 60 commands, no repeats
        assert store.next_counter("S1") == int(CLOCK * 1_000_000) + 60 + 1


def test_a_session_never_waits_forever(pg_server: PgServer) -> None:
    """A stalled receiver's transaction is ended by the server, a lock wait gives up: the
    session settings every store connection makes (``PostgresBackend._connect``)."""
    with CentreStore(pg_server.fresh()) as store:
        assert store.db.execute("SHOW idle_in_transaction_session_timeout") == [("1min",)]
        assert store.db.execute("SHOW lock_timeout") == [("30s",)]


# --- migrations -----------------------------------------------------------------------------
def test_receivers_starting_together_migrate_a_new_database_once(database: str) -> None:
    at_once(lambda: CentreStore(database).close(), 4)
    with CentreStore(database) as store:
        assert migrations.schema_version(store.db) == migrations.LATEST
        rows = store.db.execute("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in rows] == [v for v, _ in migrations.MIGRATIONS]


def test_a_store_of_a_newer_schema_is_refused_naming_the_versions(
    store_location: Path | str,
) -> None:
    CentreStore(store_location).close()
    execute_sql(store_location, "INSERT INTO schema_version (version, applied) VALUES (99, 0)")
    try:
        with pytest.raises(NotACentreStoreError, match=rf"schema version 99 is newer than this "
                           rf"quantrac knows \({migrations.LATEST}\)"):
            CentreStore(store_location)
    finally:
        execute_sql(store_location, "DELETE FROM schema_version WHERE version = 99")


def test_a_sqlite_store_from_before_schema_versions_is_migrated_keeping_its_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    with CentreStore(path, clock=lambda: CLOCK) as store:
        store.ingest("S1", packets("S1", 1, 5)[0][0], b"a" * 32, 1)
    with sqlite3.connect(path) as db:  # what a store written before versions looked like
        db.execute("DROP TABLE schema_version")
    with CentreStore(path) as store:
        assert migrations.schema_version(store.db) == migrations.LATEST
        rows = store.db.execute("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in rows] == [v for v, _ in migrations.MIGRATIONS]
        assert store.count("S1") == 5


# --- a bad DSN, a database gone, a full disk: clear, and never the password ---------------------
def test_a_bad_dsn_names_host_and_port_never_the_password(
    pg_server: PgServer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-" + os.urandom(4).hex()
    port = free_port()  # nothing listens there
    cases = {
        f"postgresql://quantrac:{secret}@127.0.0.1:{port}/centre":
            f"postgresql://quantrac@127.0.0.1:{port}/centre",
        pg_server.dsn(password=secret):  # the server, the wrong password
            f"postgresql://quantrac@127.0.0.1:{pg_server.port}/",
    }
    for dsn, named in cases.items():
        with pytest.raises(StoreUnavailableError) as err:
            CentreStore(dsn)
        assert named in str(err.value) and secret not in str(err.value), str(err.value)
    assert "password authentication failed" in str(err.value)
    with pytest.raises(StoreUnavailableError) as err:  # libpq's word on the port, not ours
        CentreStore(f"postgresql://quantrac:{secret}@127.0.0.1:notaport/centre")
    assert secret not in str(err.value) and 'invalid integer value "notaport"' in str(err.value)
    with pytest.raises(NotACentreStoreError) as bad:  # not even a URL: nothing of it echoed
        CentreStore(f"postgresql://quantrac:{secret}@127.0.0.1/centre?sslmode=x&bogus=1")
    assert secret not in str(bad.value) and "not a PostgreSQL URL" in str(bad.value), bad.value
    with pytest.raises(NotACentreStoreError) as bad:  # libpq would echo this URL, secret too
        CentreStore(f"postgresql://quantrac:{secret}@[::1:5432/centre")
    assert secret not in str(bad.value) and "quantrac:***@" in str(bad.value), bad.value
    with pytest.raises(StoreUnavailableError) as err:  # a password given as a parameter
        CentreStore(f"postgresql://quantrac@127.0.0.1:{port}/centre?password={secret}")
    assert secret not in str(err.value), err.value
    # the operator's view: one line naming the store, rc 1
    code = main(["centre", "stations", "--store",
                 f"postgresql://quantrac:{secret}@127.0.0.1:{port}/centre"])
    err_text = capsys.readouterr().err
    assert code == 1 and f"127.0.0.1:{port}/centre: unavailable" in err_text, err_text
    assert secret not in err_text
    assert secret not in caplog.text


def test_the_config_selects_postgresql_by_a_url(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('centre_dir = "c"\nstore = "postgresql://quantrac@db.example:5432/centre"\n')
    assert load(cfg).store == "postgresql://quantrac@db.example:5432/centre"
    cfg.write_text('centre_dir = "c"\nstore = "r.sqlite"\n')
    assert load(cfg).store == tmp_path / "r.sqlite"


def test_a_database_gone_mid_run_is_store_unavailable_and_resumes_when_back(
    pg_server: PgServer, database: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """The receiver's store loses its database (connections killed, new ones refused): ingest
    raises ``StoreUnavailableError`` naming the store without its password, commits nothing,
    and the same call succeeds once the database takes connections again."""
    caplog.set_level(logging.DEBUG)
    name = database.rsplit("/", 1)[1]
    batch = packets("S1", 3, 50)
    with CentreStore(database, clock=lambda: CLOCK) as store:
        assert store.ingest("S1", *batch[0], 1).outcome == STORED
        pg_server.admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false", "postgres")
        pg_server.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        f"WHERE datname = '{name}'", "postgres")
        for _ in range(2):  # the lost connection, then the refused reconnect
            with pytest.raises(StoreUnavailableError) as err:
                store.ingest("S1", *batch[1], 1)
            text = str(err.value)
            assert f"127.0.0.1:{pg_server.port}/{name}: unavailable" in text, text
            assert pg_server.password not in text
        pg_server.admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true", "postgres")
        assert store.ingest("S1", *batch[1], 1).outcome == STORED
        assert store.ingest("S1", *batch[2], 1).outcome == STORED
        assert [s for s, _ in store.by_seq("S1")] == list(range(1, 151))
    assert pg_server.password not in caplog.text


def test_a_full_disk_is_store_unavailable_and_storing_resumes_when_space_is_back(
    pg_server: PgServer, database: str,
) -> None:
    """The store's tables on a real 12 MB tmpfs (a tablespace) filled to the last byte."""
    where = pg_server.root / "small"
    name = "full_" + database.rsplit("/", 1)[1]
    with tmpfs(where, "12m"):
        os.chown(where, *_ids())
        pg_server.admin(f"CREATE TABLESPACE {name} LOCATION '{where}'", "postgres")
        pg_server.admin(f"CREATE DATABASE {name} TABLESPACE {name}", "postgres")
        try:
            dsn = pg_server.dsn(name)
            batch = packets("S1", 2, 2000)
            with CentreStore(dsn, clock=lambda: CLOCK) as store:
                filler = fill(where)
                with pytest.raises(StoreUnavailableError, match=r"unavailable: .*No space left"):
                    store.ingest("S1", *batch[0], 1)
                assert store.count() == 0, "nothing of the failed packet was committed"
                filler.unlink()
                assert store.ingest("S1", *batch[0], 1).outcome == STORED
                assert store.ingest("S1", *batch[1], 1).outcome == STORED
                assert store.count() == 4000
        finally:
            pg_server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", "postgres")
            pg_server.admin(f"DROP TABLESPACE IF EXISTS {name}", "postgres")


def _ids() -> tuple[int, int]:
    """Who the server runs as (the tablespace directory must be its own)."""
    import pwd

    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    user = pwd.getpwnam(SERVER_USER)
    return user.pw_uid, user.pw_gid


@pytest.mark.parametrize("command", ["query", "stations"])
def test_read_commands_refuse_a_database_that_is_not_a_store_and_add_nothing(
    pg_server: PgServer, database: str, command: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """The PostgreSQL side of tests/test_centre_read_only.py: `centre query/stations` open
    read-only and never create the schema in a database an operator merely pointed them at."""
    execute_sql(database, "CREATE TABLE notes (line TEXT)")
    extra = ["--station", "HCM-Q1"] if command == "query" else []
    code = main(["centre", command, "--store", database, *extra])
    err = capsys.readouterr().err
    assert code == 1 and "centre:" in err
    assert "/t_" in err and ": not a centre record store (no table records" in err, err
    assert pg_server.password not in err
    tables = pg_server.admin("SELECT table_name FROM information_schema.tables "
                             "WHERE table_schema = 'public'", database.rsplit("/", 1)[1])
    assert tables == [("notes",)], "no record tables added, no schema_version"
