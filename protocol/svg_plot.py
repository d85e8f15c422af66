"""A channel's averages as an SVG plot, rendered on the server: the station page and the
centre dashboard draw every plot here.

Why server-side SVG from our own small module, not a JavaScript plotting library: it works
offline (stations and many centres have no internet, so no CDN), there is nothing to vendor
and keep patched, the browser runs no script at all (so the pages can forbid scripts with a
Content-Security-Policy), a Pi-class CPU renders 30 channels x 7 days of 5-minute windows
well inside a second (about 60 000 windows: one pass, one string join, coordinates rounded to
0.1 px), and a test reads the plot as text: each shaded window is an element carrying its
times and its reason.

What is drawn. The valid windows' means as a line, broken wherever a window is invalid or
missing (a line across a gap would draw values nobody measured). Invalid windows are shaded
over the full height; consecutive invalid windows with the same reason are one shaded band
(a day offline is one band, not 288), and each band has a ``<title>``, which the browser
shows on hover: ``2026-11-23 07:30-07:35 coverage 44/60 < 75%``. The band also carries
``data-start``/``data-end`` (epoch s, the first window's start and the last one's end),
``data-count`` (how many windows) and ``data-reason``, the reason text exactly as
``protocol.record_view.reason`` gave it, so a test compares the page with ``quantrac
history``/``centre query`` for the same period. A limit (the QCVN column's value), when
given, is a dashed line. The y axis spans the valid means
(and the limit); time labels are in the station's zone.

API (pure: numbers and text in, SVG text out; every outside string escaped):

* ``Window(start, end, mean, valid, reason)``: one record's window (epoch s), its mean (NaN
  when none), whether it counts, and why not (``record_view.reason``; ``""`` when valid).
* ``from_record(rec, reason) -> Window``.
* ``plot(windows, t0, t1, tz, *, label="", unit="", limit=None, width=640, height=170)
  -> Safe``: the ``<svg>`` element, ``windows`` sorted by start; only windows overlapping
  ``[t0, t1)`` are drawn.
* ``bands(windows) -> list[Band]``: the merged invalid bands, as ``plot`` shades them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from protocol.html_page import Safe, esc
from protocol.model import Record

#: room for the y labels on the left and the time labels below
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 8, 8, 20


@dataclass(frozen=True, slots=True)
class Window:
    """One averaging window as a plot needs it (epoch s; ``mean`` NaN when none)."""

    start: float
    end: float
    mean: float
    valid: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Band:
    """Consecutive invalid windows with one reason: ``[start, end)``, ``count`` windows."""

    start: float
    end: float
    reason: str
    count: int


def from_record(rec: Record, reason: str) -> Window:
    """The plot's view of ``rec``; ``reason`` as ``record_view.reason`` gives it."""
    return Window(float(rec.start), float(rec.end), float(rec.mean), bool(rec.valid), reason)


def bands(windows: Sequence[Window]) -> list[Band]:
    """The invalid windows merged where one ends where the next starts with the same reason."""
    out: list[Band] = []
    for w in windows:
        if w.valid:
            continue
        last = out[-1] if out else None
        if last is not None and last.reason == w.reason and last.end >= w.start:
            out[-1] = Band(last.start, max(last.end, w.end), last.reason, last.count + 1)
        else:
            out.append(Band(w.start, w.end, w.reason, 1))
    return out


def _short(x: float) -> str:
    text = f"{x:.3g}" if abs(x) < 1e4 else f"{x:.0f}"
    return text


def _span_text(start: float, end: float, tz: ZoneInfo) -> str:
    a = dt.datetime.fromtimestamp(start, tz)
    b = dt.datetime.fromtimestamp(end, tz)
    tail = b.strftime("%H:%M") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M")
    return f"{a:%Y-%m-%d %H:%M}-{tail}"


def _ticks(t0: float, t1: float, tz: ZoneInfo) -> list[tuple[float, str]]:
    """Local midnights for a long span (labelled by date), else every few hours."""
    span = t1 - t0
    step_h = 24 if span > 2 * 86400 else 6 if span > 12 * 3600 else 2 if span > 4 * 3600 else 1
    start = dt.datetime.fromtimestamp(t0, tz).replace(minute=0, second=0, microsecond=0)
    if step_h == 24:
        start = start.replace(hour=0)
    else:
        start = start.replace(hour=start.hour - start.hour % step_h)
    out = []
    when = start
    for _ in range(64):
        t = when.timestamp()
        if t >= t1:
            break
        if t >= t0:
            out.append((t, f"{when:%m-%d}" if step_h == 24 else f"{when:%H:%M}"))
        # wall-clock steps in the zone (a day is 24 h here: the zones we serve keep no DST)
        when = (when + dt.timedelta(hours=step_h)).astimezone(tz)
    return out


#: the largest value drawn as it is: a plot of +-1e308 (an analyser's garbage that the
#: station still marked valid) overflowed its range to inf and drew NaN coordinates, so the
#: browser dropped the whole line; beyond this a value is drawn at this height (the table and
#: the hover text keep the true number)
_PLOT_MAX = 1e300


def _clip(v: float) -> float:
    return max(-_PLOT_MAX, min(_PLOT_MAX, v))


def plot(windows: Sequence[Window], t0: float, t1: float, tz: ZoneInfo, *, label: str = "",
         unit: str = "", limit: float | None = None, width: int = 640,
         height: int = 170) -> Safe:
    """The ``<svg>`` of ``windows`` (sorted by start) over ``[t0, t1)`` (module docstring)."""
    if not t1 > t0:
        raise ValueError(f"plot: the period [{t0}, {t1}) is empty")
    shown = [w for w in windows if w.end > t0 and w.start < t1]
    values = [_clip(w.mean) for w in shown if w.valid and math.isfinite(w.mean)]
    if limit is not None and math.isfinite(limit):
        values.append(_clip(limit))
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    sx = plot_w / (t1 - t0)
    sy = plot_h / (hi - lo)

    def x(t: float) -> float:
        return _LEFT + (min(max(t, t0), t1) - t0) * sx

    def y(v: float) -> float:
        return _TOP + (hi - _clip(v)) * sy

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'font-family="sans-serif" font-size="11" '
             f'aria-label="{esc(label)}">']
    for b in bands(shown):
        x0, x1 = x(b.start), x(b.end)
        hover = f"{_span_text(b.start, b.end, tz)} {b.reason}"
        if b.count > 1:
            hover += f" ({b.count} windows)"
        parts.append(f'<rect class="invalid" fill="#e0867e" fill-opacity="0.45" '
                     f'x="{x0:.1f}" y="{_TOP}" '
                     f'width="{max(x1 - x0, 0.6):.1f}" height="{plot_h}" '
                     f'data-start="{b.start:.0f}" data-end="{b.end:.0f}" '
                     f'data-count="{b.count}" data-reason="{esc(b.reason)}">'
                     f'<title>{esc(hover)}</title></rect>')
    bottom = _TOP + plot_h
    parts.append(f'<path class="axis" fill="none" stroke="#9aa3ad" '
                 f'd="M{_LEFT} {_TOP}V{bottom}H{width - _RIGHT}"/>')
    for t, text in _ticks(t0, t1, tz):
        parts.append(f'<text x="{x(t):.1f}" y="{height - 6}" text-anchor="middle">{text}</text>')
    for v in (lo + pad, hi - pad):
        parts.append(f'<text x="{_LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end">'
                     f'{_short(v)}</text>')
    if unit:
        parts.append(f'<text x="4" y="{height - 6}">{esc(unit[:7])}</text>')  # the label room
    if limit is not None and math.isfinite(limit):
        parts.append(f'<path class="limit" fill="none" stroke="#b3261e" '
                     f'stroke-dasharray="4 3" d="M{_LEFT} {y(limit):.1f}H{width - _RIGHT}">'
                     f'<title>limit {_short(limit)} {esc(unit)}</title></path>')
    path: list[str] = []
    pen_up = True
    last_end: float | None = None
    for w in shown:
        if not (w.valid and math.isfinite(w.mean)) or (last_end is not None
                                                        and w.start > last_end):
            pen_up = True
        if w.valid and math.isfinite(w.mean):
            mid = (w.start + w.end) / 2
            path.append(f"{'M' if pen_up else 'L'}{x(mid):.1f} {y(w.mean):.1f}")
            pen_up = False
        last_end = w.end
    if path:
        parts.append(f'<path class="line" fill="none" stroke="#1d5f9e" stroke-width="1.2" '
                     f'd="{"".join(path)}"/>')
    parts.append("</svg>")
    return Safe("".join(parts))
