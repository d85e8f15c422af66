"""Records as people read them: the columns of ``centre query`` and ``quantrac history``.

Both commands (and whatever shows records next: pages, exports) render through here, so an
invalid window gives the same reason, the same flag names and the same ``yes``/``no`` on the
station's console as at the centre.

Times. The stores keep UTC epoch seconds; people read the station's zone (default
Asia/Ho_Chi_Minh, UTC+7). The table's ``time`` is the window's start in that zone, and its
heading names the zone and its offset; the CSV writes ISO 8601 with the offset
(``2026-09-21T21:15:00+07:00``), which says the zone by itself and sorts as text. A time a
``datetime`` cannot hold (a row from before the centre's range check) is shown as ``@<epoch>``
rather than hiding the rest of the station's history.

The reason of an invalid window is worked out from what the record carries, because that is
all the centre has: ``n_valid``/``n_expected``, the dominant status (the most frequent status
of the window's samples; OFFLINE when nothing arrived) and the flags. So a window that failed
on coverage while measuring reads ``coverage 44/60 < 75%``; one where calibration took most of
the window reads ``calibrating 12/60 valid``: the record keeps no count of the calibrating
samples, only that calibrating was the most frequent status and how many samples were valid,
so the text says exactly that. ``offline`` is a window with no valid sample in which the
analyser did not answer (or nothing arrived). Coverage is judged with the station's threshold
when the caller knows it (``thresholds``: window width to fraction; ``quantrac history
--config`` reads the station's rules), else the default 75 %; a fraction of 0 (the 40 CFR
60.13(h) quadrant rule) has no coverage threshold, and such a window reads ``rule not met``.

What a station chose (channel names, units) is shown escaped: control characters made visible
in the table (``escape_controls``), formula starts neutralised in CSV (``csv_cell``). Numbers
are ours and stay numbers. Pure: text in, text out.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from protocol.model import Record, RecordFlag, Status
from protocol.safe_text import csv_cell, escape_controls

#: the coverage threshold when the station's rule is not known (the averaging's default)
DEFAULT_MIN_FRACTION = 0.75
#: between flag names: no comma, so a CSV cell needs no quoting and ``split("|")`` reads it
FLAG_SEPARATOR = "|"

TEXT_COLUMNS = ("time", "win", "channel", "value", "unit", "valid", "reason")
WIDE_COLUMNS = ("time", "win", "channel", "value", "min", "max", "unit", "n/exp", "valid",
                "status", "seq")  # then the store's own columns, "flags", "reason"
CSV_COLUMNS = (
    "start", "end", "window_s", "channel", "mean", "min", "max", "std", "n_valid",
    "n_expected", "valid", "reason", "status", "unit", "flags", "seq",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Held:
    """A record as one store holds it: its seq and that store's own cells (already text,
    named by the caller's ``extra_columns``: the centre's arrival time, the outbox state)."""

    seq: int
    record: Record
    extra: tuple[str, ...] = ()


def flag_names(flags: int) -> str:
    """``clock_unsynced|partial``; a bit no release defines shows as its hex value; ``""``
    when there is none."""
    names = [f.name.lower() for f in RecordFlag if f and f.name and flags & f]
    unknown = int(flags) & ~sum(int(f) for f in RecordFlag)
    if unknown:
        names.append(f"{unknown:#x}")
    return FLAG_SEPARATOR.join(names)


def _needed(n_expected: int, min_fraction: float) -> int:
    """Valid samples a window needs, as the averaging counts it (``ValidityRule.min_valid``)."""
    return max(1, math.ceil(min_fraction * n_expected - 1e-9))


def reason(rec: Record, min_fraction: float = DEFAULT_MIN_FRACTION) -> str:
    """Why ``rec`` is not valid, for people (module docstring); ``""`` for a valid record,
    except one the station flagged over its limit: ``over limit`` (the table has no flags
    column, and that is the record a reader of it must not miss)."""
    if rec.valid:
        return "over limit" if rec.flags & RecordFlag.EXCEEDANCE else ""
    n, expected = rec.n_valid, rec.n_expected
    status = Status(rec.status)
    counts = f"{n}/{expected}"
    short = n < _needed(expected, min_fraction) if min_fraction > 0 else n == 0
    causes: list[str] = []
    if n == 0:
        causes.append("no valid value" if status is Status.MEASURING else status.name.lower())
    elif short and status is Status.MEASURING:
        causes.append(f"coverage {counts} < {min_fraction * 100:g}%")
    elif short:
        causes.append(f"{status.name.lower()} {counts} valid")
    elif rec.flags & RecordFlag.CLOCK_JUMP:
        return "clock jump"  # the window was stored before: this second record never counts
    elif rec.flags & RecordFlag.O2_NORMALISED:
        return "O2 normalisation failed"  # e.g. O2 at 21 % with the stack shut down
    elif not rec.flags & RecordFlag.PARTIAL:
        return f"rule not met {counts} valid"
    for flag, text in ((RecordFlag.CLOCK_JUMP, "clock jump"), (RecordFlag.PARTIAL, "partial")):
        if rec.flags & flag:
            causes.append(text)
    return "; ".join(causes)


def window_label(seconds: int) -> str:
    """``10s``, ``1m``, ``5m``, ``1h``, ``1d``: a window's length in the fewest characters."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration(seconds: float, *, compact: bool = False) -> str:
    """A length of time as people say it: ``45 s``, ``12 min``, ``5 h``, ``3 d``.

    One rounding for every display (status, console, pages, ``centre stations``), so an age
    reads the same everywhere; ``compact`` (``45s``, ``12m``) for the 80-column tables.
    """
    s = max(0.0, float(seconds))
    for limit, div, unit, short in ((120, 1, "s", "s"), (7200, 60, "min", "m"),
                                    (172800, 3600, "h", "h")):
        if s < limit:
            return f"{s / div:.0f}{short}" if compact else f"{s / div:.0f} {unit}"
    return f"{s / 86400:.0f}d" if compact else f"{s / 86400:.0f} d"


def age(t: float | None, now: float, *, compact: bool = False) -> str:
    """How long ago ``t`` was (``never`` for None): ``45 s ago``, or ``45s ago`` compact."""
    if t is None:
        return "never"
    return f"{duration(now - float(t), compact=compact)} ago"


def local_time(t: float, tz: ZoneInfo) -> dt.datetime | None:
    """``t`` in ``tz``, or None where a datetime cannot hold it (before year 1, after 9999)."""
    try:
        return dt.datetime.fromtimestamp(t, tz)
    except (OverflowError, OSError, ValueError):
        return None


def epoch_text(t: float) -> str:
    """``@1790000100``: a time no ``datetime`` holds, shown as what the store says."""
    return f"@{t:.0f}" if math.isfinite(t) else f"@{t}"


def iso(t: float, tz: ZoneInfo) -> str:
    """ISO 8601 with the zone's offset, or ``@<epoch>`` (``local_time``)."""
    when = local_time(t, tz)
    return epoch_text(t) if when is None else when.isoformat(timespec="seconds")


def zone_heading(tz: ZoneInfo, at: float | None) -> str:
    """``Asia/Ho_Chi_Minh (UTC+07:00)``: the offset at ``at`` (a zone's offset has changed in
    history, so it is taken at a shown time, never at the reader's clock); the name alone
    when nothing is shown."""
    when = None if at is None else local_time(at, tz)
    if when is None:
        return tz.key
    offset = when.strftime("%z")
    return f"{tz.key} (UTC{offset[:3]}:{offset[3:]})"


def _num(x: float) -> str:
    return "" if math.isnan(x) else repr(x)


def _short(x: float) -> str:
    """At most 3 decimals, trailing zeros dropped: what an operator reads, not what is stored."""
    if math.isnan(x):
        return "-"
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _fraction(thresholds: Mapping[int, float] | None, rec: Record) -> float:
    width = rec.end - rec.start
    return DEFAULT_MIN_FRACTION if thresholds is None else thresholds.get(
        width, DEFAULT_MIN_FRACTION)


def csv_row(held: Held, tz: ZoneInfo, thresholds: Mapping[int, float] | None = None) -> list[str]:
    """One CSV row (``CSV_COLUMNS`` then the store's own cells): full precision, names, yes/no."""
    rec = held.record
    return [
        iso(rec.start, tz), iso(rec.end, tz), str(rec.end - rec.start), csv_cell(rec.channel),
        _num(rec.mean), _num(rec.min), _num(rec.max), _num(rec.std), str(rec.n_valid),
        str(rec.n_expected), "yes" if rec.valid else "no", reason(rec, _fraction(thresholds, rec)),
        Status(rec.status).name.lower(), csv_cell(rec.unit), flag_names(int(rec.flags)),
        str(held.seq), *(csv_cell(x) for x in held.extra),
    ]  # fmt: skip


def render_csv(rows: Sequence[Held], tz: ZoneInfo, extra_columns: Sequence[str] = (),
               thresholds: Mapping[int, float] | None = None) -> str:
    """A heading row, then one row per record."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *extra_columns])
    writer.writerows(csv_row(h, tz, thresholds) for h in rows)
    return out.getvalue()


def _time_cell(t: float, tz: ZoneInfo, seconds: bool) -> str:
    when = local_time(t, tz)
    if when is None:
        return epoch_text(t)
    return when.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def text_row(held: Held, tz: ZoneInfo, *, wide: bool = False, seconds: bool = False,
             thresholds: Mapping[int, float] | None = None) -> list[str]:
    """One table row, unescaped (``render_text`` escapes): ``TEXT_COLUMNS``, or with ``wide``
    ``WIDE_COLUMNS``, the store's own cells, flags and reason."""
    rec = held.record
    why = reason(rec, _fraction(thresholds, rec))
    head = [_time_cell(rec.start, tz, seconds), window_label(rec.end - rec.start), rec.channel,
            _short(rec.mean)]
    valid = "yes" if rec.valid else "no"
    if not wide:
        return [*head, rec.unit, valid, why]
    return [*head, _short(rec.min), _short(rec.max), rec.unit, f"{rec.n_valid}/{rec.n_expected}",
            valid, Status(rec.status).name.lower(), str(held.seq), *held.extra,
            flag_names(int(rec.flags)) or "-", why]


def render_text(rows: Sequence[Held], tz: ZoneInfo, *, wide: bool = False,
                extra_columns: Sequence[str] = (),
                thresholds: Mapping[int, float] | None = None) -> str:
    """A table for people: a ``#`` heading with the count and the zone, the column names, a
    row per record. Without ``wide`` it fits 80 columns for the usual channel names and
    units (time, window, channel, value, unit, valid, reason); ``wide`` adds min, max,
    counts, status, seq, the store's own columns and the flag names. Seconds are shown only
    when some window does not start on a minute."""
    seconds = any(h.record.start % 60 for h in rows)
    shown_zone = zone_heading(tz, rows[0].record.start if rows else None)
    heading = f"# {len(rows)} records; times in {shown_zone}\n"
    names = [*WIDE_COLUMNS, *extra_columns, "flags", "reason"] if wide else list(TEXT_COLUMNS)
    table = [names, *([escape_controls(c) for c in text_row(
        h, tz, wide=wide, seconds=seconds, thresholds=thresholds)] for h in rows)]
    return heading + columns(table)


def columns(table: Sequence[Sequence[str]]) -> str:
    """Rows of cells as aligned text: two spaces between columns, no trailing blanks."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
        for r in table
    )
