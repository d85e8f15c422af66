"""Opening SQLite files the one right way: WAL, durable commits, integrity check, move-aside.

Reusable by every SQLite store of the project (the station's outbox here, the centre's record
store): a store calls ``open_checked`` and gets a connection with the pragmas set, after an
integrity check that moves a corrupt file aside (never deletes it) and raises the loud
``store_corrupt_moved_aside`` event, so that a station keeps logging on a fresh file instead
of refusing to start. A station that refused to start on a corrupt log would stop logging
altogether, the one outcome worse than losing the corrupt file's tail; the file is kept for
inspection and the event tells the operator at once.

Plain ``sqlite3``: every statement of the stores is hand-written SQL on the connection, so
``open_checked`` hands back the connection itself (``CheckedDatabase.conn``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from protocol.clock import Clock

log = logging.getLogger("quantrac.buffer.db")

SIDE_FILES = ("-wal", "-shm", "-journal")


class StoreFullError(Exception):
    """The disk (or the configured size cap) is full and nothing more could be given up."""


@dataclass(frozen=True)
class CheckedDatabase:
    """A checked, configured connection and, if the old file was corrupt, where it went."""

    conn: sqlite3.Connection
    moved_aside: Path | None
    problem: str | None


def is_full_error(exc: BaseException) -> bool:
    """True for SQLITE_FULL: the disk or ``max_page_count`` is exhausted."""
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc)


def connect(
    path: Path, synchronous: str = "FULL", max_bytes: int | None = None
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with WAL and the pragmas.

    ``synchronous=FULL`` fsyncs the WAL at every commit: a record committed is on the card
    even if the power goes a microsecond later. ``max_bytes`` caps the file (max_page_count),
    which turns a full partition into a clean SQLITE_FULL before the card is full.
    """
    # check_same_thread off: a store may be shared by threads behind its own lock
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    if max_bytes is not None:
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        conn.execute(f"PRAGMA max_page_count={max(1, max_bytes // page)}")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception (the connection is autocommit)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def apply_schema(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated DDL statements inside the caller's transaction.

    ``executescript`` would commit first; running them one by one keeps schema creation and
    whatever goes with it (a sequence floor, a version row) in one atomic transaction.
    """
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def check_integrity(path: Path, full: bool = False) -> str | None:
    """None if the file is sound, else what SQLite said (``quick_check`` unless ``full``).

    ``quick_check`` is O(file) but skips index-content checks: seconds, not minutes, for
    60 days of records on an SD card.
    """
    try:
        # read-only: a read-write close would checkpoint a suspect WAL into a suspect file
        # (or discard a WAL SQLite cannot parse) before we could move both aside intact
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        return f"cannot open: {exc}"
    try:
        rows = conn.execute("PRAGMA integrity_check" if full else "PRAGMA quick_check").fetchall()
        result = [str(r[0]) for r in rows]
        return None if result == ["ok"] else "; ".join(result[:5])
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()


def move_aside(path: Path, clock: Clock) -> Path:
    """Rename ``path`` (and its -wal/-shm) to ``<name>.corrupt-<UTC>``; never delete it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}.{n}")
        n += 1
    os.replace(path, target)
    for side in SIDE_FILES:
        src = path.with_name(path.name + side)
        if src.exists():
            os.replace(src, target.with_name(target.name + side))
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def open_checked(
    path: Path | str,
    clock: Clock = time.time,
    *,
    synchronous: str = "FULL",
    max_bytes: int | None = None,
    full_check: bool = False,
) -> CheckedDatabase:
    """Check ``path``, move it aside if corrupt, open (or create) it with the right pragmas."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    moved: Path | None = None
    problem: str | None = None
    if path.exists():
        problem = check_integrity(path, full=full_check)
        if problem is not None:
            moved = move_aside(path, clock)
            log.error(
                "store_corrupt_moved_aside",
                extra={"path": str(path), "moved_to": str(moved), "problem": problem},
            )
    try:
        conn = connect(path, synchronous=synchronous, max_bytes=max_bytes)
    except sqlite3.DatabaseError as exc:  # passed quick_check, still unusable: same treatment
        if moved is not None:
            raise
        problem = str(exc)
        moved = move_aside(path, clock)
        log.error(
            "store_corrupt_moved_aside",
            extra={"path": str(path), "moved_to": str(moved), "problem": problem},
        )
        conn = connect(path, synchronous=synchronous, max_bytes=max_bytes)
    return CheckedDatabase(conn, moved, problem)
