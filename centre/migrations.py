"""The record store's schema, as an ordered list of migrations applied the same way everywhere.

One path for both backends: each migration is a numbered script in SQLite's dialect, which
the PostgreSQL backend translates (``Backend.ddl``), so a store of version N has the same
tables whatever holds it. ``schema_version`` keeps one row per applied migration; opening a
store applies the missing ones in one transaction (a receiver that dies half-way leaves the
old version whole), under the ``schema`` lock, so receivers starting together migrate once.

Version 1 is the schema of the stores written before versions were kept: its statements say
IF NOT EXISTS, so such a store takes version 1 without change. A later change appends a
migration (``ALTER TABLE ...``); an existing one is never edited, since stores out there have
run it. A store of a version newer than this program knows is refused: an older receiver
would write rows a newer schema does not expect.
"""

from __future__ import annotations

from buffer.rows import RECORD_COLUMNS_SQL
from centre.store_backends import Backend, NotACentreStoreError
from protocol.clock import Clock

_V1 = f"""
CREATE TABLE IF NOT EXISTS records (
    station TEXT NOT NULL,
    seq INTEGER NOT NULL,
    {RECORD_COLUMNS_SQL},
    received REAL NOT NULL,
    packet_created INTEGER NOT NULL,
    PRIMARY KEY (station, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_time ON records (station, start);
CREATE TABLE IF NOT EXISTS current_values (
    station TEXT NOT NULL,
    channel TEXT NOT NULL,
    seq INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    mean REAL,
    valid INTEGER NOT NULL,
    status INTEGER NOT NULL,
    unit TEXT NOT NULL,
    PRIMARY KEY (station, channel)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packets (
    digest BLOB PRIMARY KEY,
    station TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    received REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stations (
    station TEXT PRIMARY KEY,
    counter INTEGER NOT NULL,
    contiguous INTEGER NOT NULL,
    top INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS security_events (
    id INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    station TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

#: the station's birth/will state as the receiver last heard it (the dashboard's online/offline)
_V2 = """
CREATE TABLE IF NOT EXISTS station_state (
    station TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    since REAL NOT NULL,
    seen REAL NOT NULL
) WITHOUT ROWID;
"""

#: (version, script), in order; append only
MIGRATIONS: list[tuple[int, str]] = [(1, _V1), (2, _V2)]
LATEST = MIGRATIONS[-1][0]

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    applied REAL NOT NULL
)"""


def schema_version(db: Backend) -> int:
    """The newest migration applied to ``db`` (0: none, or a store from before versions)."""
    if "schema_version" not in db.tables():
        return 0
    return int(db.execute("SELECT coalesce(max(version), 0) FROM schema_version")[0][0])


def migrate(db: Backend, clock: Clock) -> int:
    """Apply every migration ``db`` lacks, in one transaction; the version it now has."""
    with db.transaction(lock="schema"):
        db.execute(db.ddl(_VERSION_TABLE))
        current = schema_version(db)
        if current > LATEST:
            raise NotACentreStoreError(
                f"{db.name}: record store schema version {current} is newer than this "
                f"quantrac knows ({LATEST}): upgrade quantrac on this machine")
        for version, script in MIGRATIONS:
            if version <= current:
                continue
            for statement in db.ddl(script).split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                       (version, clock()))
            current = version
    return current
