"""Which records a reader asks for: one filter model and one set of command-line options.

``quantrac centre query`` (the centre's store) and ``quantrac history`` (the station's own
outbox) ask the same questions: a station's records, of one channel, in a time range, of one
window width (a 24 h pull otherwise mixes 60, 300, 3600 and 86400 s windows), only the invalid
ones. The options are added and read here, so both commands spell and check them alike, and
each store turns the one ``RecordFilter`` into its SQL in one place (``buffer.record_select``).

Times on the command line are in the station's zone unless they carry an offset, or are epoch
seconds. ``--from``/``--to`` select windows by their *start*: ``[from, to)``. ``--last 24h``
is the span before ``--to`` (or before now: the clock is the caller's, passed in).

An id or channel the store never held is a typo far more often than an empty period, so when
nothing matches, the caller asks ``require_known`` whether the name is known at all and says so,
naming a few that are (``unknown station 'hn-ww-01x' (known: HN-WW-01, ...)``) instead of
answering ``# 0 records``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocol.cli_error import UsageError
from protocol.safe_text import escape_controls

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)\s*(s|min|m|h|d)?")
#: how many known names an "unknown ..." message lists
SHOWN_KNOWN = 5


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Records whose window starts in ``[t0, t1)`` (UTC epoch s; None: open), of ``station``
    (the centre's store; the outbox is one station's), ``channel``, a ``window_s`` long;
    ``after_seq``: only those stored after that seq (a page that keeps what it read asks only
    for what is new; seqs only grow, whatever window a late record belongs to)."""

    station: str | None = None
    channel: str | None = None
    t0: float | None = None
    t1: float | None = None
    window_s: int | None = None
    invalid_only: bool = False
    after_seq: int | None = None


def zone(name: str) -> ZoneInfo:
    """The zone, or UsageError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"--zone: {name!r} is not an IANA time zone (e.g. Asia/Ho_Chi_Minh)"
        ) from None


def parse_time(text: str, tz: ZoneInfo, what: str, *, end: bool = False) -> float:
    """``2026-11-23``, ``2026-11-23T07:30``, with or without offset (none: ``tz``), or epoch s.

    ``end`` (a ``--to``): a date alone means the end of that day, so ``--from 2026-11-01 --to
    2026-11-30`` is the whole of November, as a person reading a calendar means it; a time is
    taken as given (the period ends before it). Every command with ``--from``/``--to``
    (history, centre query, export, circular10) parses them here, so they agree.
    """
    raw = text.strip()
    if raw.replace(".", "", 1).isdigit():
        return float(raw)
    if end and len(raw) == 10:
        try:
            day = dt.date.fromisoformat(raw)
        except ValueError:
            pass
        else:
            return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz).timestamp()
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


def parse_duration(text: str, what: str) -> int:
    """``300`` (seconds), ``90s``, ``5m``, ``24h``, ``7d`` as whole seconds above 0."""
    found = _DURATION.fullmatch(text.strip())
    seconds = int(found.group(1)) * _UNITS[found.group(2) or "s"] if found else 0
    if seconds <= 0:
        raise UsageError(f"{what}: {text!r} is not a duration (use 300, 5m, 24h or 7d)")
    return seconds


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The filter and output options both record commands take."""
    p.add_argument("--channel", help="only this channel (Circular 10 symbol, e.g. COD)")
    p.add_argument("--from", dest="t_from", help="windows starting at or after this time, e.g. "
                   "2026-11-23 or 2026-11-23T07:00 (station zone unless an offset is given)")
    p.add_argument("--to", dest="t_to", help="windows starting before this time (same forms; "
                   "a date alone includes that day)")
    p.add_argument("--last", metavar="SPAN", help="the span before --to (or now): 24h, 90m, 7d")
    p.add_argument("--window", metavar="SECONDS", help="only windows this long: 300 or 5m, "
                   "3600 or 1h (default: every window width)")
    p.add_argument("--invalid", action="store_true", help="only invalid windows")
    p.add_argument("--format", choices=("text", "csv"), default="text")
    p.add_argument("--wide", action="store_true", help="text: also min, max, counts, status, "
                   "seq, flags (CSV always has them)")
    p.add_argument("--zone", help=f"time zone for input and output (default: the station's, "
                   f"else {DEFAULT_ZONE})")


def from_args(args: argparse.Namespace, tz: ZoneInfo, now: float,
              station: str | None = None) -> RecordFilter:
    """The filter the options of ``add_arguments`` ask for (``now``: the caller's clock)."""
    if args.last and args.t_from:
        raise UsageError("--last and --from both give the start: use one of them")
    t1 = parse_time(args.t_to, tz, "--to", end=True) if args.t_to else None
    t0 = parse_time(args.t_from, tz, "--from") if args.t_from else None
    if args.last:
        t0 = (now if t1 is None else t1) - parse_duration(args.last, "--last")
    if t0 is not None and t1 is not None and t0 >= t1:
        raise UsageError(f"--to {args.t_to!r} is not after the start of the range")
    window = parse_duration(args.window, "--window") if args.window else None
    return RecordFilter(station, args.channel, t0, t1, window, bool(args.invalid))


def require_known(kind: str, given: str, known: Sequence[str], where: str) -> None:
    """UsageError ``<where>: unknown station 'X' (known: A, B, ...)`` unless ``given`` is known.

    The closest names come first (a typo is the usual cause), then the rest in order; every
    name is escaped, since ids and channels came from stations."""
    if given in known:
        return
    folded = {k.casefold(): k for k in known}
    close = [folded[k] for k in difflib.get_close_matches(given.casefold(), list(folded), n=3)]
    ordered = [*close, *(k for k in sorted(known) if k not in close)]
    shown = ", ".join(escape_controls(k) for k in ordered[:SHOWN_KNOWN])
    more = f", ... {len(known)} in all" if len(known) > SHOWN_KNOWN else ""
    held = f"known: {shown}{more}" if known else "it holds none"
    raise UsageError(f"{where}: unknown {kind} '{escape_controls(given)}' ({held})")
