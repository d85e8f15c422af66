"""``quantrac centre query``: a station's stored records over a time range, as text or CSV.

Times on the command line and in the output are in the station's zone (default
Asia/Ho_Chi_Minh, UTC+7), as operators read them; the store keeps UTC epoch seconds.
``received`` beside ``start`` shows a backfilled record for what it is.

What a station chose (units; channel names; station ids and details in security events) is
shown to people, so it is never printed raw: in the text tables every control character is
escaped (ESC, BEL and CR would act on the operator's terminal, ``protocol.safe_text``), and in
CSV a text cell that a spreadsheet would take for a formula (``=HYPERLINK(...)``,
``-2+3+cmd|'/Ccalc'!A0``) gets a leading ``'``. Only the station's text cells get that
prefix; the numbers are ours (``repr`` of a float), so a negative mean stays a number.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from centre.store import StationSummary, StoredRecord
from protocol.cli_error import UsageError
from protocol.model import RecordFlag, Status
from protocol.safe_text import csv_cell, escape_controls

COLUMNS = (
    "start", "end", "channel", "mean", "min", "max", "std", "n_valid", "n_expected",
    "valid", "status", "unit", "flags", "seq", "received",
)  # fmt: skip


def zone(name: str) -> ZoneInfo:
    """The zone, or ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"--zone: {name!r} is not an IANA time zone (e.g. Asia/Ho_Chi_Minh)"
        ) from None


def parse_time(text: str, tz: ZoneInfo, what: str) -> float:
    """``2026-11-23``, ``2026-11-23T07:30``, with or without offset (none: ``tz``), or epoch s."""
    raw = text.strip()
    if raw.replace(".", "", 1).isdigit():
        return float(raw)
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(
            f"{what}: {text!r} is not a time (use 2026-11-23, 2026-11-23T07:30, "
            "2026-11-23T07:30+07:00 or epoch seconds)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


def local_time(t: float, tz: ZoneInfo) -> dt.datetime | None:
    """``t`` in ``tz``, or None where a datetime cannot hold it (before year 1, after 9999).

    The receiver refuses such records now, but a store written before it did may hold one,
    and one row must not make a whole station's history unreadable."""
    try:
        return dt.datetime.fromtimestamp(t, tz)
    except (OverflowError, OSError, ValueError):
        return None


def _epoch(t: float) -> str:
    return f"@{t:.0f}" if math.isfinite(t) else f"@{t}"


def iso(t: float, tz: ZoneInfo) -> str:
    when = local_time(t, tz)
    return _epoch(t) if when is None else when.isoformat(timespec="seconds")


def _num(x: float) -> str:
    return "" if math.isnan(x) else repr(x)


def row(r: StoredRecord, tz: ZoneInfo) -> list[str]:
    rec = r.record
    return [
        iso(rec.start, tz), iso(rec.end, tz), csv_cell(rec.channel), _num(rec.mean),
        _num(rec.min), _num(rec.max), _num(rec.std), str(rec.n_valid), str(rec.n_expected),
        "1" if rec.valid else "0", Status(rec.status).name.lower(), csv_cell(rec.unit),
        str(int(rec.flags)), str(r.seq), iso(r.received, tz),
    ]  # fmt: skip


def render_csv(records: Sequence[StoredRecord], tz: ZoneInfo) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(row(r, tz) for r in records)
    return out.getvalue()


def _short(x: float) -> str:
    """At most 3 decimals, trailing zeros dropped: what an operator reads, not what is stored."""
    if math.isnan(x):
        return "-"
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _flag_names(flags: int) -> str:
    names = [f.name.lower() for f in RecordFlag if f and f.name and flags & f]
    return ",".join(names) if names else "-"


TEXT_COLUMNS = (
    "start", "end", "channel", "mean", "min", "max", "n/exp", "valid", "status", "unit",
    "seq", "received", "flags",
)  # fmt: skip


def text_row(r: StoredRecord, tz: ZoneInfo) -> list[str]:
    rec = r.record
    start, end, received = (local_time(t, tz) for t in (rec.start, rec.end, r.received))
    if start is None or end is None or received is None:  # a row from before the range check
        return [iso(rec.start, tz), iso(rec.end, tz), *text_row_values(r), iso(r.received, tz),
                _flag_names(int(rec.flags))]
    return [
        start.strftime("%Y-%m-%d %H:%M:%S"),
        end.strftime("%H:%M:%S" if end.date() == start.date() else "%Y-%m-%d %H:%M:%S"),
        *text_row_values(r),
        received.strftime("%H:%M:%S" if received.date() == end.date() else "%Y-%m-%d %H:%M"),
        _flag_names(int(rec.flags)),
    ]


def text_row_values(r: StoredRecord) -> list[str]:
    """The columns of a text row between its times: channel to seq."""
    rec = r.record
    return [
        rec.channel, _short(rec.mean), _short(rec.min), _short(rec.max),
        f"{rec.n_valid}/{rec.n_expected}", "yes" if rec.valid else "no",
        Status(rec.status).name.lower(), rec.unit, str(r.seq),
    ]  # fmt: skip


def render_text(records: Sequence[StoredRecord], tz: ZoneInfo) -> str:
    """A table for people: local times, values rounded for reading (CSV keeps full precision)."""
    offset = dt.datetime.now(tz).strftime("%z")
    head = f"# {len(records)} records; times in {tz.key} (UTC{offset[:3]}:{offset[3:]})\n"
    rows = [list(TEXT_COLUMNS), *([escape_controls(c) for c in text_row(r, tz)] for r in records)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TEXT_COLUMNS))]
    return head + "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )


def render_stations(summaries: Sequence[StationSummary], now: float, tz: ZoneInfo) -> str:
    """Per station: records held, seq state, last arrival and its age, security events."""
    rows = [["station", "records", "last seq", "all held to", "missing", "last received",
             "age", "security"]]
    for s in summaries:
        when = None if s.last_received is None else local_time(s.last_received, tz)
        last = ("-" if s.last_received is None else _epoch(s.last_received) if when is None
                else when.strftime("%Y-%m-%d %H:%M:%S"))
        age = "-" if s.last_received is None else _age(now - s.last_received)
        rows.append([escape_controls(s.station), str(s.records), str(s.last_seq),
                     str(s.contiguous), str(s.last_seq - s.contiguous), last, age,
                     str(s.security_events)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
