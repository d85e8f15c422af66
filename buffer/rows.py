"""Records as SQLite rows: one column list and two conversions, shared by every record store.

SQLite stores a NaN REAL as NULL, so a window with no valid sample (mean NaN) comes back as
None; ``row_record`` turns it back into NaN so the record round-trips exactly.
"""

from __future__ import annotations

import math
from typing import Any

from protocol.model import Record, RecordFlag, Status

#: the record's own columns, in ``Record`` field order ("end" is quoted: an SQL keyword)
RECORD_COLUMNS = (
    "channel", "start", '"end"', "mean", "min", "max", "std",
    "n_valid", "n_expected", "valid", "status", "unit", "flags",
)  # fmt: skip

RECORD_COLUMNS_SQL = """
    channel TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    mean REAL,
    min REAL,
    max REAL,
    std REAL,
    n_valid INTEGER NOT NULL,
    n_expected INTEGER NOT NULL,
    valid INTEGER NOT NULL,
    status INTEGER NOT NULL,
    unit TEXT NOT NULL,
    flags INTEGER NOT NULL
"""


def record_row(rec: Record) -> tuple[Any, ...]:
    """The values of ``RECORD_COLUMNS`` for one record."""
    return (
        rec.channel, rec.start, rec.end, rec.mean, rec.min, rec.max, rec.std,
        rec.n_valid, rec.n_expected, 1 if rec.valid else 0, int(rec.status), rec.unit,
        int(rec.flags),
    )  # fmt: skip


def _real(value: float | None) -> float:
    return math.nan if value is None else float(value)


def row_record(row: tuple[Any, ...] | list[Any]) -> Record:
    """A record from the values of ``RECORD_COLUMNS`` (NULL reals become NaN)."""
    return Record(
        channel=row[0],
        start=int(row[1]),
        end=int(row[2]),
        mean=_real(row[3]),
        min=_real(row[4]),
        max=_real(row[5]),
        std=_real(row[6]),
        n_valid=int(row[7]),
        n_expected=int(row[8]),
        valid=bool(row[9]),
        status=Status(row[10]),
        unit=row[11],
        flags=RecordFlag(row[12]),
    )
