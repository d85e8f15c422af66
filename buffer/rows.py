"""Records as SQLite rows: one column list and two conversions, shared by every record store.

SQLite stores a NaN REAL as NULL, so a window with no valid sample (mean NaN) comes back as
None; ``row_record`` turns it back into NaN so the record round-trips exactly.

``record_digest`` is a record's own checksum. SQLite's ``quick_check``/``integrity_check``
check the b-tree structure, not the values in it: one flipped bit in a stored double (137.9
becoming 275.8) passes both. The digest covers the sequence number and every field, in a
canonical byte form computed from the ``Record`` (so the value written and the value read
back through ``row_record`` hash alike: NaN has one form, -0.0 is 0.0 because SQLite may store
an integral REAL as an integer), and is checked whenever a record is read for sending.
"""

from __future__ import annotations

import hashlib
import math
import struct
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


#: the enum members by value: ``Status(v)``/``RecordFlag(v)`` cost ~3 us each through
#: ``EnumMeta.__call__``, a third of reading a record back (a dashboard page reads 60,000)
_STATUS = {int(s): s for s in Status}
_FLAGS: dict[int, RecordFlag] = {}


def _flags(value: int) -> RecordFlag:
    flags = _FLAGS.get(value)
    if flags is None:
        flags = RecordFlag(value)
        if len(_FLAGS) < 4096:  # a store holds a few combinations; never an unbounded cache
            _FLAGS[value] = flags
    return flags


def row_record(row: tuple[Any, ...] | list[Any]) -> Record:
    """A record from the values of ``RECORD_COLUMNS`` (NULL reals become NaN)."""
    status = _STATUS.get(row[10])
    mean, low, high, std = row[3], row[4], row[5], row[6]
    # positional, and NULL tested inline: this runs once per record read (an export reads
    # 340,000), and keyword arguments and a call per real were a third of its cost
    return Record(
        row[0], int(row[1]), int(row[2]),
        math.nan if mean is None else float(mean), math.nan if low is None else float(low),
        math.nan if high is None else float(high), math.nan if std is None else float(std),
        int(row[7]), int(row[8]), bool(row[9]), Status(row[10]) if status is None else status,
        row[11], _flags(int(row[12])),
    )  # fmt: skip


_DIGEST_PERSON = b"quantrac-rec-v2"  # domain separation: these bytes hash nothing else
#: seq, start, end, mean, min, max, std, n_valid, n_expected, valid, status, flags, and the
#: byte lengths of channel and unit (which follow): one pack and one hash call per record,
#: so the checksum costs a fraction of the insert it guards (``bench/outbox.py``)
_DIGEST_FIXED = struct.Struct(">qqqddddqqBqqII")
_CANON_NAN = float("nan")  # one bit pattern for every NaN (a NaN's sign and payload vary)
_DIGEST_BASE = hashlib.blake2b(digest_size=16, person=_DIGEST_PERSON)


def _canon_real(value: float) -> float:
    value = float(value)
    return _CANON_NAN if value != value else value + 0.0  # -0.0 + 0.0 is 0.0


def record_canonical(seq: int, rec: Record) -> bytes:
    """``seq`` and every field of ``rec`` as one canonical byte string: what the checksum and
    the evidence chain (``buffer.chain``) hash, so both see a record alike.

    The four reals are canonicalised inline (as ``_canon_real`` does): this runs once per
    record in every append, where a function call per real was a tenth of the append's time.
    """
    channel = rec.channel.encode("utf-8")
    unit = rec.unit.encode("utf-8")
    mean, low, high, std = float(rec.mean), float(rec.min), float(rec.max), float(rec.std)
    return _DIGEST_FIXED.pack(
        seq, int(rec.start), int(rec.end),
        _CANON_NAN if mean != mean else mean + 0.0, _CANON_NAN if low != low else low + 0.0,
        _CANON_NAN if high != high else high + 0.0, _CANON_NAN if std != std else std + 0.0,
        int(rec.n_valid), int(rec.n_expected), 1 if rec.valid else 0, int(rec.status),
        int(rec.flags), len(channel), len(unit)
    ) + channel + unit


def record_digest(seq: int, rec: Record) -> bytes:
    """16-byte BLAKE2b of ``seq`` and every field of ``rec`` in canonical form."""
    return canonical_digest(record_canonical(seq, rec))


def canonical_digest(canonical: bytes) -> bytes:
    """``record_digest`` from ``record_canonical``'s bytes (computed once by the outbox's
    append, which also chains them)."""
    h = _DIGEST_BASE.copy()  # a copy of a keyed-up hasher: about half the cost of a new one
    h.update(canonical)
    return h.digest()
