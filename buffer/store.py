"""The station's durable outbox and raw-sample store (docs/architecture.md, step 3).

One SQLite file (WAL). A record gets its sequence number when it is committed and keeps it for
life: numbers strictly increase across restarts and are never reused, even after pruning or
after a corrupt file was moved aside. Outbox states, one row per record::

    pending (sent_at NULL) --next_batch--> sent (sent_at) --acknowledge--> acked (acked_at)
       |         ^---------- requeue (timeout, reconnect, resend request) ----'
       '--its checksum fails when read--> quarantined (quarantined_at): kept, reported, never sent

Only the centre's acknowledgement makes a record delivered. Records commit with
``synchronous=FULL``; raw samples commit with ``synchronous=NORMAL`` (a power cut may lose the
last few, never corrupt anything) and are the first thing given up when the disk is full.

**Checksums.** Every record row carries ``digest`` (``buffer.rows.record_digest`` of its seq
and fields). SQLite's own checks look at the b-tree, not at the numbers: a flipped bit in a
stored mean passes ``quick_check`` and ``integrity_check`` alike, and the station would sign
the wrong value as genuine. So every read for sending (``next_batch``, ``get``, ``windows``)
recomputes the digest; a record that fails is *quarantined*: logged at error
(``record_checksum_failed``), kept in the file for an inspector, listed by ``problems()`` (the
agent's status), and never handed to an uplink. The centre sees the gap and asks for it; a
resend request does not release a quarantined record. Files of schema 1 (no ``digest``) are
migrated at open: the column is added and filled from the rows as they read then (nothing
better exists for them), logged as ``outbox_migrated``.

**The evidence chain** (``buffer.chain``). Each record is also given the next chain position
``chain_n`` and its ``link``, computed in the same transaction as its insert (a SIGKILL
leaves either the records and their links and the new head, or none of them; the head is the
``meta`` row ``chain_head``, read inside the transaction, so a second writer such as
``quantrac outbox recover`` chains after the agent, never beside it). ``checkpoint`` signs
the head with the station key (the agent: hourly and at stop), stored in ``checkpoints``.
Retention keeps what a verifier needs to start after a pruned prefix: before a record is
pruned whose successor stays (or is the head), a checkpoint of its link is made
(``prune``), so the first remaining record's predecessor link is attested. Schema 2 files are
migrated at open: the chain is started over the existing rows in seq order, as they read then,
with a ``genesis`` checkpoint saying so. Retention is never below 60 days (``LEGAL_RETENTION_S``:
Circular 10/2021/TT-BTNMT art. 39, the logger keeps 60 days and exports them itself), and a
record is pruned only when both its acknowledgement and its window end are that old.

**What a full disk gives up**, in order, from what the law asks the station to keep:

1. raw samples (the records carry their averages);
2. acknowledged records already past the retention period (the hourly prune would drop them);
3. only when an *unacknowledged* record (which exists nowhere else) would not fit: acknowledged
   records still inside the retention period, those acknowledged earliest first, a sixteenth
   at a time. The centre holds them, but the station's own duty to keep 60 days (Decree
   08/2022/NĐ-CP art. 97, Circular 10/2021/TT-BTNMT) is broken: logged as
   ``retention_breached`` at error and listed by ``problems()`` until the day those records
   would have expired anyway.

Unacknowledged records are never given up. ``BYTES_PER_RECORD`` is what a record costs on disk,
for ``quantrac config check``'s 60-day capacity check.

**The reserve** (``<outbox>.reserve``, preallocated with real zeros at start): a SIGTERM on a
full disk leaves closed records that SQLite cannot take. ``spill`` writes them into the
reserve in place (no new block is needed: every byte was written at creation), and the next
start commits them, in order, before anything new (``spilled``/``clear_spill``).

**The file is ours.** The outbox carries SQLite ``application_id`` ``APPLICATION_ID`` and
``user_version`` = schema version. A database that is neither marked so nor shaped as a schema-1
outbox (``meta`` with ``schema_version`` and ``records`` with ``seq``) is refused before
anything is written to it (``ForeignDatabaseError`` naming the file): no outbox tables are
added to somebody else's database.

**Moved-aside files.** A corrupt outbox is moved aside (``buffer.db.move_aside``), and an
operator may move one aside by hand. ``problems()`` names every such file in the state
directory that still holds unacknowledged records, until ``recover`` has imported it.
``recover`` imports the readable unacknowledged records *under their own sequence numbers*,
unchanged: the centre de-duplicates on (station, seq) and compares content, so a record it
already stored (its ack was lost) is acknowledged again and stored once, while a record it
never got fills the gap its seq left, recognisable as late by seq and window. A new seq would
make the centre store a delivered record twice; a changed record (a "recovered" flag) would
make it a conflict. Should the live outbox already hold another record under that seq (it was
started fresh at seq 1 after a file was moved by hand), the old record is given a new seq at
the top and the log names both. The live outbox remembers each import (``meta``
``recovered:<file>``) and the log names the seq ranges, which is what an inspector asks for.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from buffer import chain
from buffer.chain import GENESIS, Checkpoint, Signer
from buffer.db import (
    StoreFullError,
    apply_schema,
    is_full_error,
    open_checked,
    transaction,
)
from buffer.rows import (
    RECORD_COLUMNS,
    RECORD_COLUMNS_SQL,
    canonical_digest,
    record_canonical,
    record_digest,
    record_row,
    row_record,
)
from protocol.clock import Clock
from protocol.model import Record, Sample, Status
from protocol.payload import same_record

log = logging.getLogger("quantrac.buffer.store")
T = TypeVar("T")
P = ParamSpec("P")


def _locked(method: Callable[Concatenate[Store, P], T]) -> Callable[Concatenate[Store, P], T]:
    """Serialise a public method: the poller appends while the uplink drains and acks."""

    def wrapper(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    functools.update_wrapper(wrapper, method)
    return wrapper

DAY = 86400.0
LEGAL_RETENTION_S = 60 * DAY  # Circular 10/2021/TT-BTNMT art. 39: the logger keeps 60 days
#: 2: application_id, user_version, records.digest, records.quarantined_at;
#: 3: records.chain_n and records.link, the checkpoints table, meta chain_head
SCHEMA_VERSION = 3
APPLICATION_ID = 0x5154_4F42  # "QTOB": PRAGMA application_id of a quantrac outbox
#: the outbox's file name in the agent's ``state_dir``: the agent, and every command that
#: reads a station's outbox from its config (history, export, circular10, outbox import)
OUTBOX_NAME = "outbox.sqlite"
#: bytes one record costs in the file (row, seq index entries, page slack), measured with
#: 10-character channels and units; tests/test_buffer_safety.py checks it against a real file
BYTES_PER_RECORD = 250
RESERVE_SUFFIX = ".reserve"
_SPILL_MAGIC = b"QTSPILL1"
_SPILL_HEAD = struct.Struct(">8sII32s")  # magic, count, payload length, sha256 of payload
_COLS = ", ".join(RECORD_COLUMNS)
_INSERT = (
    f"INSERT INTO records (seq, {_COLS}, created, digest, chain_n, link) "
    f"VALUES ({', '.join('?' * 18)})"
)
_SELECT = f"SELECT seq, {_COLS}, digest FROM records"
_SENDABLE = "acked_at IS NULL AND sent_at IS NULL AND quarantined_at IS NULL"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    {RECORD_COLUMNS_SQL},
    created REAL NOT NULL,
    sent_at REAL,
    acked_at REAL,
    digest BLOB,
    quarantined_at REAL,
    chain_n INTEGER,
    link BLOB
);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY,
    n INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    link BLOB NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    station_id TEXT NOT NULL,
    key_id BLOB NOT NULL,
    signature BLOB NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_n ON checkpoints(n);
CREATE INDEX IF NOT EXISTS records_pending ON records(seq)
    WHERE acked_at IS NULL AND sent_at IS NULL;
CREATE INDEX IF NOT EXISTS records_in_flight ON records(sent_at)
    WHERE acked_at IS NULL AND sent_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_acked ON records(acked_at) WHERE acked_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    t REAL NOT NULL,
    value REAL,
    status INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_t ON samples(t);
"""


@dataclass(frozen=True)
class OutboxStatus:
    """What ``quantrac status`` shows about the outbox."""

    unacked: int  # pending + in flight: not yet delivered
    in_flight: int  # sent, waiting for the centre's acknowledgement
    acked: int  # delivered, kept for the retention period
    last_seq: int  # the highest sequence number ever assigned (0: none yet)
    oldest_unacked_seq: int | None
    oldest_unacked_start: int | None  # window start of that record, UTC epoch seconds
    samples: int
    quarantined: int = 0  # failed their checksum: kept, never sent


@dataclass(frozen=True)
class Pruned:
    """How many rows a retention pass removed."""

    records: int
    samples: int


class ForeignDatabaseError(Exception):
    """The outbox path holds a database that is not a quantrac outbox; it was not touched."""


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)


def foreign_reason(path: Path) -> str | None:
    """Why the database at ``path`` is not a quantrac outbox, or None (ours, a schema-1 outbox,
    empty, missing, or unreadable: a corrupt file is ``open_checked``'s to move aside)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        conn = _ro(path)
    except sqlite3.Error:
        return None
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        tables = {str(r[0]) for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if app_id == APPLICATION_ID or (app_id == 0 and not tables - {"sqlite_sequence"}):
            return None
        if app_id == 0 and {"meta", "records"} <= tables:
            columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(records)")}
            versions = conn.execute(
                "SELECT value FROM meta WHERE key='schema_version'").fetchall()
            if "seq" in columns and versions:
                return None
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    shown = ", ".join(sorted(tables - {"sqlite_sequence"})) or "none"
    return (f"{path}: not a quantrac outbox (SQLite application_id {app_id:#x}, tables: "
            f"{shown}); refusing to use or change it: move it away, or set agent.state_dir "
            "to a directory of its own")


@dataclass(frozen=True)
class Recovered:
    """What ``Store.recover`` did with a moved-aside file."""

    source: Path
    imported: int  # unacknowledged records now in the live outbox, under their own seq
    renumbered: int  # of those, given a new seq (the live outbox used theirs for another)
    already_held: int  # the live outbox already held the very same record
    quarantined: int  # imported, but their checksum failed: kept, not sent
    acked_skipped: int  # acknowledged in the old file: delivered, not imported
    unreadable: list[tuple[int, int]]  # seq spans SQLite could not read
    seq_ranges: list[tuple[int, int]]  # seqs imported, as ranges


def _ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def _salvage_last_seq(path: Path) -> int:
    """Best effort: the highest seq a moved-aside (corrupt) file still shows, else 0."""
    best = 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    try:
        for sql in (
            "SELECT seq FROM sqlite_sequence WHERE name = 'records'",
            "SELECT max(seq) FROM records",
        ):
            try:
                row = conn.execute(sql).fetchone()
            except sqlite3.Error:
                continue
            if row and row[0] is not None:
                best = max(best, int(row[0]))
    finally:
        conn.close()
    return best


class Store:
    """The outbox and sample store of one station; public methods are serialised by a lock."""

    def __init__(
        self,
        path: Path | str,
        clock: Clock = time.time,
        *,
        retention_s: float = 60 * DAY,
        sample_retention_s: float = 7 * DAY,
        max_bytes: int | None = None,
        full_check: bool = False,
        signer: Signer | None = None,
    ) -> None:
        """Open (or create) the store at ``path``; a corrupt file is moved aside first.

        ``retention_s`` below ``LEGAL_RETENTION_S`` is refused (ValueError). ``signer``: the
        station key that signs checkpoints; without one they are stored unsigned (a station
        not provisioned yet), which a verifier reports as such.

        After a move-aside the new file's sequence numbers start above both the highest one
        the old file still shows and ``clock()`` in ms x 1000, so the centre, which
        de-duplicates on (station, seq), never mistakes new records for replays.
        """
        if retention_s < LEGAL_RETENTION_S:
            raise ValueError(f"{path}: record retention {retention_s / DAY:g} days: the legal "
                             f"minimum is {LEGAL_RETENTION_S / DAY:g} days (Circular 10 art. 39)")
        self.path = Path(path)
        self.clock = clock
        self.signer = signer
        self._lock = threading.RLock()
        self.retention_s = retention_s
        self.sample_retention_s = sample_retention_s
        self.reserve_path = self.path.with_name(self.path.name + RESERVE_SUFFIX)
        self.reserve_bytes = 0  # what ensure_reserve was asked for (0: no reserve wanted)
        self._breach: dict[str, float] | None = None
        self._aside_cache: dict[str, tuple[tuple[int, int], str | None]] = {}
        foreign = foreign_reason(self.path)
        if foreign is not None:  # before open_checked: it would switch the file to WAL
            log.error("outbox_foreign_database", extra={"path": str(self.path),
                                                         "reason": foreign})
            raise ForeignDatabaseError(foreign)
        opened = open_checked(self.path, clock, max_bytes=max_bytes, full_check=full_check)
        self.conn: sqlite3.Connection = opened.conn
        self.moved_aside = opened.moved_aside
        self._sync = "FULL"
        migrated = 0
        chained: int | None = None
        with transaction(self.conn):
            fresh = self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='records'"
            ).fetchone() is None
            version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
            apply_schema(self.conn, _SCHEMA)  # IF NOT EXISTS: a schema-1 file keeps its tables
            if not fresh and version == 0:
                meta = self.conn.execute(
                    "SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if meta is None or meta[0] != "1":
                    raise RuntimeError(f"{self.path}: outbox schema version "
                                       f"{meta[0] if meta else '?'}, want 1 or {SCHEMA_VERSION}")
                migrated = self._migrate_v1()
                chained = self._migrate_v2()
            elif not fresh and version == 2:
                chained = self._migrate_v2()
            elif not fresh and version != SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: outbox schema version {version}, this "
                                   f"quantrac reads {SCHEMA_VERSION}: a newer release wrote it")
            if fresh:
                note = "a new outbox" if self.moved_aside is None else \
                    f"a new outbox: {self.moved_aside.name} was moved aside"
                self._genesis(note)
            self.conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            breach = self.conn.execute(
                "SELECT value FROM meta WHERE key='retention_breach'").fetchone()
            self._breach = json.loads(breach[0]) if breach else None
            if self.moved_aside is not None:
                floor = max(
                    _salvage_last_seq(self.moved_aside),
                    int(clock() * 1000) * 1000,
                    self._last_seq(),
                )
                self._set_last_seq(floor)
                self.conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('restarted_from', ?)",
                    (f"{self.moved_aside.name} seq>{floor}",),
                )
        if not fresh and version == 0:
            log.warning("outbox_migrated", extra={
                "path": str(self.path), "from_version": 1, "to_version": SCHEMA_VERSION,
                "records_checksummed": migrated,
                "note": "checksums computed from the rows as they read now"})
        if chained is not None:
            log.warning("outbox_chain_started", extra={
                "path": str(self.path), "to_version": SCHEMA_VERSION,
                "records_chained": chained,
                "note": "the evidence chain starts at this migration: the records already "
                        "stored were chained in seq order as they read now"})

    def _migrate_v2(self) -> int:
        """Schema 2 -> 3 inside the open transaction: add the chain columns, chain every row
        in seq order as it reads now, and record a genesis checkpoint that says so."""
        columns = {str(r[1]) for r in self.conn.execute("PRAGMA table_info(records)")}
        for name, kind in (("chain_n", "INTEGER"), ("link", "BLOB")):
            if name not in columns:
                self.conn.execute(f"ALTER TABLE records ADD COLUMN {name} {kind}")
        rows = self.conn.execute(f"SELECT seq, {_COLS} FROM records ORDER BY seq").fetchall()
        prev, n, seq, updates = GENESIS, 0, 0, []
        for r in rows:
            try:
                rec = row_record(r[1:])
            except ValueError:  # not a record at all: left unchained (quarantined when read)
                continue
            n += 1
            seq = int(r[0])
            prev = chain.link(prev, n, seq, rec)
            updates.append((n, prev, seq))
        self.conn.executemany("UPDATE records SET chain_n=?, link=? WHERE seq=?", updates)
        self._genesis(f"the chain starts at the schema {SCHEMA_VERSION} migration: records "
                      f"stored before it (seq {rows[0][0] if rows else '-'}.."
                      f"{rows[-1][0] if rows else '-'}) were chained as they read then")
        self._set_chain_head(n, seq, prev)
        return len(updates)

    def _genesis(self, note: str) -> None:
        self._set_chain_head(0, 0, GENESIS)
        self._add_checkpoint(0, 0, GENESIS, chain.GENESIS_KIND, note)

    def _chain_head(self) -> tuple[int, int, bytes]:
        """(n, seq, link) of the newest chained record, inside the caller's transaction."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='chain_head'").fetchone()
        if row is None:
            return 0, 0, GENESIS
        n, seq, link = str(row[0]).split()
        return int(n), int(seq), bytes.fromhex(link)

    def _set_chain_head(self, n: int, seq: int, link: bytes) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('chain_head', ?)",
                          (f"{n} {seq} {link.hex()}",))

    def _add_checkpoint(self, n: int, seq: int, link: bytes, kind: str,
                        note: str = "") -> Checkpoint:
        """Sign (when a signer is set) and store one checkpoint, in the caller's transaction."""
        at = self.clock()
        cp = (self.signer.checkpoint(n, seq, link, at, kind, note) if self.signer is not None
              else Checkpoint("", n, seq, link, at, kind, note=note))
        self.conn.execute(
            "INSERT INTO checkpoints (n, seq, link, at, kind, station_id, key_id, signature, "
            "note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cp.n, cp.seq, cp.link, cp.at, cp.kind, cp.station_id, cp.key_id, cp.signature,
             cp.note))
        return cp

    @_locked
    def checkpoint(self, kind: str = chain.PERIODIC) -> Checkpoint | None:
        """Sign the chain head now; None when it is already the newest checkpoint's (nothing
        was stored since) and ``kind`` is periodic or stop."""
        def add() -> Checkpoint | None:
            n, seq, link = self._chain_head()
            signed = " WHERE signature != x''" if self.signer is not None else ""
            last = self.conn.execute(f"SELECT max(n) FROM checkpoints{signed}").fetchone()[0]
            if kind in (chain.PERIODIC, chain.STOP) and last is not None and int(last) >= n:
                return None
            return self._add_checkpoint(n, seq, link, kind)

        return self._write("FULL", True, add)

    @_locked
    def checkpoints(self, n_from: int = 0, n_to: int = 1 << 62) -> list[Checkpoint]:
        """Stored checkpoints with ``n_from <= n <= n_to``, by n then time."""
        return [Checkpoint(str(r[5]), int(r[0]), int(r[1]), bytes(r[2]), float(r[3]),
                           str(r[4]), bytes(r[6]), bytes(r[7]), str(r[8]))
                for r in self.conn.execute(
                    "SELECT n, seq, link, at, kind, station_id, key_id, signature, note FROM "
                    "checkpoints WHERE n BETWEEN ? AND ? ORDER BY n, at, id", (n_from, n_to))]

    @_locked
    def chain_head(self) -> tuple[int, int, bytes]:
        """(n, seq, link) of the newest chained record ((0, 0, GENESIS): none yet)."""
        return self._chain_head()

    @_locked
    def chained(self, n_from: int, n_to: int) -> list[tuple[int, int, Record, bytes]]:
        """(n, seq, record, link) of the records still held with ``n_from <= chain_n <=
        n_to``, in chain order, as they read (no checksum check: evidence shows what the file
        holds, and a verifier recomputes the link)."""
        out = []
        for row in self.conn.execute(
                f"SELECT chain_n, seq, {_COLS}, link FROM records WHERE chain_n BETWEEN ? AND ? "
                "ORDER BY chain_n", (n_from, n_to)):
            try:
                rec = row_record(row[2:-1])
            except (ValueError, TypeError):
                continue
            out.append((int(row[0]), int(row[1]), rec, bytes(row[-1] or b"")))
        return out

    @_locked
    def chain_span(self, start_from: float, end_until: float) -> tuple[int, int] | None:
        """The first and last chain position of the records whose window lies in
        ``[start_from, end_until]``; None when there are none."""
        row = self.conn.execute(
            'SELECT min(chain_n), max(chain_n) FROM records WHERE start >= ? AND "end" <= ?',
            (start_from, end_until)).fetchone()
        return None if row[0] is None else (int(row[0]), int(row[1]))

    @_locked
    def link_at(self, n: int) -> bytes | None:
        """``link_n`` from the record still held at n, else from a checkpoint at n."""
        if n == 0:
            return GENESIS
        row = self.conn.execute("SELECT link FROM records WHERE chain_n=?", (n,)).fetchone()
        if row is not None and row[0] is not None:
            return bytes(row[0])
        cp = self.conn.execute("SELECT link FROM checkpoints WHERE n=? LIMIT 1", (n,)).fetchone()
        return bytes(cp[0]) if cp is not None else None

    def _migrate_v1(self) -> int:
        """Schema 1 -> 2 inside the open transaction: add the checksum and quarantine columns
        and checksum every row as it reads now (the best a file without checksums allows)."""
        columns = {str(r[1]) for r in self.conn.execute("PRAGMA table_info(records)")}
        for name, kind in (("digest", "BLOB"), ("quarantined_at", "REAL")):
            if name not in columns:
                self.conn.execute(f"ALTER TABLE records ADD COLUMN {name} {kind}")
        rows = self.conn.execute(f"SELECT seq, {_COLS} FROM records").fetchall()
        digests = []
        for r in rows:
            try:
                digests.append((record_digest(int(r[0]), row_record(r[1:])), int(r[0])))
            except ValueError:  # not even a record (a status or flag no release wrote)
                continue  # digest stays NULL: quarantined when read
        self.conn.executemany("UPDATE records SET digest=? WHERE seq=?", digests)
        return len(rows)

    def _checked(self, rows: Sequence[Any]) -> tuple[list[tuple[int, Record]], list[int]]:
        """Rows of ``_SELECT`` whose checksum holds, as records; and the seqs that fail it."""
        good: list[tuple[int, Record]] = []
        bad: list[int] = []
        for row in rows:
            seq = int(row[0])
            try:
                rec = row_record(row[1:-1])
                ok = row[-1] is not None and record_digest(seq, rec) == bytes(row[-1])
            except (ValueError, TypeError):
                rec, ok = None, False
            if ok and rec is not None:
                good.append((seq, rec))
                continue
            bad.append(seq)
            log.error("record_checksum_failed", extra={
                "path": str(self.path), "seq": seq, "channel": row[1], "start": row[2],
                "action": "quarantined: kept in the outbox, never sent as genuine"})
        return good, bad

    def _quarantine(self, seqs: Sequence[int]) -> None:
        """Mark records quarantined (inside the caller's transaction)."""
        now = self.clock()
        self.conn.executemany("UPDATE records SET quarantined_at=? WHERE seq=? AND "
                              "quarantined_at IS NULL", [(now, s) for s in seqs])

    def _checked_read(self, rows: Sequence[Any]) -> list[tuple[int, Record]]:
        """``_checked`` for a plain read: the failures are quarantined in a transaction of
        their own (best effort: on a full disk they are still left out, and found again)."""
        good, bad = self._checked(rows)
        if bad:
            try:
                self._synchronous("FULL")
                with transaction(self.conn):
                    self._quarantine(bad)
            except sqlite3.Error as exc:
                log.error("record_quarantine_not_saved", extra={
                    "path": str(self.path), "seqs": len(bad), "reason": str(exc)})
        return good

    # -- plumbing ---------------------------------------------------------------------------

    @_locked
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _synchronous(self, level: str) -> None:
        """Switch the commit durability for the next transactions (outside a transaction)."""
        if level != self._sync:
            self.conn.execute(f"PRAGMA synchronous={level}")
            self._sync = level

    def _last_seq(self) -> int:
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name='records'").fetchone()
        top = self.conn.execute("SELECT max(seq) FROM records").fetchone()
        return max(int(row[0]) if row else 0, int(top[0]) if top and top[0] is not None else 0)

    def _set_last_seq(self, value: int) -> None:
        updated = self.conn.execute(
            "UPDATE sqlite_sequence SET seq=? WHERE name='records'", (value,)
        ).rowcount
        if not updated:
            self.conn.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('records', ?)", (value,)
            )

    # -- records: the outbox ----------------------------------------------------------------

    def _write(self, sync: str, records_too: bool, fn: Callable[[], T]) -> T:
        """Run ``fn`` in one transaction; on a full disk give something up and retry.

        Raw samples are given up first; with ``records_too``, then the oldest acknowledged
        records. StoreFullError when there is nothing left to give up.
        """
        while True:
            self._synchronous(sync)
            try:
                with transaction(self.conn):
                    return fn()
            except sqlite3.Error as exc:
                if not is_full_error(exc):
                    raise
                if not self._give_up_something(records_too):
                    log.error("store_full", extra={"path": str(self.path)})
                    raise StoreFullError(
                        f"{self.path}: disk full; no raw samples or acknowledged records left "
                        "to give up (unacknowledged records are never dropped)"
                    ) from exc

    @_locked
    def append(self, records: Sequence[Record]) -> list[int]:
        """Commit records durably in one transaction; return their new sequence numbers.

        On a full disk, raw samples are given up first, then the oldest already-acknowledged
        records; unacknowledged records never. StoreFullError when nothing is left to give up:
        the records were not stored and stay the caller's to keep.
        """
        if not records:
            return []
        now = self.clock()

        def insert() -> list[int]:
            first = self._last_seq() + 1
            n, _, prev = self._chain_head()
            rows = []
            link, digest = chain.canonical_link, canonical_digest  # the hot loop of append
            for seq, pos, r in zip(range(first, first + len(records)),
                                   range(n + 1, n + 1 + len(records)), records, strict=True):
                canonical = record_canonical(seq, r)
                prev = link(prev, pos, canonical)
                rows.append((seq, *record_row(r), now, digest(canonical), pos, prev))
            self.conn.executemany(_INSERT, rows)
            self._set_chain_head(n + len(records), first + len(records) - 1, prev)
            return list(range(first, first + len(records)))

        return self._write("FULL", True, insert)

    @_locked
    def next_batch(self, limit: int) -> list[tuple[int, Record]]:
        """The oldest ``limit`` pending records, marked sent now (the time they left).

        On a disk so full that not even the sent mark fits, the batch is still returned
        (unmarked: it will be offered again until acknowledged), so the outbox can drain.
        """
        now = self.clock()
        select = f"{_SELECT} WHERE {_SENDABLE} ORDER BY seq LIMIT ?"
        logged: set[int] = set()

        def take() -> list[tuple[int, Record]]:
            while True:  # a batch that failed its checksums entirely: take the next rows
                rows = self.conn.execute(select, (limit,)).fetchall()
                good, bad = self._checked([r for r in rows if int(r[0]) not in logged])
                logged.update(bad)
                if bad:
                    self._quarantine(bad)
                if good or not rows:
                    break
            if good:
                self.conn.execute(
                    f"UPDATE records SET sent_at=? WHERE {_SENDABLE} AND seq <= ?",
                    (now, good[-1][0]),
                )
            return good

        try:  # NORMAL: losing a sent mark in a power cut only means sending again
            return self._write("NORMAL", True, take)
        except StoreFullError:  # not even the marks fit: checked, unmarked, offered again
            return self._checked(self.conn.execute(select, (limit,)).fetchall())[0]

    @_locked
    def next_urgent(self, flags: int, after_seq: int, limit: int
                    ) -> tuple[list[tuple[int, Record]], int]:
        """Pending records newer than ``after_seq`` carrying any of ``flags``, marked sent
        now, and the highest seq the outbox held when asked (the next ``after_seq``).

        Why: a record over its limit must reach the centre at once, not behind a backlog of
        days (the uplink sends these ahead of the oldest-first drain). Only these seqs are
        marked, so the backlog keeps its order; ``after_seq`` keeps the look to the rows
        added since the last one (a range of the primary key, however long the backlog)."""
        now = self.clock()
        top = int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()[0])
        rows = self.conn.execute(
            f"{_SELECT} WHERE seq > ? AND seq <= ? AND {_SENDABLE} AND (flags & ?) != 0 "
            "ORDER BY seq LIMIT ?", (after_seq, top, flags, limit)).fetchall()
        good = self._checked_read(rows)
        if len(rows) == limit:  # more than one batch: look again from the last one taken
            top = int(rows[-1][0])
        if good:
            def mark() -> None:
                self.conn.executemany("UPDATE records SET sent_at=? WHERE seq=?",
                                      [(now, seq) for seq, _ in good])
            # on a full disk unmarked: sent again with the backlog, the centre takes it as such
            with contextlib.suppress(StoreFullError):
                self._write("NORMAL", True, mark)
        return good, top

    @_locked
    def acknowledge(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Mark the records in the inclusive seq ranges delivered; return how many were new.

        On a disk too full to record the acknowledgement, the acknowledged records are given
        up at once (they are delivered) instead: that is what frees the outbox.
        """
        now = self.clock()
        spans = [(now, int(a), int(b)) for a, b in ranges]

        def mark() -> int:
            cur = self.conn.executemany(
                # a quarantined record was never sent: an ack range over it leaves it as it is
                "UPDATE records SET acked_at=? WHERE seq BETWEEN ? AND ? AND acked_at IS NULL "
                "AND quarantined_at IS NULL", spans,
            )
            return max(cur.rowcount, 0)

        try:
            return self._write("FULL", True, mark)
        except StoreFullError:
            span = self._span(" OR ".join(["(seq BETWEEN ? AND ? AND acked_at IS NULL)"]
                                          * len(spans)),
                              tuple(v for _, a, b in spans for v in (a, b)), now)
            try:
                with transaction(self.conn):
                    cur = self.conn.executemany(
                        "DELETE FROM records WHERE seq BETWEEN ? AND ? AND acked_at IS NULL",
                        [(a, b) for _, a, b in spans],
                    )
            except sqlite3.Error as exc:
                if is_full_error(exc):
                    raise StoreFullError(f"{self.path}: disk full, cannot even delete") from exc
                raise
            n = max(cur.rowcount, 0)
            log.error("store_full_acked_records_given_up", extra={"path": str(self.path), "n": n})
            if n:
                self._breached(span)
            return n

    @_locked
    def requeue(self, older_than_s: float | None = None) -> int:
        """Make sent-but-unacknowledged records pending again; return how many.

        ``older_than_s`` requeues those sent at least that long ago (ack timeout); None
        requeues every one in flight (on reconnect).
        """
        cutoff = math.inf if older_than_s is None else self.clock() - older_than_s

        def clear() -> int:
            return max(
                self.conn.execute(
                    "UPDATE records SET sent_at=NULL "
                    "WHERE acked_at IS NULL AND sent_at IS NOT NULL AND sent_at <= ?",
                    (cutoff,),
                ).rowcount,
                0,
            )

        return self._write("NORMAL", True, clear)

    @_locked
    def resend(self, ranges: Iterable[tuple[int, int]]) -> int:
        """The centre asks for a gap again: make every record still held in it pending."""
        spans = [(int(a), int(b)) for a, b in ranges]

        def clear() -> int:
            cur = self.conn.executemany(
                "UPDATE records SET sent_at=NULL, acked_at=NULL "
                "WHERE seq BETWEEN ? AND ? AND (sent_at IS NOT NULL OR acked_at IS NOT NULL)",
                spans,
            )
            return max(cur.rowcount, 0)

        return self._write("FULL", True, clear)

    @_locked
    def get(self, first: int, last: int) -> list[tuple[int, Record]]:
        """Every record still held with ``first <= seq <= last``, in seq order."""
        rows = self.conn.execute(
            f"{_SELECT} WHERE seq BETWEEN ? AND ? AND quarantined_at IS NULL ORDER BY seq",
            (first, last)
        ).fetchall()
        return self._checked_read(rows)

    @_locked
    def windows(self, width_s: int, start_from: float = -math.inf,
                end_until: float = math.inf) -> list[tuple[int, Record]]:
        """Records of one window width still held, with ``start >= start_from`` and
        ``end <= end_until``, by start then seq (what a restart or a file uplink re-reads)."""
        lo = -(1 << 62) if start_from == -math.inf else start_from
        hi = 1 << 62 if end_until == math.inf else end_until
        rows = self.conn.execute(
            f'{_SELECT} WHERE "end" - start = ? AND start >= ? AND "end" <= ? '
            "AND quarantined_at IS NULL ORDER BY start, seq", (width_s, lo, hi)
        ).fetchall()
        return self._checked_read(rows)

    @_locked
    def last_window_ends(self, width_s: int, started_by: float = math.inf) -> dict[str, int]:
        """Per channel, the end of the newest stored window of ``width_s`` seconds among those
        with ``start <= started_by`` (a restart passes its clock: windows starting later were
        made by a clock that ran ahead, and must not fence off the time up to them)."""
        hi = 1 << 62 if started_by == math.inf else started_by
        return {
            str(channel): int(end)
            for channel, end in self.conn.execute(
                'SELECT channel, max("end") FROM records WHERE "end" - start = ? AND start <= ? '
                "GROUP BY channel", (width_s, hi)
            )
        }

    @_locked
    def status(self) -> OutboxStatus:
        """Counts and the oldest undelivered record, for ``quantrac status``."""
        q = self.conn.execute
        unacked = q("SELECT count(*) FROM records WHERE acked_at IS NULL").fetchone()[0]
        in_flight = q(
            "SELECT count(*) FROM records WHERE acked_at IS NULL AND sent_at IS NOT NULL"
        ).fetchone()[0]
        acked = q("SELECT count(*) FROM records WHERE acked_at IS NOT NULL").fetchone()[0]
        oldest = q(
            "SELECT seq, start FROM records WHERE acked_at IS NULL ORDER BY seq LIMIT 1"
        ).fetchone()
        samples = q("SELECT count(*) FROM samples").fetchone()[0]
        quarantined = q("SELECT count(*) FROM records WHERE quarantined_at IS NOT NULL "
                        "AND acked_at IS NULL").fetchone()[0]
        return OutboxStatus(
            unacked=int(unacked),
            in_flight=int(in_flight),
            acked=int(acked),
            last_seq=self._last_seq(),
            oldest_unacked_seq=int(oldest[0]) if oldest else None,
            oldest_unacked_start=int(oldest[1]) if oldest else None,
            samples=int(samples),
            quarantined=int(quarantined),
        )

    # -- raw samples ------------------------------------------------------------------------

    @_locked
    def append_samples(self, samples: Sequence[Sample],
                       meta: Mapping[str, str] | None = None) -> int:
        """Store raw samples (cheaper durability); on a full disk older samples make room.

        ``meta``: keys written in the same transaction, so they are durable exactly when the
        samples are (the field-node backfill cursor: edge_agent.poll.backfill)."""
        if not samples and not meta:
            return 0
        rows = [
            (s.channel, s.t, None if math.isnan(s.value) else s.value, int(s.status))
            for s in samples
        ]

        def insert() -> int:
            self.conn.executemany(
                "INSERT INTO samples (channel, t, value, status) VALUES (?, ?, ?, ?)", rows
            )
            if meta:
                self.conn.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta.items())
            return len(rows)

        return self._write("NORMAL", False, insert)

    @_locked
    def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        """The ``meta`` keys starting with ``prefix`` (written by ``append_samples``)."""
        rows = self.conn.execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
                                 (len(prefix), prefix)).fetchall()
        return {str(k): str(v) for k, v in rows}

    @_locked
    def samples_between(self, t0: float, t1: float) -> list[Sample]:
        """Raw samples with ``t0 <= t < t1``, in time order."""
        rows = self.conn.execute(
            "SELECT channel, t, value, status FROM samples WHERE t >= ? AND t < ? ORDER BY t, id",
            (t0, t1),
        ).fetchall()
        return [
            Sample(c, float(t), math.nan if v is None else float(v), Status(s))
            for c, t, v, s in rows
        ]

    # -- retention and room -----------------------------------------------------------------

    @_locked
    def prune(self) -> Pruned:
        """Retention: drop records acknowledged more than ``retention_s`` ago whose window also
        ended that long ago, and raw samples older than ``sample_retention_s``.
        Unacknowledged records are never pruned. Before a record goes whose successor in the
        chain is not pruned with it, a checkpoint attests its link (``chain.PRUNE``)."""
        now = self.clock()
        self._synchronous("FULL")
        old = now - self.retention_s
        where = 'acked_at IS NOT NULL AND acked_at <= ? AND "end" <= ?'
        with transaction(self.conn):
            victims = self.conn.execute(
                f"SELECT chain_n, seq, link FROM records WHERE {where} AND chain_n IS NOT NULL",
                (old, old)).fetchall()
            gone = {int(v[0]) for v in victims}
            attested = {int(r[0]) for r in self.conn.execute(
                "SELECT n FROM checkpoints WHERE kind = ?", (chain.PRUNE,))} if victims else set()
            for n, seq, link in victims:
                if int(n) + 1 not in gone and int(n) not in attested and link is not None:
                    self._add_checkpoint(int(n), int(seq), bytes(link), chain.PRUNE,
                                         "the last record of a pruned run: the next one's "
                                         "predecessor link")
            recs = self.conn.execute(f"DELETE FROM records WHERE {where}", (old, old)).rowcount
            samples = self.conn.execute(
                "DELETE FROM samples WHERE t < ?", (now - self.sample_retention_s,)
            ).rowcount
        if recs or samples:
            log.info("store_pruned", extra={"records": recs, "samples": samples})
        return Pruned(records=max(recs, 0), samples=max(samples, 0))

    def _delete_oldest_half(self, sql_count: str, sql_delete: str) -> int:
        count = int(self.conn.execute(sql_count).fetchone()[0])
        if count == 0:
            return 0
        try:
            with transaction(self.conn):
                return max(self.conn.execute(sql_delete, (max(1, count // 2),)).rowcount, 0)
        except sqlite3.Error as exc:
            if is_full_error(exc):  # not even room for the delete's journal
                return 0
            raise

    def _give_up_something(self, records_too: bool) -> bool:
        """Free room: the oldest half of the raw samples, else (``records_too``) of the
        acknowledged records. False when there is nothing left to give up."""
        self._synchronous("FULL")
        freed = self._delete_oldest_half(
            "SELECT count(*) FROM samples",
            "DELETE FROM samples WHERE id IN (SELECT id FROM samples ORDER BY id LIMIT ?)",
        )
        if freed:
            log.warning("store_full_samples_given_up", extra={"path": str(self.path), "n": freed})
            return True
        if not records_too:
            return False
        cutoff = self.clock() - self.retention_s
        for past, cond in ((True, "acked_at IS NOT NULL AND acked_at <= ?"),
                           (False, "acked_at IS NOT NULL AND acked_at > ?")):
            count = int(self.conn.execute(
                f"SELECT count(*) FROM records WHERE {cond}", (cutoff,)).fetchone()[0])
            if not count:
                continue
            victims = (f"seq IN (SELECT seq FROM records WHERE {cond} "
                       "ORDER BY acked_at, seq LIMIT ?)")
            n = count if past else max(1, count // 16)
            span = self._span(victims, (cutoff, n), self.clock())
            try:
                with transaction(self.conn):
                    freed = max(self.conn.execute(
                        f"DELETE FROM records WHERE {victims}", (cutoff, n)).rowcount, 0)
            except sqlite3.Error as exc:
                if is_full_error(exc):  # not even room for the delete's journal
                    return False
                raise
            if not freed:
                continue
            if past:  # what the prune would have dropped anyway: lawful
                log.warning("store_full_expired_records_pruned",
                            extra={"path": str(self.path), "n": freed})
            else:
                log.error("store_full_acked_records_given_up",
                          extra={"path": str(self.path), "n": freed})
                self._breached(span)
            return True
        return False

    def _span(self, where: str, params: tuple[Any, ...], now: float) -> dict[str, float]:
        """count, first window start, last window end and latest ack time of some records."""
        row = self.conn.execute(
            f'SELECT count(*), min(start), max("end"), max(coalesce(acked_at, ?)) '
            f"FROM records WHERE {where}", (now, *params)).fetchone()
        return {"n": float(row[0] or 0), "first_start": float(row[1] or 0),
                "last_end": float(row[2] or 0), "acked_at": float(row[3] or now)}

    def _breached(self, span: dict[str, float]) -> None:
        """Acknowledged records inside the retention period were deleted: remember it (in
        ``meta``, best effort) and say it at error level, as the legal problem it is."""
        old = self._breach
        until = span["acked_at"] + self.retention_s
        self._breach = {
            "n": span["n"] + (old["n"] if old else 0),
            "first_start": min(span["first_start"], old["first_start"]) if old
            else span["first_start"],
            "last_end": max(span["last_end"], old["last_end"]) if old else span["last_end"],
            "until": max(until, old["until"]) if old else until,
            "since": old["since"] if old else self.clock(),
        }
        log.error("retention_breached", extra={
            "path": str(self.path), "deleted": int(span["n"]),
            "windows": f"{_utc(span['first_start'])}..{_utc(span['last_end'])} UTC",
            "retention_days": f"{self.retention_s / DAY:g}", "until": _utc(until),
            "law": "Decree 08/2022/ND-CP art. 97: the station keeps 60 days of its data"})
        try:
            with transaction(self.conn):
                self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES "
                                  "('retention_breach', ?)", (json.dumps(self._breach),))
        except sqlite3.Error as exc:
            log.error("retention_breach_not_saved", extra={"path": str(self.path),
                                                          "reason": str(exc)})

    # -- problems for the status ------------------------------------------------------------

    @_locked
    def problems(self) -> list[str]:
        """What ``quantrac status`` must show about this store, one sentence each (empty when
        all is well): quarantined records, a retention breach, a missing reserve, moved-aside
        files that still hold unacknowledged records."""
        out: list[str] = []
        bad = self.conn.execute("SELECT count(*), min(seq), max(seq) FROM records WHERE "
                                "quarantined_at IS NOT NULL AND acked_at IS NULL").fetchone()
        if bad[0]:
            out.append(f"{self.path}: {bad[0]} record(s) failed their checksum (seq {bad[1]}"
                       f"..{bad[2]}): quarantined, not sent; the stored values are damaged")
        b = self._breach
        if b is not None and self.clock() < b["until"]:
            out.append(
                f"{self.path}: disk full: {int(b['n'])} acknowledged record(s) of "
                f"{_utc(b['first_start'])}..{_utc(b['last_end'])} UTC deleted before the "
                f"{self.retention_s / DAY:g}-day retention: the station's own 60-day storage "
                f"duty (Decree 08/2022/ND-CP art. 97) is not met until {_utc(b['until'])} UTC")
        if self.reserve_bytes and not self._reserve_ok():
            out.append(f"{self.reserve_path}: no reserve file: closed records left at a stop "
                       "on a full disk would be lost; free disk space")
        out += self._moved_aside_problems()
        return out

    def _aside_candidates(self) -> list[Path]:
        """Moved-aside outbox files next to this one: ``<name>.<anything>`` that is a SQLite
        file or was moved aside as corrupt (not -wal/-shm/-journal, not our reserve)."""
        out = []
        try:
            entries = sorted(self.path.parent.iterdir())
        except OSError:
            return []
        prefix = self.path.name + "."
        for p in entries:
            if (p == self.path or not p.name.startswith(prefix) or not p.is_file()
                    or p.name.endswith(("-wal", "-shm", "-journal", RESERVE_SUFFIX))):
                continue
            if ".corrupt-" in p.name:
                out.append(p)
                continue
            try:
                with p.open("rb") as f:
                    if f.read(16) == b"SQLite format 3\x00":
                        out.append(p)
            except OSError:
                continue
        return out

    def _moved_aside_problems(self) -> list[str]:
        done = {str(r[0])[len("recovered:"):] for r in self.conn.execute(
            "SELECT key FROM meta WHERE key LIKE 'recovered:%'")}
        out = []
        for p in self._aside_candidates():
            if p.name in done:
                continue
            st = p.stat()
            key = (st.st_size, st.st_mtime_ns)
            cached = self._aside_cache.get(p.name)
            if cached is not None and cached[0] == key:
                problem = cached[1]
            else:
                problem = self._aside_problem(p)
                self._aside_cache[p.name] = (key, problem)
            if problem is not None:
                out.append(problem)
        return out

    def _aside_problem(self, p: Path) -> str | None:
        try:
            conn = _ro(p)
            try:
                n = int(conn.execute(
                    "SELECT count(*) FROM records WHERE acked_at IS NULL").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return (f"{p}: moved-aside outbox, unreadable ({exc}); it may hold unsent "
                    f"records: run `quantrac outbox recover {p}`")
        if n == 0:
            return None
        return (f"{p}: moved-aside outbox holds {n} unacknowledged record(s), never sent: "
                f"run `quantrac outbox recover {p}`")

    # -- the reserve: room for closed records at a stop on a full disk --------------------

    def _reserve_ok(self) -> bool:
        try:
            return self.reserve_path.stat().st_size >= self.reserve_bytes
        except OSError:
            return False

    @_locked
    def ensure_reserve(self, size: int) -> bool:
        """Make ``<outbox>.reserve`` ``size`` bytes of written zeros (once; an existing one,
        possibly holding a spill, is kept). False when the disk has no room for it."""
        self.reserve_bytes = size
        if self._reserve_ok():
            return True
        tmp = self.reserve_path.with_name(self.reserve_path.name + ".tmp")
        try:
            with tmp.open("wb") as f:
                chunk = bytes(65536)
                left = size
                while left > 0:
                    left -= f.write(chunk[:min(left, len(chunk))])
                f.flush()
                os.fsync(f.fileno())
            if self.reserve_path.exists():  # too small: keep its spill, if any, in the new one
                head = self.reserve_path.read_bytes()
                with tmp.open("r+b") as f:
                    f.write(head[:size])
                    os.fsync(f.fileno())
            os.replace(tmp, self.reserve_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.error("store_reserve_missing", extra={"path": str(self.reserve_path),
                                                      "bytes": size, "reason": str(exc)})
            return False
        return True

    @_locked
    def spill(self, records: Sequence[Record]) -> int:
        """Write ``records`` (in order) into the reserve, in place; return how many fit.

        No block is allocated: the reserve's bytes were all written when it was made, and the
        file is neither truncated nor extended. OSError when there is no reserve.
        """
        size = self.reserve_path.stat().st_size
        room = size - _SPILL_HEAD.size
        lines: list[bytes] = []
        used = 0
        for rec in records:
            line = json.dumps(list(record_row(rec))).encode() + b"\n"
            if used + len(line) > room:
                break
            lines.append(line)
            used += len(line)
        payload = b"".join(lines)
        head = _SPILL_HEAD.pack(_SPILL_MAGIC, len(lines), len(payload),
                                hashlib.sha256(payload).digest())
        fd = os.open(self.reserve_path, os.O_WRONLY)
        try:
            os.pwrite(fd, head + payload, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        return len(lines)

    @_locked
    def spilled(self) -> list[Record]:
        """The records a stop left in the reserve, in order (empty if none)."""
        try:
            with self.reserve_path.open("rb") as f:
                head = f.read(_SPILL_HEAD.size)
                if len(head) < _SPILL_HEAD.size:
                    return []
                magic, count, length, digest = _SPILL_HEAD.unpack(head)
                if magic != _SPILL_MAGIC:
                    return []
                payload = f.read(length)
        except OSError:
            return []
        if len(payload) != length or hashlib.sha256(payload).digest() != digest:
            log.error("spill_corrupt", extra={"path": str(self.reserve_path),
                                              "records": count})
            return []
        return [row_record(json.loads(line)) for line in payload.splitlines()]

    @_locked
    def clear_spill(self) -> None:
        """The spilled records are committed: blank the reserve's header (in place)."""
        fd = os.open(self.reserve_path, os.O_WRONLY)
        try:
            os.pwrite(fd, bytes(_SPILL_HEAD.size), 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- recovery of a moved-aside file ---------------------------------------------------

    @_locked
    def recover(self, source: Path | str) -> Recovered:
        """Import the readable unacknowledged records of a moved-aside outbox file, each
        under its own seq (see the module docstring for why); the file is only read."""
        source = Path(source)
        if source.resolve() == self.path.resolve():
            raise ValueError(f"{source}: that is the live outbox itself")
        if not source.is_file():
            raise FileNotFoundError(f"{source}: no such file")
        foreign = foreign_reason(source)
        if foreign is not None:
            raise ForeignDatabaseError(foreign)
        try:
            conn = _ro(source)
            columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(records)")}
        except sqlite3.Error as exc:
            raise ValueError(f"{source}: cannot be read as an outbox ({exc})") from exc
        if "seq" not in columns:
            conn.close()
            raise ValueError(f"{source}: has no readable records table")
        has_digest = "digest" in columns
        cols = f"seq, {_COLS}, {'digest' if has_digest else 'NULL'}, acked_at, created"
        rows: list[Any] = []
        unreadable: list[tuple[int, int]] = []
        last = -(1 << 62)
        try:
            while True:  # keyset pages; a page SQLite cannot read is narrowed, then skipped
                got = None
                for limit in (500, 50, 5, 1):
                    try:
                        got = conn.execute(f"SELECT {cols} FROM records WHERE seq > ? "
                                           "ORDER BY seq LIMIT ?", (last, limit)).fetchall()
                        break
                    except sqlite3.Error:
                        continue
                if got is None:
                    step = 1
                    while step < (1 << 62):
                        try:
                            conn.execute("SELECT seq FROM records WHERE seq > ? ORDER BY seq "
                                         "LIMIT 1", (last + step,)).fetchall()
                            break
                        except sqlite3.Error:
                            step *= 2
                    unreadable.append((last + 1, last + step))
                    last += step
                    if step >= (1 << 62):
                        break
                    continue
                if not got:
                    break
                rows += got
                last = int(got[-1][0])
        finally:
            conn.close()
        now = self.clock()
        imported: list[int] = []
        renumbered = held = quarantined = acked = 0
        insert = (f"INSERT INTO records (seq, {_COLS}, created, digest, quarantined_at, "
                  f"chain_n, link) VALUES ({', '.join('?' * 19)})")
        with transaction(self.conn):
            head_n, head_seq, head_link = self._chain_head()

            def chained(seq: int, rec: Record) -> tuple[int, bytes]:
                """The next chain position for an imported record: in import order."""
                nonlocal head_n, head_seq, head_link
                head_n, head_seq = head_n + 1, seq
                head_link = chain.link(head_link, head_n, seq, rec)
                return head_n, head_link

            clashes: list[tuple[int, Record, float, bool]] = []
            for row in rows:
                seq = int(row[0])
                if row[-2] is not None:
                    acked += 1
                    continue
                try:
                    rec = row_record(row[1:14])
                except (ValueError, TypeError):
                    rec = None
                if rec is None:
                    unreadable.append((seq, seq))
                    continue
                digest = bytes(row[14]) if row[14] is not None else None
                if not has_digest:
                    digest = record_digest(seq, rec)  # schema 1: the values as they read now
                bad = digest != record_digest(seq, rec)
                created = float(row[-1] or now)
                # the very same record already here (under any seq: a repeated recover)?
                if any(same_record(row_record(m[1:-1]), rec) for m in self.conn.execute(
                        f'{_SELECT} WHERE channel=? AND start=? AND "end"=?',
                        (rec.channel, rec.start, rec.end))):
                    held += 1
                    continue
                if self.conn.execute("SELECT 1 FROM records WHERE seq=?", (seq,)).fetchone():
                    clashes.append((seq, rec, created, bad))  # numbered after the rest
                    continue
                self.conn.execute(insert, (seq, *record_row(rec), created, digest,
                                           now if bad else None, *chained(seq, rec)))
                quarantined += bad
                imported.append(seq)
            for old, rec, created, bad in clashes:
                seq = self._last_seq() + 1
                log.warning("outbox_recover_renumbered", extra={
                    "source": str(source), "old_seq": old, "new_seq": seq,
                    "reason": "the live outbox holds another record under that seq"})
                # a damaged record keeps a digest that cannot match: it stays quarantined
                self.conn.execute(insert, (seq, *record_row(rec), created,
                                           b"" if bad else record_digest(seq, rec),
                                           now if bad else None, *chained(seq, rec)))
                renumbered += 1
                quarantined += bad
                imported.append(seq)
            self._set_chain_head(head_n, head_seq, head_link)
            result = Recovered(source, len(imported), renumbered, held, quarantined, acked,
                               unreadable, _ranges(imported))
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (f"recovered:{source.name}", json.dumps({
                    "at": now, "imported": len(imported), "renumbered": renumbered,
                    "already_held": held, "quarantined": quarantined,
                    "seqs": result.seq_ranges[:100], "unreadable": unreadable[:100]})))
        (log.warning if unreadable or quarantined else log.info)("outbox_recovered", extra={
            "source": str(source), "into": str(self.path), "imported": len(imported),
            "renumbered": renumbered, "already_held": held, "quarantined": quarantined,
            "acked_skipped": acked, "unreadable_spans": len(unreadable),
            "seqs": ",".join(f"{a}-{b}" for a, b in result.seq_ranges[:20])})
        return result

    @_locked
    def integrity_check(self, full: bool = False) -> list[str]:
        """SQLite's own check of the open file: ``['ok']`` when sound."""
        sql = "PRAGMA integrity_check" if full else "PRAGMA quick_check"
        return [str(r[0]) for r in self.conn.execute(sql).fetchall()]

    @_locked
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read-only escape hatch for diagnostics and tests."""
        return [tuple(r) for r in self.conn.execute(sql, params).fetchall()]
