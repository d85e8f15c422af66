"""``quantrac centre query``: a station's stored records, as the shared record view shows them.

The filter options, the SQL and the rendering are the ones ``quantrac history`` uses on the
station's own outbox (``protocol.record_filter``, ``buffer.record_select``,
``protocol.record_view``); what is the centre's own is here: ``received`` beside each record
(a backfilled record shows for what it is: received long after its window) and the station
summary of ``centre stations``. Station ids and details of security events are shown escaped
(``protocol.safe_text``): a station chose them.
"""

from __future__ import annotations

import textwrap
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


#: an operator's terminal (often a serial console or a phone's ssh): the default tables fit
WIDTH = 80
#: a station id longer than this goes on a line of its own in ``stations``, so one long id
#: does not push the numbers of every station off an 80-column screen
STATION_CELL = 16


def fit_lines(text: str, width: int = WIDTH) -> str:
    """``text`` with every line longer than ``width`` wrapped (continuations indented), never
    cut: the end of a row is its reason, the part an operator reads it for."""
    out: list[str] = []
    for line in text.splitlines():
        out += textwrap.wrap(line, width, subsequent_indent="      ", break_on_hyphens=False,
                             drop_whitespace=True) if len(line) > width else [line]
    return "".join(f"{line}\n" for line in out)


def render_text(records: Sequence[StoredRecord], tz: ZoneInfo, *, wide: bool = False,
                thresholds: Mapping[int, float] | None = None) -> str:
    """The records as a table: 80 columns by default (a long reason wraps under its row);
    ``wide`` adds min, max, counts, status, seq, ``received`` and the flags, unwrapped."""
    text = record_view.render_text([held(r, tz, text=True) for r in records], tz, wide=wide,
                                   extra_columns=EXTRA_COLUMNS, thresholds=thresholds)
    return text if wide else _wrap_reasons(text)


def _wrap_reasons(text: str, width: int = WIDTH) -> str:
    """The table with each too-long reason (the last column) wrapped under itself: one row
    stays one record's line as far as the reason, and the reason is read whole. A row that is
    too wide before its reason (a station's very long channel name) is left as it is:
    wrapping its cells would break the table, and cutting them would hide what they say."""
    lines = text.splitlines()
    names = next((line for line in lines if line.startswith("time ")), "")
    at = names.rfind("reason")
    if at < 0 or at > width - 12:
        return text
    out: list[str] = []
    for line in lines:
        if len(line) <= width or line.startswith("#") or len(line[:at].rstrip()) > at:
            out.append(line)
            continue
        head, why = line[:at], line[at:]
        if head.rstrip() != head[:at].rstrip() or len(head) > width:
            out.append(line)
            continue
        parts = textwrap.wrap(why, width - at, break_on_hyphens=False) or [""]
        out.append(head + parts[0])
        out += [" " * at + p for p in parts[1:]]
    return "".join(f"{line}\n" for line in out)


def render_stations(summaries: Sequence[StationSummary], now: float, tz: ZoneInfo, *,
                    wide: bool = False, missing: Mapping[str, int] | None = None) -> str:
    """Per station: records held, seq state, last arrival and its age, security events, and
    the records the station flagged over their limit (``exceed``). Without ``wide`` it fits
    80 columns: the last arrival's age only (not its time), a long station id on a line of
    its own above its numbers. ``missing``: per station the seqs still missing
    (``CentreStore.gaps``, as the dashboard counts them); without it, the seqs above
    ``all held to``."""
    rows = [["station", "records", "last seq", "all held to", "missing",
             *(["last received"] if wide else []), "age", "security", "exceed"]]
    alone: dict[int, str] = {}  # row index -> a long station id shown on its own line
    for s in summaries:
        when = None if s.last_received is None else local_time(s.last_received, tz)
        last = ("-" if s.last_received is None else epoch_text(s.last_received) if when is None
                else when.strftime("%Y-%m-%d %H:%M:%S"))
        age = "-" if s.last_received is None else record_view.duration(now - s.last_received)
        station = escape_controls(s.station)
        if not wide and len(station) > STATION_CELL:
            alone[len(rows)] = station
            station = "  ^"  # the id on the line above
        rows.append([station, str(s.records), str(s.last_seq), str(s.contiguous),
                     str(s.last_seq - s.contiguous if missing is None
                         else missing.get(s.station, 0)), *([last] if wide else []), age,
                     str(s.security_events), str(s.exceedances)])
    lines = columns(rows).splitlines()
    out = "".join(f"{alone[i]}\n{line}\n" if i in alone else f"{line}\n"
                  for i, line in enumerate(lines))
    return out if wide else fit_lines(out)


def render_events(events: Sequence[tuple[float, str, str, str]], tz: ZoneInfo, *,
                  wide: bool = False) -> str:
    """The latest security events, one each: time, station, reason, detail (all escaped:
    a station or a forger chose them). Without ``wide`` a long one wraps, continuation lines
    indented, so no continuation can pass for an event of its own."""
    text = "".join(f"security  {iso(t, tz)}  "
                   f"{'  '.join(escape_controls(x) for x in (station, reason, detail))}\n"
                   for t, station, reason, detail in events)
    return text if wide else fit_lines(text)


