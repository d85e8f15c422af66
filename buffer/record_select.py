"""The one SQL for "which records": a ``RecordFilter`` as a WHERE clause on the record columns.

The centre's store and the station's outbox keep records in the columns of ``buffer.rows``
(the centre adds ``station``), so the question "these records, of this channel and window
width, in this range, only the invalid ones" is the same SQL on both; each store adds only its
table and its own columns. Windows are selected by their start, ``[t0, t1)``, and come back by
start, then window width (a day's record after the hour's and the five minutes' starting at
the same time), channel and seq.
"""

from __future__ import annotations

import math
from typing import Any

from protocol.record_filter import RecordFilter

#: SQLite INTEGER bounds for an open end of the range
_LOWEST = -(1 << 62)
_HIGHEST = 1 << 62

ORDER = 'ORDER BY start, "end" - start, channel, seq'


def where(f: RecordFilter, *, by_station: bool) -> tuple[str, list[Any]]:
    """``(clause, params)`` for ``WHERE <clause>``; ``by_station`` for a store of many
    stations (the centre's), where ``f.station`` is required."""
    clauses = ["start >= ?", "start < ?"]
    params: list[Any] = [
        _LOWEST if f.t0 is None else math.ceil(f.t0),
        _HIGHEST if f.t1 is None else math.ceil(f.t1),
    ]
    if by_station:
        if f.station is None:
            raise ValueError("a store of many stations is asked for one station's records")
        clauses.insert(0, "station = ?")
        params.insert(0, f.station)
    if f.channel is not None:
        clauses.append("channel = ?")
        params.append(f.channel)
    if f.window_s is not None:
        clauses.append('"end" - start = ?')
        params.append(f.window_s)
    if f.invalid_only:
        clauses.append("valid = 0")
    if f.after_seq is not None:
        clauses.append("seq > ?")
        params.append(f.after_seq)
    return " AND ".join(clauses), params
