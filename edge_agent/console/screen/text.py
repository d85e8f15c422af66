"""Fitting text to a small terminal: cut, wrap (actionable part kept), ages, sparklines.

Pure. Every outside string (a device name, an error from the agent, a log line) passes
:func:`clean` first, so a station or analyser can never put an escape sequence on the
technician's terminal; then :func:`fit` or :func:`wrap` make it at most ``width`` columns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from edge_agent.console.width import wrap as console_wrap
from protocol.record_view import duration
from protocol.safe_text import escape_controls

# an ASCII ramp: vt100 and a 9600-baud line have no block characters to rely on
RAMP = "_.-=+*#"


def clean(value: object) -> str:
    """``value`` as text with every control character escaped (``\\x1b``, ``\\n``)."""
    return escape_controls(str(value))


def fit(line: str, width: int) -> str:
    """``line`` cut to ``width`` columns (no trailing blanks)."""
    return line[:max(0, width)].rstrip()


def wrap(text: str, width: int, indent: int = 2) -> list[str]:
    """``text`` wrapped to ``width`` (:func:`edge_agent.console.width.wrap`, the one wrap
    ``diag`` and ``status`` use), continuation lines indented: an error is shown whole (its
    actionable end is what a cut would lose), never cut."""
    if width <= indent + 4:
        return [fit(text, width)]
    return console_wrap(text, " " * indent, width)


#: a run of blanks this long or longer ncurses skips with a cursor move (vt100's
#: ``ESC [ row ; col H``, ~7 bytes) instead of sending the blanks
_SKIPPED = re.compile(r" {6,}")


def wire_bytes(lines: Sequence[str]) -> int:
    """About how many bytes ncurses sends to paint ``lines`` on a cleared screen: each line's
    characters, a cursor move to its start and for each long run of blanks, and the clear.
    Within a few per cent of what ``bench/console_repaint.py`` counts on the wire."""
    total = 12  # clear screen, attributes, the cursor parked at the end
    for line in lines:
        parts = _SKIPPED.split(line.rstrip())
        if parts != [""]:
            total += 6 + sum(map(len, parts)) + 7 * (len(parts) - 1)
    return total


def unwrap(lines: list[str]) -> list[str]:
    """Lines wrapped for 80 columns (``diag``'s) back into one sentence each (a continuation
    line starts with a blank), to be wrapped again to this terminal's width."""
    out: list[str] = []
    for line in lines:
        if line.startswith(" ") and out:
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return out


def age(t: float | None, now: float) -> str:
    """How long ago ``t`` was, short ("12s", "3m", "2h", "4d"); "never" for None: the
    status view's wording (``protocol.record_view.age``, compact) without its " ago", which
    a column header says once."""
    return "never" if t is None else duration(now - t, compact=True)


def number(v: object) -> str:
    """A value for a column: "-" when there is none (None, NaN), else 6 significant digits."""
    if not isinstance(v, int | float) or isinstance(v, bool) or (
            isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.6g}"


def sparkline(points: Sequence[tuple[float, float]], now: float, span: float,
              width: int, windows: Sequence[tuple[float, float, float]] = ()) -> str:
    """The last ``span`` seconds of ``points`` (t, value) and ``windows`` (start, end, mean:
    a record, which stands for every cell its window overlaps, so twelve 5-minute records
    fill an hour's line without gaps) as ``width`` ASCII cells, oldest left: each cell is
    the mean of its slice of time scaled between the minimum and maximum shown, a blank
    where there is no value (offline, or no record and before the console started)."""
    if width <= 0:
        return ""
    cells: list[list[float]] = [[] for _ in range(width)]
    start = now - span
    for t, v in points:
        if start <= t <= now and math.isfinite(v):
            cells[min(width - 1, int((t - start) / span * width))].append(v)
    for t0, t1, v in windows:
        if t1 > start and t0 <= now and math.isfinite(v):
            first = max(0, int((t0 - start) / span * width))
            last = min(width - 1, math.ceil((t1 - start) / span * width) - 1)
            for i in range(first, max(first, last) + 1):
                cells[min(i, width - 1)].append(v)
    means = [math.fsum(c) / len(c) if c else None for c in cells]
    known = [m for m in means if m is not None]
    if not known:
        return " " * width
    lo, hi = min(known), max(known)
    top = len(RAMP) - 1
    out = []
    for m in means:
        if m is None:
            out.append(" ")
        else:
            out.append(RAMP[round((m - lo) / (hi - lo) * top) if hi > lo else top // 2])
    return "".join(out)
