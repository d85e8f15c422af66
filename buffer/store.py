"""The station's durable outbox and raw-sample store (DESIGN §5 "Outbox").

One SQLite file (WAL). A record gets its sequence number when it is committed and keeps it for
life: numbers strictly increase across restarts and are never reused, even after pruning or
after a corrupt file was moved aside. Outbox states, one row per record::

    pending (sent_at NULL) --next_batch--> sent (sent_at) --acknowledge--> acked (acked_at)
                 ^---------- requeue (timeout, reconnect, resend request) ----'

Only the centre's acknowledgement makes a record delivered. Records commit with
``synchronous=FULL``; raw samples commit with ``synchronous=NORMAL`` (a power cut may lose the
last few, never corrupt anything) and are the first thing given up when the disk is full.
"""

from __future__ import annotations

import functools
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from buffer.db import (
    Clock,
    StoreFullError,
    apply_schema,
    is_full_error,
    open_checked,
    transaction,
)
from buffer.rows import RECORD_COLUMNS, RECORD_COLUMNS_SQL, record_row, row_record
from protocol.model import Record, Sample, Status

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
SCHEMA_VERSION = 1
_COLS = ", ".join(RECORD_COLUMNS)
_INSERT = f"INSERT INTO records (seq, {_COLS}, created) VALUES ({', '.join('?' * 15)})"
_SELECT = f"SELECT seq, {_COLS} FROM records"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    {RECORD_COLUMNS_SQL},
    created REAL NOT NULL,
    sent_at REAL,
    acked_at REAL
);
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


@dataclass(frozen=True)
class Pruned:
    """How many rows a retention pass removed."""

    records: int
    samples: int


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
    ) -> None:
        """Open (or create) the store at ``path``; a corrupt file is moved aside first.

        After a move-aside the new file's sequence numbers start above both the highest one
        the old file still shows and ``clock()`` in ms x 1000, so the centre, which
        de-duplicates on (station, seq), never mistakes new records for replays.
        """
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.RLock()
        self.retention_s = retention_s
        self.sample_retention_s = sample_retention_s
        opened = open_checked(self.path, clock, max_bytes=max_bytes, full_check=full_check)
        self.db = opened.db
        self.conn: sqlite3.Connection = opened.db.conn
        self.moved_aside = opened.moved_aside
        self._sync = "FULL"
        with transaction(self.conn):
            apply_schema(self.conn, _SCHEMA)
            self.conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
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
        version = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if int(version[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema version {version[0]}, want {SCHEMA_VERSION}")

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
            self.conn.executemany(
                _INSERT, [(first + i, *record_row(r), now) for i, r in enumerate(records)]
            )
            return list(range(first, first + len(records)))

        return self._write("FULL", True, insert)

    @_locked
    def next_batch(self, limit: int) -> list[tuple[int, Record]]:
        """The oldest ``limit`` pending records, marked sent now (the time they left).

        On a disk so full that not even the sent mark fits, the batch is still returned
        (unmarked: it will be offered again until acknowledged), so the outbox can drain.
        """
        now = self.clock()
        select = f"{_SELECT} WHERE acked_at IS NULL AND sent_at IS NULL ORDER BY seq LIMIT ?"

        def take() -> list[Any]:
            rows = self.conn.execute(select, (limit,)).fetchall()
            if rows:
                self.conn.execute(
                    "UPDATE records SET sent_at=? "
                    "WHERE acked_at IS NULL AND sent_at IS NULL AND seq <= ?",
                    (now, rows[-1][0]),
                )
            return rows

        try:  # NORMAL: losing a sent mark in a power cut only means sending again
            rows = self._write("NORMAL", True, take)
        except StoreFullError:
            rows = self.conn.execute(select, (limit,)).fetchall()
        return [(int(row[0]), row_record(row[1:])) for row in rows]

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
                "UPDATE records SET acked_at=? WHERE seq BETWEEN ? AND ? AND acked_at IS NULL",
                spans,
            )
            return max(cur.rowcount, 0)

        try:
            return self._write("FULL", True, mark)
        except StoreFullError:
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
            f"{_SELECT} WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)
        ).fetchall()
        return [(int(row[0]), row_record(row[1:])) for row in rows]

    @_locked
    def windows(self, width_s: int, start_from: float = -math.inf,
                end_until: float = math.inf) -> list[tuple[int, Record]]:
        """Records of one window width still held, with ``start >= start_from`` and
        ``end <= end_until``, by start then seq (what a restart or a file uplink re-reads)."""
        lo = -(1 << 62) if start_from == -math.inf else start_from
        hi = 1 << 62 if end_until == math.inf else end_until
        rows = self.conn.execute(
            f'{_SELECT} WHERE "end" - start = ? AND start >= ? AND "end" <= ? '
            "ORDER BY start, seq", (width_s, lo, hi)
        ).fetchall()
        return [(int(row[0]), row_record(row[1:])) for row in rows]

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
        return OutboxStatus(
            unacked=int(unacked),
            in_flight=int(in_flight),
            acked=int(acked),
            last_seq=self._last_seq(),
            oldest_unacked_seq=int(oldest[0]) if oldest else None,
            oldest_unacked_start=int(oldest[1]) if oldest else None,
            samples=int(samples),
        )

    # -- raw samples ------------------------------------------------------------------------

    @_locked
    def append_samples(self, samples: Sequence[Sample]) -> int:
        """Store raw samples (cheaper durability); on a full disk older samples make room."""
        if not samples:
            return 0
        rows = [
            (s.channel, s.t, None if math.isnan(s.value) else s.value, int(s.status))
            for s in samples
        ]

        def insert() -> int:
            self.conn.executemany(
                "INSERT INTO samples (channel, t, value, status) VALUES (?, ?, ?, ?)", rows
            )
            return len(rows)

        return self._write("NORMAL", False, insert)

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
        """Retention: drop records acknowledged more than ``retention_s`` ago and raw samples
        older than ``sample_retention_s``. Unacknowledged records are never pruned."""
        now = self.clock()
        self._synchronous("FULL")
        with transaction(self.conn):
            recs = self.conn.execute(
                "DELETE FROM records WHERE acked_at IS NOT NULL AND acked_at <= ?",
                (now - self.retention_s,),
            ).rowcount
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
        freed = self._delete_oldest_half(
            "SELECT count(*) FROM records WHERE acked_at IS NOT NULL",
            "DELETE FROM records WHERE seq IN (SELECT seq FROM records "
            "WHERE acked_at IS NOT NULL ORDER BY seq LIMIT ?)",
        )
        if freed:
            log.error(
                "store_full_acked_records_given_up", extra={"path": str(self.path), "n": freed}
            )
            return True
        return False

    @_locked
    def integrity_check(self, full: bool = False) -> list[str]:
        """SQLite's own check of the open file: ``['ok']`` when sound."""
        sql = "PRAGMA integrity_check" if full else "PRAGMA quick_check"
        return [str(r[0]) for r in self.conn.execute(sql).fetchall()]

    @_locked
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read-only escape hatch for diagnostics and tests."""
        return [tuple(r) for r in self.conn.execute(sql, params).fetchall()]
