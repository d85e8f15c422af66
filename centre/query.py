"""``quantrac centre query``: a station's stored records, as the shared record view shows them.

The filter options, the SQL and the rendering are the ones ``quantrac history`` uses on the
station's own outbox (``protocol.record_filter``, ``buffer.record_select``,
``protocol.record_view``); what is the centre's own is here: ``received`` beside each record
(a backfilled record shows for what it is: received long after its window) and the station
summary of ``centre stations``. Station ids and details of security events are shown escaped
(``protocol.safe_text``): a station chose them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from zoneinfo import ZoneInfo

from centre.store import StationSummary, StoredRecord
from protocol import record_view
from protocol.record_filter import zone as zone
from protocol.record_view import columns, epoch_text, local_time
from protocol.record_view import iso as iso
from protocol.safe_text import escape_controls

#: the centre's own columns after the shared ones
EXTRA_COLUMNS = ("received",)


def held(r: StoredRecord, tz: ZoneInfo, *, text: bool = False) -> record_view.Held:
    """``r`` for the record view; ``received`` in the table as ``HH:MM:SS`` when it is the day
    the window ended (the usual, live case), else with its date."""
    received = iso(r.received, tz)
    if text:
        when, end = local_time(r.received, tz), local_time(r.record.end, tz)
        if when is not None and end is not None:
            received = when.strftime(
                "%H:%M:%S" if when.date() == end.date() else "%Y-%m-%d %H:%M")
    return record_view.Held(r.seq, r.record, (received,))


def render_csv(records: Sequence[StoredRecord], tz: ZoneInfo,
               thresholds: Mapping[int, float] | None = None) -> str:
    return record_view.render_csv([held(r, tz) for r in records], tz, EXTRA_COLUMNS,
                                  thresholds)


def render_text(records: Sequence[StoredRecord], tz: ZoneInfo, *, wide: bool = False,
                thresholds: Mapping[int, float] | None = None) -> str:
    return record_view.render_text([held(r, tz, text=True) for r in records], tz, wide=wide,
                                   extra_columns=EXTRA_COLUMNS, thresholds=thresholds)


def render_stations(summaries: Sequence[StationSummary], now: float, tz: ZoneInfo) -> str:
    """Per station: records held, seq state, last arrival and its age, security events, and
    the records the station flagged over their limit (``exceed``)."""
    rows = [["station", "records", "last seq", "all held to", "missing", "last received",
             "age", "security", "exceed"]]
    for s in summaries:
        when = None if s.last_received is None else local_time(s.last_received, tz)
        last = ("-" if s.last_received is None else epoch_text(s.last_received) if when is None
                else when.strftime("%Y-%m-%d %H:%M:%S"))
        age = "-" if s.last_received is None else _age(now - s.last_received)
        rows.append([escape_controls(s.station), str(s.records), str(s.last_seq),
                     str(s.contiguous), str(s.last_seq - s.contiguous), last, age,
                     str(s.security_events), str(s.exceedances)])
    return columns(rows)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
