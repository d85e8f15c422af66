"""What the centre's record store needs from a database, and how a database failure is named.

The de-duplication rule and every query of the store live once, in :mod:`centre.store`; a
backend is only the few things two databases do differently: how a transaction starts and whom
it excludes, how placeholders are written, the two-argument maximum, the column types of the
schema, and the fastest bulk insert. So SQLite (the embedded default) and PostgreSQL (a
province's centre with several receivers) cannot drift apart in what they decide.

SQL handed to a backend is written once, in SQLite's dialect with ``?`` placeholders; the
PostgreSQL backend rewrites the placeholders and the schema's types (``ddl``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from protocol.cli_error import UserError

#: URL schemes that select the PostgreSQL backend; anything else is a SQLite file's path
PG_SCHEMES = ("postgresql://", "postgres://")


def is_dsn(location: object) -> bool:
    """True when ``location`` names a PostgreSQL database (``postgresql://...``), not a file."""
    return isinstance(location, str) and location.startswith(PG_SCHEMES)


class NotACentreStoreError(UserError):
    """The file given as the record store is not one, or cannot be read (names the file)."""


class StoreUnavailableError(UserError):
    """The record store cannot take or give records now: the database is down, unreachable,
    refuses us, or its disk is full. Nothing of the failed call was committed, so the caller
    must not acknowledge what it was storing; the next call tries again (the PostgreSQL
    backend reconnects), so a receiver resumes by itself when the database is back. The
    message names the store (file, or DSN host/port/database, never a password).

    ``full``: the disk (or SQLite's ``max_page_count``) is exhausted. Reads and an empty
    transaction still succeed then, so only a write proves such a store is back (the
    receiver's probe, ``CentreStore.probe``, is not tried for it)."""

    def __init__(self, message: str, *, full: bool = False) -> None:
        super().__init__(message)
        self.full = full


class Backend(Protocol):
    """One open database of the record store, used from one thread."""

    #: the store as messages name it: a file path, or the DSN without its password
    name: str
    #: the two-argument maximum (``max`` in SQLite, ``GREATEST`` in PostgreSQL)
    greatest: str
    #: where a corrupt SQLite file went when it was replaced (always None for PostgreSQL)
    moved_aside: Path | None

    def transaction(self, lock: str | None = None) -> AbstractContextManager[None]:
        """One transaction, committed at the end, rolled back on an exception; ``lock``: no
        other transaction holding the same key runs at the same time (SQLite's write lock
        excludes all of them anyway)."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (none for a statement without a result)."""
        ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Bulk insert, the fastest way the database has (PostgreSQL: COPY)."""
        ...

    def ddl(self, script: str) -> str:
        """A schema script of SQLite's types in this database's types."""
        ...

    def tables(self) -> set[str]:
        """The tables the database holds."""
        ...

    def close(self) -> None: ...
