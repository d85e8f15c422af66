"""The record store in one SQLite file: the embedded default, and one receiver's centre.

Opened with ``buffer.db.open_checked`` (WAL, synchronous=FULL, integrity check, move-aside),
so the centre keeps its file the way a station keeps its outbox. Several receivers may share
one file: every write is one ``BEGIN IMMEDIATE`` transaction, which takes SQLite's single
write lock at once, so a de-duplication decision and its insert are atomic against every
other writer (the per-station ``lock`` key is then implied).

A full disk, a lock held past the busy timeout, a read-only file or an I/O error is
``StoreUnavailableError``: the caller cannot store now and must not acknowledge; anything
else SQLite raises is a bug.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from buffer.db import is_full_error, open_checked, transaction
from buffer.store import APPLICATION_ID as OUTBOX_APPLICATION_ID
from centre.store_backends import NotACentreStoreError, StoreUnavailableError
from protocol.clock import Clock


def _open_read_only(path: Path) -> sqlite3.Connection:
    """``path`` opened with SQLite's ``mode=ro``: for the read commands (``centre query``,
    ``centre stations``), which must never create, migrate or move aside a file that an
    operator merely pointed them at (a typo, another tool's database, a store in use)."""
    if not path.is_file():
        raise NotACentreStoreError(f"{path}: no such record store")
    uri = "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10.0)
    except sqlite3.Error as exc:
        raise NotACentreStoreError(f"{path}: cannot open the record store: {exc}") from None
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise NotACentreStoreError(
            f"{path}: not a centre record store (SQLite says: {exc})"
        ) from None
    if app_id == OUTBOX_APPLICATION_ID:  # the mistake the two file names invite
        conn.close()
        raise NotACentreStoreError(
            f"{path}: that file is a station outbox, not a centre record store; a station's "
            f"own records are read with `quantrac history --store {path}`"
        )
    return conn


def _unavailable(exc: sqlite3.Error) -> bool:
    """True when the file, not our SQL, is at fault: SQLite's OperationalError (full, locked
    past the busy timeout, read-only, I/O error, cannot open) other than a statement SQLite
    cannot run (a syntax error, no such table: a bug, kept as it is)."""
    if is_full_error(exc):
        return True
    text = str(exc)
    return (isinstance(exc, sqlite3.OperationalError)
            and "syntax error" not in text and not text.startswith("no such"))


class SqliteBackend:
    """One SQLite file; ``read_only`` opens an existing file with ``mode=ro``."""

    greatest = "max"

    def __init__(self, path: Path, clock: Clock = time.time, *, read_only: bool) -> None:
        self.path = path
        self.name = str(path)
        self.moved_aside: Path | None = None
        if read_only:
            self.conn = _open_read_only(path)
        else:
            opened = open_checked(path, clock)
            self.conn, self.moved_aside = opened.conn, opened.moved_aside

    @contextlib.contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[None]:
        try:
            with transaction(self.conn):
                yield
        except sqlite3.Error as exc:
            if _unavailable(exc):
                raise StoreUnavailableError(f"{self.path}: record store unavailable: {exc}",
                                            full=is_full_error(exc)) from exc
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            if _unavailable(exc):
                raise StoreUnavailableError(f"{self.path}: record store unavailable: {exc}",
                                            full=is_full_error(exc)) from exc
            raise

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        marks = ", ".join("?" * len(columns))
        self.conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def ddl(self, script: str) -> str:
        return script

    def tables(self) -> set[str]:
        return {str(r[0]) for r in self.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}

    def close(self) -> None:
        self.conn.close()
