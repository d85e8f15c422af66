"""One station's dashboard page: its state, seqs, security events and a plot per channel.

The plots are the station page's (``protocol.svg_plot``): one window width (``window``,
default the narrowest the station sent in the period), the valid means as a line, invalid
windows shaded with the reason ``centre query`` prints for them (``protocol.record_view.
reason`` with the default coverage threshold: the centre does not know each station's rule,
so it says what ``centre query`` says). The records come from ``CentreStore.select``, the very
query ``centre query --from --to --window`` runs (``select_rows``: its rows unconverted).
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from buffer.rows import row_record
from centre.store import StationSummary
from centre.web.overview import NAV, Row
from protocol import svg_plot
from protocol.html_page import Safe, el, page, table, td
from protocol.record_view import iso, reason, window_label

#: the station's newest security events on its page (the count of all is in the table)
SHOWN_EVENTS = 50


@dataclass(frozen=True)
class Period:
    t0: float
    t1: float
    window_s: int | None  # None: the narrowest found


def plots(rows: Sequence[tuple[Any, ...]], period: Period, tz: ZoneInfo) -> list[Safe]:
    """A card per channel: heading, the SVG, and the count of invalid windows. ``rows`` are
    ``CentreStore.select_rows``'s; only an invalid one becomes a ``Record`` (for its reason):
    the page's CPU budget is one second for 60,000 windows."""
    by_channel: dict[str, list[svg_plot.Window]] = {}
    units: dict[str, str] = {}
    nan = math.nan
    for row in rows:
        rec = row[2:-2]  # channel, start, end, mean, min, max, std, n_valid, n_exp, valid...
        channel, valid = rec[0], bool(rec[9])
        mean = nan if rec[3] is None else float(rec[3])
        why = "" if valid else reason(row_record(rec))
        by_channel.setdefault(channel, []).append(
            svg_plot.Window(float(rec[1]), float(rec[2]), mean, valid, why))
        units[channel] = rec[11]
    cards = []
    for channel in sorted(by_channel):
        windows, unit = by_channel[channel], units[channel]
        invalid = sum(1 for w in windows if not w.valid)
        svg = svg_plot.plot(windows, period.t0, period.t1, tz, label=channel, unit=unit)
        cards.append(el("div", el("h3", f"{channel} ({unit})"), svg,
                        el("p", f"{len(windows)} windows, {invalid} invalid", class_="muted"),
                        class_="card", data_channel=channel))
    return cards


def render(row: Row, summary: StationSummary, records: Sequence[tuple[Any, ...]],
           period: Period, window_s: int | None,
           current: dict[str, tuple[int, int, float]],
           events: Sequence[tuple[float, str, str, str]], now: float, tz: ZoneInfo,
           title: str) -> str:
    station = summary.station
    gaps = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in row.gaps[:20]) or "-"
    facts = table(["state", "last arrival", "records", "seqs all held to", "highest seq",
                   "missing seqs", "security events", "exceedances", "missing"], [[
        td(row.state if row.since is None else f"{row.state} since {iso(row.since, tz)}",
           class_="ok" if row.online else "bad"),
        td("-" if summary.last_received is None else iso(summary.last_received, tz)),
        td(str(summary.records), class_="num"),
        td(str(summary.contiguous), class_="num"),
        td(str(summary.last_seq), class_="num"),
        td(str(row.missing), class_="num"),
        td(str(summary.security_events), class_="num"),
        td(str(summary.exceedances), class_="num"),
        td(gaps),
    ]], class_="facts")
    values = table(["channel", "newest window", "mean"], [
        [ch, iso(start, tz), td("-" if math.isnan(mean) else f"{mean:g}", class_="num")]
        for ch, (_seq, start, mean) in sorted(current.items())], class_="current")
    shown = f"{iso(period.t0, tz)} to {iso(period.t1, tz)}"
    width = "no records" if window_s is None else f"{window_label(window_s)} windows"
    body: list[Safe] = [
        el("h2", "Station"), facts,
        el("h2", "Current values"), values,
        el("h2", f"Averages, {shown}, {width}"),
        el("p", *(part for span, label in (("24h", "24 h"), ("7d", "7 days")) for part in (
            el("a", label, href="/station?" + urllib.parse.urlencode(
                {"id": station, "span": span})), " ")), class_="spans"),
        el("p", "Shaded: invalid windows; hover for the reason (as `centre query` gives it).",
           class_="muted"),
        el("div", *plots(records, period, tz), class_="grid"),
        el("h2", "Security events"),
        table(["time", "reason", "detail"],
              [[iso(t, tz), why, detail.split("\n", 1)[0]]
               for t, _s, why, detail in events[-SHOWN_EVENTS:]], class_="events")
        if events else el("p", "none", class_="muted"),
    ]
    return page(f"{title}: {station}", *body, nav=NAV)
