"""Reading a station's outbox without touching it: what ``quantrac history`` shows.

``buffer.Store`` is the agent's: opening it creates, migrates, switches to WAL, moves a corrupt
file aside and quarantines records whose checksum fails. A reader must do none of that (the
agent may be running, the file may be evidence, the operator may have pointed at the wrong
file), so this opens the file with SQLite's ``mode=ro`` and refuses, naming the file, anything
that is not an outbox (its ``application_id`` or, for a schema-1 file, its shape).

Each record is checked against its checksum (``buffer.rows.record_digest``) as the agent checks
it before sending: a record that fails, or that the agent quarantined, is not shown as if it
were genuine; its seq is handed back so the command can say how many were left out.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from buffer.record_select import ORDER, where
from buffer.rows import RECORD_COLUMNS, record_digest, row_record
from buffer.store import APPLICATION_ID, foreign_reason
from protocol.cli_error import UserError
from protocol.model import Record
from protocol.record_filter import RecordFilter

_COLS = ", ".join(RECORD_COLUMNS)


class NotAnOutboxError(UserError):
    """The file is missing, unreadable, or not a station outbox (names the file)."""


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A record as the outbox holds it, and how far it got: ``pending`` (not sent yet),
    ``sent`` (waiting for the centre's acknowledgement), ``acked`` (the centre holds it)."""

    seq: int
    record: Record
    state: str


@dataclass(frozen=True)
class Selected:
    """The records a filter matched, and the seqs left out because their checksum fails or
    the agent quarantined them."""

    records: list[OutboxRecord]
    unsound: list[int] = field(default_factory=list)


def _state(sent_at: float | None, acked_at: float | None) -> str:
    return "acked" if acked_at is not None else "sent" if sent_at is not None else "pending"


class OutboxReader:
    """A read-only connection to one outbox file; close it (or use ``with``)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise NotAnOutboxError(f"{self.path}: no such outbox file")
        uri = "file:" + urllib.parse.quote(str(self.path.absolute())) + "?mode=ro"
        try:
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10.0)
            app_id = int(self.conn.execute("PRAGMA application_id").fetchone()[0])
            tables = {str(r[0]) for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            raise NotAnOutboxError(f"{self.path}: not a station outbox (SQLite says: "
                                   f"{exc})") from None
        foreign = foreign_reason(self.path)
        if foreign is not None or "records" not in tables:
            self.conn.close()
            if {"stations", "current_values"} <= tables:  # the mistake the names invite
                raise NotAnOutboxError(
                    f"{self.path}: that file is a centre record store, not a station outbox; "
                    f"it is read with `quantrac centre query --store {self.path} --station ID`")
            if foreign is not None:
                raise NotAnOutboxError(foreign.split(";")[0])
            why = "an outbox" if app_id == APPLICATION_ID else "not a station outbox"
            raise NotAnOutboxError(f"{self.path}: {why} with no records table (empty?)")
        self._columns = {str(r[1]) for r in self.conn.execute("PRAGMA table_info(records)")}

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> OutboxReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def select(self, f: RecordFilter) -> Selected:
        """The records ``f`` asks for (``f.station`` is ignored: an outbox is one station's)."""
        clause, params = where(f, by_station=False)
        # a schema-1 outbox (before checksums) has neither column: nothing to check it by
        checked = "digest" in self._columns
        extra = "digest, quarantined_at" if checked else "NULL, NULL"
        try:
            rows = self.conn.execute(
                f"SELECT seq, {_COLS}, sent_at, acked_at, {extra} FROM records "
                f"WHERE {clause} {ORDER}", params,
            ).fetchall()
        except sqlite3.Error as exc:
            raise NotAnOutboxError(f"{self.path}: cannot read the outbox: {exc}") from None
        good: list[OutboxRecord] = []
        unsound: list[int] = []
        for row in rows:
            seq, digest, quarantined = int(row[0]), row[-2], row[-1]
            try:
                rec = row_record(row[1:-4])
                sound = not checked or (
                    digest is not None and record_digest(seq, rec) == bytes(digest))
            except (ValueError, TypeError):
                sound = False
            if sound and quarantined is None:
                good.append(OutboxRecord(seq, rec, _state(row[-4], row[-3])))
            else:
                unsound.append(seq)
        return Selected(good, unsound)

    def channels(self) -> list[str]:
        """Every channel the outbox holds a record of."""
        return [str(r[0]) for r in self.conn.execute(
            "SELECT DISTINCT channel FROM records ORDER BY channel")]
