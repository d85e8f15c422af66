"""The public page (no login): each public station's VN_AQI and latest validated averages.

The same reports as the feed (``centre.web.open_data``), rendered for people: the index in
its band colour with the band's name (Vietnamese and English, Table 1 of the decision), the
parameter that set it and every sub-index (the decision's Table 3 asks a web page for all the
parameters and the one with the highest sub-index), and the newest valid value of each public
channel. Links to the JSON and CSV feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from centre.web.open_data import AqiReport, Latest
from protocol.html_page import Safe, el, page, table, td, void
from protocol.model import RecordFlag
from protocol.record_view import iso, window_label

FEEDS = (("/open-data/v1/aqi.json", "AQI (JSON)"), ("/open-data/v1/aqi.csv", "AQI (CSV)"),
         ("/open-data/v1/latest.json", "latest averages (JSON)"),
         ("/open-data/v1/latest.csv", "latest averages (CSV)"))


def _aqi_cell(rep: AqiReport, tz: ZoneInfo) -> Safe:
    idx = rep.index
    if idx is None or idx.value is None or idx.band is None:
        return td(rep.why or "no data", class_="muted")
    band = idx.band
    text_colour = "#fff" if sum(band.rgb) < 400 else "#000"
    subs = ", ".join(f"{k} {v}" for k, v in sorted(idx.sub.items()))
    when = ("" if rep.start is None or rep.end is None
            else f"{iso(rep.start, tz)} to {iso(rep.end, tz)}")
    return el("td", el("strong", str(idx.value)), f" {band.vi} ({band.en})",
              void("br"), f"by {idx.dominant}; {subs}", void("br"), el("small", when),
              class_="aqi", data_aqi=str(idx.value), data_period=rep.period,
              style=f"background:{band.hex};color:{text_colour}")


def render(hourly: Sequence[AqiReport], daily: Sequence[AqiReport], latest: Sequence[Latest],
           now: float, tz: ZoneInfo, title: str, decision: str) -> str:
    aqi_rows = [[td(h.station.name), td(h.station.station, class_="muted"), _aqi_cell(h, tz),
                 _aqi_cell(d, tz)] for h, d in zip(hourly, daily, strict=True)]
    body: list[Safe] = [
        el("p", f"Air quality index VN_AQI (Decision {decision}), updated {iso(now, tz)}. "
           "Only stations and values the province publishes are shown.", class_="muted"),
        el("h2", "Air quality index"),
        table(["station", "id", "hourly AQI (NowCast for PM)", "daily AQI (yesterday)"],
              aqi_rows, class_="aqi-table") if aqi_rows else el("p", "none", class_="muted"),
        el("h2", "Latest validated averages"),
    ]
    for x in latest:
        rows = [[r.record.channel, window_label(r.record.end - r.record.start),
                 iso(r.record.start, tz), td(f"{r.record.mean:g}", class_="num"), r.record.unit,
                 td("over limit", class_="bad") if r.record.flags & RecordFlag.EXCEEDANCE
                 else td("")]
                for r in x.records]
        body += [el("h3", f"{x.station.name} ({x.station.station})"),
                 el("p", f"records over their limit in the last 24 h: {x.exceedances_24h}",
                    class_="bad" if x.exceedances_24h else "muted"),
                 table(["channel", "window", "start", "mean", "unit", "limit"], rows,
                       class_="latest")]
        if x.exceeded:
            body += [el("p", "the newest over their limit:", class_="muted"),
                     table(["channel", "window", "start", "mean", "unit"], [
                         [r.record.channel, window_label(r.record.end - r.record.start),
                          iso(r.record.start, tz), td(f"{r.record.mean:g}", class_="num bad"),
                          r.record.unit] for r in x.exceeded], class_="exceedances")]
    body += [el("h2", "Open data"),
             el("ul", *(el("li", el("a", label, href=href)) for href, label in FEEDS))]
    return page(title, *body, refresh_s=300, nav=(("/public", "Public page"),))
