"""The station page's routes on ``protocol.web_app.App``: ``/`` (the page) and ``/export``.

Both are GET and read-only; the login, sessions, rate limit and the 400 naming a bad
parameter are ``protocol.web_app``'s, the same as the centre dashboard's.

``/?span=24h|7d&window=SECONDS&to=TIME``: the page, plotting the windows of one width (one of
the station's averaging widths; default 5 minutes, or the nearest shorter one the station
has) that start in ``[to - span, to)``; ``to`` defaults to the end of the window now open, and
takes the forms of ``--to`` (``protocol.record_filter.parse_time``).

``/export?from=TIME&to=TIME``: ``quantrac export`` of that period as a zip. The period is all
the client chooses, parsed as times: nothing a client sends becomes a path or a file name
(the zip's name is built from the parsed times and the configured station id), so there is
no traversal to attempt. At most ``MAX_EXPORT_DAYS`` per download: a station's Pi must not be
made to zip its whole 60 days for each click.

A parameter a route does not take is a 400 naming it, on both routes: ``?spann=7d`` must not
quietly show 24 h, nor ``/export?file=...`` look as if a path were taken.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from edge_agent.config.model import StationConfig
from edge_agent.web import render
from edge_agent.web.source import StationSource
from protocol import web_app
from protocol.record_filter import RecordFilter
from protocol.safe_text import escape_controls
from protocol.web_app import App, BadParameter, Request, Response
from protocol.web_auth import Sessions

SPANS = {"24h": 86400, "7d": 7 * 86400}
MAX_EXPORT_DAYS = 62
#: what the plots show unless another width is asked for: the Circular 10 window
DEFAULT_WINDOW_S = 300


def widths(cfg: StationConfig) -> list[int]:
    """Every window width the station records, shortest first."""
    return sorted({*cfg.averaging.windows, *(r.width for r in cfg.averaging.rollups)})


def default_width(available: Sequence[int]) -> int:
    shorter = [w for w in available if w <= DEFAULT_WINDOW_S]
    return max(shorter) if shorter else min(available)


def fitting(cfg: StationConfig, available: Sequence[int], span_s: int) -> list[int]:
    """The widths a page of ``span_s`` may draw (``web_app.MAX_WINDOWS`` of all the
    station's channels); a finer one is not offered."""
    return web_app.fitting_widths(available, len(cfg.channels), span_s)


def page_width(cfg: StationConfig, available: Sequence[int], span_s: int,
               asked: int | None) -> int:
    """The width a page of ``span_s`` draws: ``asked`` (or the default) when it fits, else
    the next wider one that does (the page's heading says which)."""
    want = default_width(available) if asked is None else asked
    return web_app.fitting_width(available, len(cfg.channels), span_s, want)


def build(cfg: StationConfig, password_hash: str | None,
          source: StationSource | None = None) -> App:
    src = source or StationSource(cfg)
    available = widths(cfg) or [DEFAULT_WINDOW_S]
    app = App(f"Station {cfg.station.id}", password_hash,
              sessions=Sessions(cfg.web.session_hours * 3600 if cfg.web else 8 * 3600),
              passwd_hint=f"quantrac web passwd --config {cfg.source}")

    def period(req: Request, now: float) -> render.Period:
        web_app.allow(req, ("span", "window", "to"))
        span = web_app.choice(req, "span", list(SPANS), "24h")
        raw = web_app.one(req, "window")
        if raw is None or raw == "":
            width = page_width(cfg, available, SPANS[span], None)
        else:
            try:
                width = web_app.duration_param(req, "window", 0)
            except BadParameter:
                width = 0
            if width not in available:
                known = ", ".join(str(w) for w in available)
                raise BadParameter("window", f"{escape_controls(raw[:40])!r} is not a window "
                                   f"width this station records ({known} s)")
            width = page_width(cfg, available, SPANS[span], width)
        to = web_app.time_param(req, "to", src.tz, end=True)
        t1 = to if to is not None else math.ceil(now / width) * width
        return render.Period(t1 - SPANS[span], t1, width, span)

    def station_page(req: Request, now: float) -> Response:
        p = period(req, now)
        selected = src.records(RecordFilter(t0=p.t0, t1=p.t1, window_s=p.window_s))
        return web_app.html(render.station_page(cfg, src.status(), selected,
                                                src.circular10_sent(), p,
                                                fitting(cfg, available, SPANS[p.span]),
                                                src.thresholds, now))

    def export(req: Request, now: float) -> Response:
        web_app.allow(req, ("from", "to"))
        start = web_app.time_param(req, "from", src.tz)
        end = web_app.time_param(req, "to", src.tz, end=True)
        if start is None:
            raise BadParameter("from", "required: the first day of the period (2026-11-23)")
        if end is None:
            raise BadParameter("to", "required: the last day of the period (2026-11-23)")
        if end <= start:
            raise BadParameter("to", "is not after from")
        if end - start > MAX_EXPORT_DAYS * 86400:
            raise BadParameter("to", f"the period is longer than {MAX_EXPORT_DAYS} days; "
                               "download it in parts")
        shown = (render.local_text(start, src.tz, "%Y-%m-%dT%H:%M"),
                 render.local_text(end, src.tz, "%Y-%m-%dT%H:%M"))
        try:
            data, _ = src.export_zip(start, end, shown)
        except ValueError as exc:  # nothing in the period
            return web_app.text(404, f"404: {exc}")
        sid = re.sub(r"[^A-Za-z0-9_-]", "_", cfg.station.id)
        name = (f"quantrac-export-{sid}-{render.local_text(start, src.tz, '%Y%m%d%H%M')}-"
                f"{render.local_text(end, src.tz, '%Y%m%d%H%M')}.zip")
        return web_app.download(data, name, "application/zip")

    app.route("/", station_page)
    app.route("/export", export)
    return app
