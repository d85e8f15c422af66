"""The pieces both pages share, without a socket: escaping, the plot's shading, the login rules.

``protocol.web_app.App`` is driven with a clock passed in, so the rate limit's window is
crossed by moving ``now``, not by sleeping."""

from __future__ import annotations

import math
import re
import urllib.parse
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from protocol import html_page, svg_plot, web_app, web_auth
from protocol.model import Record, Status

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
HASH = web_auth.hash_password("correct horse")
T0 = 1_790_000_100 - 1_790_000_100 % 86400


def test_outside_text_cannot_open_an_element_or_leave_an_attribute() -> None:
    evil = '<script>alert(1)</script>" onload="x'
    assert "<script" not in html_page.esc(evil)
    cell = html_page.el("td", evil, title=evil)
    assert cell.count("<") == 2 and '" onload' not in cell
    assert html_page.el("b", html_page.Safe("<i>ours</i>")) == "<b><i>ours</i></b>"
    doc = html_page.page(evil, html_page.table(["unit"], [[evil]]))
    assert "<script" not in doc and "&lt;script&gt;" in doc
    assert html_page.esc("\x1b[2J") == "\\x1b[2J"  # control characters made visible too


def _rec(start: int, mean: float, n_valid: int, status: Status = Status.MEASURING) -> Record:
    return Record(channel="COD", start=start, end=start + 300, mean=mean, min=mean, max=mean,
                  std=0.0, n_valid=n_valid, n_expected=60, valid=n_valid >= 45,
                  status=int(status), unit="mg/L", flags=0)


def test_plot_shades_invalid_windows_with_their_reason_and_merges_runs() -> None:
    from protocol.record_view import reason
    recs = [_rec(T0 + i * 300, 10.0 + i, 60) for i in range(4)]
    recs += [_rec(T0 + 1200, math.nan, 0, Status.OFFLINE), _rec(T0 + 1500, math.nan, 0,
                                                               Status.OFFLINE)]
    recs += [_rec(T0 + 1800, 12.0, 44), _rec(T0 + 2100, 13.0, 60)]
    windows = [svg_plot.from_record(r, reason(r)) for r in recs]
    svg = svg_plot.plot(windows, T0, T0 + 2400, TZ, label="COD <b>", unit="<script>")
    shaded = re.findall(r'<rect class="invalid"[^>]*data-start="(\d+)" data-end="(\d+)" '
                        r'data-count="\d+" data-reason="([^"]*)"><title>([^<]*)</title>', svg)
    assert [(int(a), int(b), why) for a, b, why, _ in shaded] == [
        (T0 + 1200, T0 + 1800, "offline"), (T0 + 1800, T0 + 2100, "coverage 44/60 &lt; 75%")]
    assert shaded[0][3].endswith("offline (2 windows)")
    assert "<script>" not in svg and "<b>" not in svg
    line = re.search(r'class="line"[^>]* d="([^"]*)"', svg)
    assert line is not None and line.group(1).count("M") == 2  # broken at the invalid run


def _app() -> web_app.App:
    app = web_app.App("Station", HASH, limiter=web_auth.Limiter(per_client=3, overall=5,
                                                                window_s=60))
    app.route("/", lambda req, now: web_app.html("home"))
    app.route("/period", lambda req, now: web_app.html(
        str(web_app.time_param(req, "from", TZ))))
    return app


def _login(app: web_app.App, password: str, now: float, client: str = "10.0.0.2",
           next_: str = "/") -> web_app.Response:
    body = urllib.parse.urlencode({"password": password, "next": next_}).encode()
    return web_app.respond(app, "POST", "/login", {}, body, client, now)


def _cookie(resp: web_app.Response) -> str:
    [set_cookie] = [v for k, v in resp.headers if k == "Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    return set_cookie.split(";")[0]


def test_pages_need_a_login_and_only_the_login_is_a_post() -> None:
    app = _app()
    resp = web_app.respond(app, "GET", "/?x=1", {}, b"", "10.0.0.2", 0.0)
    assert resp.status == 303
    assert dict(resp.headers)["Location"] == "/login?next=%2F%3Fx%3D1"
    for elsewhere in ("//evil.example/", "/\t/evil.example/", "/\\evil.example", "https://x/"):
        resp = _login(app, "correct horse", 1.0, next_=elsewhere)
        assert dict(resp.headers)["Location"] == "/", elsewhere  # never another site
    ok = _login(app, "correct horse", 1.0, next_="/?span=7d")
    assert ok.status == 303 and dict(ok.headers)["Location"] == "/?span=7d"
    cookie = {"Cookie": _cookie(ok)}
    assert web_app.respond(app, "GET", "/", cookie, b"", "10.0.0.2", 2.0).body == b"home"
    assert web_app.respond(app, "POST", "/", cookie, b"", "10.0.0.2", 2.0).status == 405
    assert "script-src" not in (csp := dict(ok.all_headers())["Content-Security-Policy"])
    assert "default-src 'none'" in csp
    gone = web_app.respond(app, "GET", "/logout", cookie, b"", "10.0.0.2", 3.0)
    assert gone.status == 303
    assert web_app.respond(app, "GET", "/", cookie, b"", "10.0.0.2", 4.0).status == 303


def test_an_app_reads_and_writes_only_its_own_cookie() -> None:
    """The station page and the dashboard on one host: logging into one keeps the other."""
    station, centre = _app(), web_app.App("Centre", HASH, cookie=web_auth.CENTRE_COOKIE)
    centre.route("/", lambda req, now: web_app.html("centre"))
    s_jar = _cookie(_login(station, "correct horse", 1.0))
    c_jar = _cookie(_login(centre, "correct horse", 1.0))
    assert s_jar.split("=")[0] != c_jar.split("=")[0]
    both = {"Cookie": f"{s_jar}; {c_jar}"}
    assert web_app.respond(station, "GET", "/", both, b"", "10.0.0.2", 2.0).body == b"home"
    assert web_app.respond(centre, "GET", "/", both, b"", "10.0.0.2", 2.0).body == b"centre"
    # a valid station session under the centre's name is no login there
    token = s_jar.split("=", 1)[1]
    swapped = {"Cookie": f"{web_auth.CENTRE_COOKIE}={token}"}
    assert web_app.respond(centre, "GET", "/", swapped, b"", "10.0.0.2", 2.0).status == 303


def test_wrong_passwords_are_limited_per_client_and_overall() -> None:
    app = _app()
    for i in range(3):
        assert _login(app, "guess", 10.0 + i).status == 401
    limited = _login(app, "correct horse", 13.0)  # even the right one, until the window moves
    assert limited.status == 429 and "try again in" in limited.body.decode()
    assert int(dict(limited.headers)["Retry-After"]) >= 1
    assert _login(app, "guess", 13.0, client="10.0.0.3").status == 401  # another client may
    assert _login(app, "guess", 13.0, client="10.0.0.4").status == 401
    assert _login(app, "guess", 14.0, client="10.0.0.5").status == 429  # 5 overall
    assert _login(app, "correct horse", 75.0).status == 303  # the window has moved on


def test_a_bad_parameter_is_a_400_naming_it() -> None:
    app = _app()
    cookie = {"Cookie": _cookie(_login(app, "correct horse", 0.0))}
    resp = web_app.respond(app, "GET", "/period?from=yesterday%3Cb%3E", cookie, b"", "c", 1.0)
    assert resp.status == 400 and resp.body.decode().startswith("400 bad request: from: ")
    twice = web_app.respond(app, "GET", "/period?from=1&from=2", cookie, b"", "c", 1.0)
    assert twice.status == 400 and b"from: given more than once" in twice.body
    fine = web_app.respond(app, "GET", "/period?from=2026-11-23", cookie, b"", "c", 1.0)
    assert fine.status == 200
    for target, name in (("/login?next=/&nxet=/", "nxet"), ("/logout?all=1", "all")):
        resp = web_app.respond(app, "GET", target, cookie, b"", "c", 1.0)  # built-in routes too
        assert resp.status == 400, target
        assert resp.body.decode().startswith(f"400 bad request: {name}: unknown parameter")
    assert web_app.respond(app, "GET", "/login?next=/", {}, b"", "c", 1.0).status == 200


def test_a_page_reads_at_most_max_windows() -> None:
    widths = [10, 60, 300]
    assert web_app.fitting_widths(widths, 30, 86_400) == [60, 300]  # 259,200 at 10 s
    assert web_app.fitting_widths(widths, 30, 7 * 86_400) == [300]  # 1 min: 302,400
    assert web_app.fitting_widths(widths, 500, 7 * 86_400) == [300]  # the widest, whatever
    assert web_app.fitting_width(widths, 30, 7 * 86_400, 10) == 300
    assert web_app.fitting_width(widths, 8, 86_400, 10) == 10  # 69,120


def test_the_hash_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "web.passwd"
    assert web_auth.load_hash(path) is None
    web_auth.save_hash(path, HASH)
    assert path.stat().st_mode & 0o777 == 0o600
    stored = web_auth.load_hash(path)
    assert stored is not None and web_auth.check_password("correct horse", stored)
    assert not web_auth.check_password("correct hors", stored)
    assert not web_auth.check_password("x", "scrypt$garbage")
    path.chmod(0o644)
    with pytest.raises(web_auth.UserError, match="readable by others"):
        web_auth.load_hash(path)
