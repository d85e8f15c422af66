"""The centre's web application: routes, parameters, the public rate limit, the store reads.

Routes (``protocol.web_app.App``: login, GET only, 400 naming the parameter, CSP):

* behind login: ``/`` the province overview (``centre.web.overview``), ``/station?id=ID``
  one station (``centre.web.station_view``; ``span`` = ``24h`` (default) .. ``31d``, ``to``
  a time, default now; ``window`` a width such as ``5m``, default the narrowest found);
* public: ``/public`` (``centre.web.public_page``) and the feed ``/open-data/v1/aqi.json``,
  ``aqi.csv`` (``station``, ``period`` = hourly / daily / both), ``latest.json``,
  ``latest.csv`` (``station``, ``window``); ``docs/open-data.md`` has every field.

A parameter a route does not take is a 400 naming it too (a typo such as ``?staton=`` would
otherwise be silently ignored and show everything). The public routes are rate-limited per
client address (``public_requests_per_min`` in ``[web]``, over a sliding minute) and for all
clients together (100 times that): a 429 with ``Retry-After``. The counting is the login
limiter's (``protocol.web_auth.Limiter``), which counts events per client and overall in a
sliding window: here each public request is an event.

Each request opens the record store read-only (``serve_cli._read_store``, the way ``centre
query`` and ``centre stations`` open it) and closes it again: the server's threads never
share a connection, and the dashboard can never write to the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from centre import aqi
from centre.serve_cli import _read_store
from centre.serve_config import ServeConfig
from centre.store import CentreStore
from centre.web import open_data, overview, public_page, station_view
from centre.web_config import PublicStation
from protocol.record_filter import RecordFilter, zone
from protocol.safe_text import escape_controls
from protocol.web_app import (
    App,
    BadParameter,
    Handler,
    Request,
    Response,
    allow,
    choice,
    duration_param,
    fitting_width,
    html,
    one,
    text,
    time_param,
)
from protocol.web_auth import CENTRE_COOKIE, Limiter

T = TypeVar("T")
TITLE = "Quantrac centre"
MAX_SPAN_S = 31 * 86_400
OVERALL_FACTOR = 100
PERIODS = ("hourly", "daily", "both")


def rate_limited(handler: Handler, limiter: Limiter) -> Handler:
    """``handler`` behind the public limit: a 429 with ``Retry-After`` once a client (or all
    of them) made the limiter's count of requests in its window."""
    def limited(req: Request, now: float) -> Response:
        wait = limiter.retry_after(req.client, now)
        if wait is not None:
            resp = text(429, f"429 too many requests: try again in {wait:.0f} s")
            resp.headers.append(("Retry-After", f"{wait:.0f}"))
            return resp
        limiter.failed(req.client, now)  # one request counted (module docstring)
        return handler(req, now)
    return limited


def build(cfg: ServeConfig, password_hash: str | None) -> App:
    """The application for the centre config ``cfg``."""
    tz = zone(cfg.zone)
    table = aqi.load()
    public = cfg.web.public
    app = App(TITLE, password_hash, passwd_hint="quantrac centre web passwd --config FILE",
              cookie=CENTRE_COOKIE)
    limiter = Limiter(per_client=cfg.web.public_per_min,
                      overall=cfg.web.public_per_min * OVERALL_FACTOR, window_s=60.0)

    def read(fn: Callable[[CentreStore], T]) -> T:
        return _read_store(cfg.store, fn)

    def home(req: Request, now: float) -> Response:
        allow(req, ())
        rows = read(overview.rows)
        return html(overview.render(rows, now, tz, TITLE))

    def station(req: Request, now: float) -> Response:
        allow(req, ("id", "span", "to", "window"))
        sid = one(req, "id")
        if not sid:
            raise BadParameter("id", "missing: which station (/station?id=...)")
        span = duration_param(req, "span", 86_400)
        if not 0 < span <= MAX_SPAN_S:
            raise BadParameter("span", f"{span} s: between 1 s and 31 days")
        window = duration_param(req, "window", 0) or None
        to = time_param(req, "to", tz, end=True)
        t1 = now if to is None else to  # (epoch 0 is a time, not "now")
        t0 = t1 - span

        def page(s: CentreStore) -> str:
            rows = {r.summary.station: r for r in overview.rows(s)}
            row = rows.get(sid)
            if row is None:
                raise BadParameter("id", f"no station {escape_controls(sid)!r} in the store")
            sent = s.window_widths(sid, t0, t1)
            if window is not None and sent and window not in sent:
                # as the station page answers: a width the station did not send in the
                # period would draw empty plots that look like an outage
                raise BadParameter("window", f"{window} s: the station sent "
                                   f"{', '.join(str(w) for w in sent)} s windows in this "
                                   "period")
            # the narrowest width by default, or the one asked, unless the period holds
            # more of its windows than a page reads (web_app.MAX_WINDOWS): the next wider
            width = None if not sent else fitting_width(
                sent, len(s.channels(sid)), span, window or sent[0])
            shown = [] if width is None else s.select_rows(
                RecordFilter(station=sid, t0=t0, t1=t1, window_s=width))
            events = s.security_events(sid, last=station_view.SHOWN_EVENTS)
            return station_view.render(row, row.summary, shown,
                                       station_view.Period(t0, t1, width), width,
                                       s.current_values(sid), events, now, tz, TITLE)

        return html(read(page))

    def chosen(req: Request) -> list[PublicStation]:
        sid = one(req, "station")
        if sid is None or sid == "":
            return [public[k] for k in sorted(public)]
        if sid not in public:
            raise BadParameter("station", f"no public station {escape_controls(sid)!r}")
        return [public[sid]]

    def reports(req: Request, now: float, period: str) -> list[open_data.AqiReport]:
        stations = chosen(req)
        if one(req, "station") in (None, ""):  # all: the ambient ones (a named one is shown)
            stations = [ps for ps in stations if open_data.ambient(ps, table)]

        def work(s: CentreStore) -> list[open_data.AqiReport]:
            out = []
            for ps in stations:
                if period in ("hourly", "both"):
                    out.append(open_data.hourly_report(s, ps, now, table))
                if period in ("daily", "both"):
                    out.append(open_data.daily_report(s, ps, now, tz, table))
            return out
        return read(work)

    def aqi_json(req: Request, now: float) -> Response:
        allow(req, ("station", "period"))
        found = reports(req, now, choice(req, "period", PERIODS, "both"))
        return Response(200, open_data.aqi_json(found, now, tz, table),
                        "application/json; charset=utf-8")

    def aqi_csv(req: Request, now: float) -> Response:
        allow(req, ("station", "period"))
        found = reports(req, now, choice(req, "period", PERIODS, "both"))
        return Response(200, open_data.aqi_csv(found, tz), "text/csv; charset=utf-8")

    def latest_items(req: Request, now: float) -> list[open_data.Latest]:
        stations = chosen(req)
        window = duration_param(req, "window", 0) or None
        return read(lambda s: [open_data.latest(s, ps, now, window) for ps in stations])

    def latest_json(req: Request, now: float) -> Response:
        allow(req, ("station", "window"))
        return Response(200, open_data.latest_json(latest_items(req, now), now, tz, table),
                        "application/json; charset=utf-8")

    def latest_csv(req: Request, now: float) -> Response:
        allow(req, ("station", "window"))
        return Response(200, open_data.latest_csv(latest_items(req, now), tz),
                        "text/csv; charset=utf-8")

    def public_home(req: Request, now: float) -> Response:
        allow(req, ())
        stations = [public[k] for k in sorted(public)]

        def work(s: CentreStore) -> str:
            air = [ps for ps in stations if open_data.ambient(ps, table)]
            hourly = [open_data.hourly_report(s, ps, now, table) for ps in air]
            daily = [open_data.daily_report(s, ps, now, tz, table) for ps in air]
            latest = [open_data.latest(s, ps, now) for ps in stations]
            return public_page.render(hourly, daily, latest, now, tz, f"{TITLE}: open data",
                                      table.decision)
        return html(read(work))

    app.route("/", home)
    app.route("/station", station)
    for path, handler in (("/public", public_home), ("/open-data/v1/aqi.json", aqi_json),
                          ("/open-data/v1/aqi.csv", aqi_csv),
                          ("/open-data/v1/latest.json", latest_json),
                          ("/open-data/v1/latest.csv", latest_csv)):
        app.route(path, rate_limited(handler, limiter), public=True)
    return app
