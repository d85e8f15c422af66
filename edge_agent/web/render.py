"""The station page as HTML: the agent's status and the records in, one document out.

Pure (data and ``now`` in, text out), so ``bench/web_page.py`` measures exactly the
rendering and a test reads the result without a browser. Every string that came from the
station or its analysers (channel names, units, device names, state and error texts, file
names) goes through ``protocol.html_page`` escaping; numbers are formatted here.

Reasons are ``protocol.record_view.reason`` with the station's own coverage thresholds, the
text ``quantrac history`` prints, and the plots are ``protocol.svg_plot``: the shaded band of
an invalid window carries that reason as its hover text and in ``data-reason``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from buffer.outbox_read import OutboxRecord, Selected
from edge_agent.config.model import StationConfig
from edge_agent.console.status_view import clock_line, readiness
from edge_agent.web.source import AgentStatus, SentFile
from protocol import svg_plot
from protocol.html_page import Child, Safe, el, join, page, table, td, void
from protocol.model import RecordFlag
from protocol.record_view import age, reason, window_label

#: the page reloads itself this often (no script: a meta refresh)
REFRESH_S = 60
#: exceedances listed from the plotted period, newest first
SHOWN_EXCEEDANCES = 10


@dataclass(frozen=True, slots=True)
class Period:
    """The plotted windows: ``window_s`` long, starting in ``[t0, t1)``; ``span`` as asked."""

    t0: float
    t1: float
    window_s: int
    span: str




def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{float(v):.6g}"


def local_text(t: float, tz: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return dt.datetime.fromtimestamp(t, tz).strftime(fmt)


def _live(st: Mapping[str, Any], now: float) -> Safe:
    rows = []
    for c in st.get("channels", []):
        status = str(c.get("status", ""))
        rows.append([c.get("symbol", ""), td(_num(c.get("value")), "num"), c.get("unit", ""),
                     td(status, "ok" if status == "measuring" else "bad"),
                     c.get("device", ""), age(c.get("t"), now)])
    return table(["channel", "value", "unit", "status", "device", "measured"], rows,
                 class_="live")


def _devices(st: Mapping[str, Any], now: float) -> Safe:
    """Each analyser: when it last answered, and its last error while it is failing."""
    rows = []
    for d in st.get("devices", []):
        failing = bool(d.get("consecutive_failures"))
        error = (f"{d.get('last_error')} ({age(d.get('last_error_at'), now)})"
                 if d.get("last_error") else "")
        rows.append([d.get("device", ""), str(d.get("bus", "")), td(str(d.get("unit", "")),
                                                                      "num"),
                     td(age(d.get("last_good"), now), "bad" if failing else "ok"),
                     td(error, "bad" if failing else "muted")])
    return table(["device", "bus", "unit", "last answer", "last error"], rows,
                 class_="devices")


def _clock(st: Mapping[str, Any], now: float) -> Safe:
    """The clock in ``quantrac status``'s words (:func:`status_view.clock_line`: when it is
    not synchronised, why that matters and what to do), its state word coloured."""
    clock = st.get("clock", {})
    synced = clock.get("synchronised")
    text = {True: "synchronised", False: "NOT synchronised", None: "unknown"}[synced]
    rest = clock_line(clock, now).removeprefix("clock").strip().removeprefix(text)
    return el("p", el("span", text, class_="ok" if synced else "bad"), rest, id="clock")


def _uplinks(st: Mapping[str, Any], now: float, sent: Sequence[SentFile],
             tz: ZoneInfo) -> Safe:
    parts: list[Child] = []
    ob = st.get("outbox", {})
    oldest = ob.get("oldest_unacked_start")
    if st:
        parts.append(el("p", f"Outbox: {ob.get('unacked', 0)} records not acknowledged "
                             f"({ob.get('in_flight', 0)} in flight), oldest "
                             f"{age(oldest, now) if oldest is not None else '-'}; "
                             f"last seq {ob.get('last_seq', 0)}", id="outbox"))
    if ob.get("problem"):
        parts.append(el("p", f"store problem: {ob['problem']}", class_="bad"))
    rows: list[list[Child]] = []
    u = st.get("uplink") or {}
    if u:
        stats = u.get("stats") or {}
        state = str(u.get("state", ""))
        rows.append(["MQTT", td(state, "ok" if state in ("connected", "up") else "warn"),
                     str(u.get("detail") or ""),
                     f"{stats.get('records_acked', 0)} acked, "
                     f"{stats.get('disconnects', 0)} disconnects" if stats else ""])
    c10 = st.get("uplink_circular10")
    if c10:
        stats = c10.get("stats") or {}
        state = str(c10.get("state", ""))
        rows.append(["Circular 10", td(state, "warn" if stats.get("last_error") else "ok"),
                     str(c10.get("detail") or ""),
                     f"{stats.get('files_sent', 0)} sent, {stats.get('pending', 0)} pending"
                     + (f"; {stats['last_error']}" if stats.get("last_error") else "")])
    if rows:
        parts.append(table(["uplink", "state", "detail", "counts"], rows, class_="uplinks"))
    if sent:
        parts.append(el("h3", "Circular 10 files last sent"))
        parts.append(table(["file", "window", "sent"], [
            [f.name, local_text(f.window_start, tz),
             local_text(f.sent_at, tz, "%Y-%m-%d %H:%M:%S")]
            for f in sent], class_="c10-sent"))
    return join(parts)


def _exceedances(st: Mapping[str, Any] | None, over: Sequence[OutboxRecord], now: float,
                 tz: ZoneInfo) -> Safe:
    parts: list[Child] = []
    ex = (st or {}).get("exceedances") or {}
    last = ex.get("last") or {}
    if ex.get("count") and last:
        parts.append(el("p", f"{ex['count']} over limit since the agent started; last "
                             f"{last.get('channel', '')} {_num(last.get('mean'))} "
                             f"{last.get('unit', '')}, limit {last.get('limit', '')} "
                             f"({last.get('source', '')}), "
                             f"{age(last.get('window_start'), now)}", class_="bad"))
    if over:
        parts.append(table(["window", "channel", "mean", "unit"], [
            [f"{local_text(r.record.start, tz)} {window_label(r.record.end - r.record.start)}",
             r.record.channel, td(_num(r.record.mean), "num"), r.record.unit]
            for r in over[:SHOWN_EXCEEDANCES]], class_="exceedances"))
    if not parts:
        parts.append(el("p", "none in this period", class_="muted"))
    return join(parts)


def _limit_of(cfg: StationConfig, channel: str, width: int) -> float | None:
    for lim in cfg.limits:
        if lim.channel == channel and lim.window == width and lim.max is not None:
            return lim.max
    return None


def _plots(cfg: StationConfig, records: Sequence[OutboxRecord], period: Period, tz: ZoneInfo,
           limits: Mapping[int, float]) -> Safe:
    by_channel: dict[str, list[OutboxRecord]] = {}
    for r in records:
        by_channel.setdefault(r.record.channel, []).append(r)
    order = [c.symbol for c in cfg.channels if c.symbol in by_channel]
    order += sorted(set(by_channel) - set(order))  # records of a channel no longer configured
    fraction = limits.get(period.window_s, 0.75)
    cards = []
    for channel in order:
        held = by_channel[channel]
        unit = held[-1].record.unit
        windows = [svg_plot.from_record(h.record, reason(h.record, fraction)) for h in held]
        invalid = sum(1 for w in windows if not w.valid)
        svg = svg_plot.plot(windows, period.t0, period.t1, tz, label=channel, unit=unit,
                            limit=_limit_of(cfg, channel, period.window_s))
        cards.append(el("div", el("h3", channel, " ", el("span", f"({unit})", class_="muted"),
                                  " ", el("span", f"{len(windows)} windows, {invalid} invalid",
                                          class_="bad" if invalid else "muted")),
                        svg, class_="card plot-card", data_channel=channel))
    if not cards:
        return el("p", "no records in this period", class_="muted")
    return el("div", *cards, class_="grid")


def _choices(period: Period, widths: Sequence[int]) -> Safe:
    links: list[Child] = []
    for span in ("24h", "7d"):
        label = el("b", span) if span == period.span else Safe(span)
        links += [el("a", label, href=f"/?span={span}&window={period.window_s}"), " "]
    links.append(" | windows: ")
    for w in widths:
        text = window_label(w)
        shown = el("b", text) if w == period.window_s else Safe(text)
        links += [el("a", shown, href=f"/?span={period.span}&window={w}"), " "]
    return el("p", *links, class_="choices")


def _export_form(tz: ZoneInfo, now: float) -> Safe:
    today = local_text(now, tz, "%Y-%m-%d")
    return el("form",
              el("label", "from ", void("input", type="date", name="from", value=today,
                                         required=True)), " ",
              el("label", "to ", void("input", type="date", name="to", value=today,
                                       required=True)), " ",
              el("button", "Download export (zip)", type="submit"),
              method="get", action="/export", class_="inline", id="export-form")


def station_page(cfg: StationConfig, st: AgentStatus, selected: Selected,
                 sent: Sequence[SentFile], period: Period, widths: Sequence[int],
                 limits: Mapping[int, float], now: float) -> str:
    """The one page: live values, clock, outbox and uplinks, exceedances, the plots of
    ``period`` (records already selected for it), the export form."""
    tz = ZoneInfo(cfg.station.timezone)
    info = cfg.station
    title = f"Station {info.id}" + (f" - {info.name}" if info.name else "")
    body: list[Child] = []
    status = st.status
    if status is None:
        body.append(el("p", f"The agent is not answering: {st.problem}. Records below are "
                            "from the outbox.", class_="error", id="agent-down"))
    else:
        body.append(el("p", f"{info.facility} {info.province}".strip(), " - agent ",
                        el("b", readiness(status)),
                        f", up {age(status.get('started'), now).replace(' ago', '')}; "
                        f"page at {local_text(now, tz, '%Y-%m-%d %H:%M:%S')} ({tz.key})",
                        class_="muted"))
        body += [el("h2", "Live values"), _live(status, now), el("h2", "Analysers"),
                 _devices(status, now), el("h2", "Clock"),
                 _clock(status, now), el("h2", "Outbox and uplinks")]
    if status is not None or sent:
        body.append(_uplinks(status or {}, now, sent, tz))
    over = [r for r in selected.records if r.record.flags & RecordFlag.EXCEEDANCE]
    over.reverse()
    body += [el("h2", "Exceedances"), _exceedances(status, over, now, tz)]
    body.append(el("h2", f"Averages, last {period.span} ({window_label(period.window_s)} "
                         f"windows), {local_text(period.t0, tz)} - {local_text(period.t1, tz)}"))
    body.append(el("p", "Shaded: invalid windows; hover for the reason.", class_="muted"))
    body.append(_choices(period, widths))
    if selected.unsound:
        body.append(el("p", f"{len(selected.unsound)} record(s) left out: their checksum fails "
                            "or the agent quarantined them", class_="bad"))
    body.append(el("div", _plots(cfg, selected.records, period, tz, limits), id="plots",
                   data_t0=f"{period.t0:.0f}", data_t1=f"{period.t1:.0f}",
                   data_window=period.window_s))
    body += [el("h2", "Export"), el("p", "The records of a period as `quantrac export` "
                                         "writes them: CSV, the Circular 10 files when the "
                                         "station sends them, signed when it is provisioned.",
                                    class_="muted"), _export_form(tz, now)]
    return page(title, *body, refresh_s=REFRESH_S, nav=[("/", "page"), ("/logout", "log out")])
