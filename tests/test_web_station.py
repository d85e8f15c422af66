"""``quantrac web``: the station page from a running station, in a real headless Chromium.

One world for the module (it costs a few seconds): the simulated analysers, the agent
(``quantrac run``) polling them, an outbox that already holds a day of 5-minute records
(valid, offline, short of coverage, calibrating, one over its limit, and a channel whose
name and unit a hostile station chose), ``quantrac web`` serving it, and one Chromium that
logs in through the page's own form. The security checks are made with plain HTTP
(``http.client``: no redirect followed, every status seen), the page's content in the browser.

``QUANTRAC_SCREENSHOT=docs/station-page.png`` saves the screenshot there (how the README's
picture is made); otherwise it goes to the test's directory.
"""

from __future__ import annotations

import csv
import datetime as dt
import http.client
import io
import json
import math
import os
import subprocess
import sys
import urllib.parse
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from buffer import Store
from buffer.outbox_read import OutboxReader
from centre.store import CentreStore
from edge_agent.console.control_client import agent_running, request
from protocol.model import Record, RecordFlag, Status
from protocol.record_filter import RecordFilter
from tests.agent_world import SID, StationWorld, station_world
from tests.chromium import Browser, Page
from tests.mqtt_world import wait_for

PASSWORD = "station-page-pw"
EVIL = "<script>alert(1)</script>"
EVIL_CHANNEL = 'X"><img src=x onerror=alert(2)>'
W = 300
END = (int(dt.datetime.now(dt.UTC).timestamp()) // W) * W - 2 * W  # before the agent's records
START = END - 86400


def _rec(channel: str, start: int, mean: float, n_valid: int, status: Status = Status.MEASURING,
         unit: str = "mg/L", flags: int = 0) -> Record:
    return Record(channel=channel, start=start, end=start + W, mean=mean, min=mean, max=mean,
                  std=0.0, n_valid=n_valid, n_expected=60, valid=n_valid >= 45,
                  status=int(status), unit=unit, flags=flags)


def day_of_records() -> list[Record]:
    out = []
    for i in range(86400 // W):
        t = START + i * W
        if 20 <= i < 30:  # the analyser silent for 50 minutes
            out.append(_rec("COD", t, math.nan, 0, Status.OFFLINE))
        elif i == 40:
            out.append(_rec("COD", t, 31.0, 44))  # coverage 44/60 < 75%
        elif 50 <= i < 52:
            out.append(_rec("COD", t, 30.0, 12, Status.CALIBRATING))
        elif i == 60:
            out.append(_rec("COD", t, 150.0, 60, flags=int(RecordFlag.EXCEEDANCE)))
        else:
            out.append(_rec("COD", t, 30.0 + 5 * math.sin(i / 20), 60))
        out.append(_rec("NH4", t, 2.0 + (i % 7) / 10, 60 if i % 50 else 30, unit="mg/L"))
        out.append(_rec(EVIL_CHANNEL, t, 1.0 if i != 5 else math.nan, 60 if i != 5 else 0,
                        unit=EVIL))  # no valid sample: no value (the centre refuses a mean)
    return out


@dataclass
class Site:
    sw: StationWorld
    base: str
    host: str
    port: int
    cookie: str
    page: Page
    shot: Path
    log: Path


def _request(site: Site, method: str, target: str, body: bytes = b"",
             cookie: str | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(site.host, site.port, timeout=30)
    headers = {"Cookie": cookie} if cookie else {}
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, target, body=body, headers=headers)
    resp = conn.getresponse()
    resp.read_body = resp.read()  # type: ignore[attr-defined]
    conn.close()
    return resp


def _body(resp: http.client.HTTPResponse) -> str:
    return bytes(resp.read_body).decode()  # type: ignore[attr-defined]


def _quantrac(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("web")
    with pytest.MonkeyPatch.context() as mp:
        gen = station_world(tmp, mp, uplink=False)
        sw = next(gen)
        try:
            text = sw.config.read_text().replace("windows = [10]", "windows = [10, 300]")
            sw.config.write_text(text + '[web]\nlisten = "127.0.0.1:0"\n')
            with Store(sw.state_dir / "outbox.sqlite") as store:
                store.append(day_of_records())
            sw.start_agent()
            wait_for(lambda: agent_running(sw.socket), 60, f"the agent\n{sw.log()[-2000:]}")
            wait_for(lambda: len(request(sw.socket, {"op": "status"})["status"]["channels"])
                     >= 8, 30, "a live value of every channel")
            done = _quantrac("web", "passwd", "--config", str(sw.config), "--password-stdin",
                             stdin=PASSWORD + "\n")
            assert done.returncode == 0, done.stderr
            web = subprocess.Popen([sys.executable, "-m", "edge_agent.daemon.cli", "web",
                                    "--config", str(sw.config)], stdout=subprocess.PIPE,
                                   stderr=(tmp / "web.log").open("wb"), text=True)
            try:
                assert web.stdout is not None
                first = web.stdout.readline()
                assert first.startswith("quantrac web: http://127.0.0.1:"), first
                base = first.split()[2]
                split = urllib.parse.urlsplit(base)
                browser = Browser(tmp / "chromium")
                try:
                    page = browser.page()
                    page.load(base)  # not logged in: the login form
                    assert page.url().startswith(base + "login?next=")
                    page.submit("form", {"password": PASSWORD})
                    assert page.url() == base, page.dom()[:2000]
                    cookie = _login_cookie(split.hostname or "", split.port or 0)
                    shot = Path(os.environ.get("QUANTRAC_SCREENSHOT") or tmp / "station.png")
                    yield Site(sw, base.rstrip("/"), split.hostname or "", split.port or 0,
                               cookie, page, shot, tmp / "web.log")
                finally:
                    browser.close()
            finally:
                web.terminate()
                web.wait(10)
        finally:
            gen.close()


def _login_cookie(host: str, port: int) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("POST", "/login", body=urllib.parse.urlencode({"password": PASSWORD}),
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 303, resp.status
    set_cookie = resp.getheader("Set-Cookie") or ""
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    return set_cookie.split(";")[0]


def _bands(page: Page) -> list[dict[str, Any]]:
    return list(page.evaluate("""[...document.querySelectorAll('[data-channel]')].flatMap(card =>
        [...card.querySelectorAll('rect.invalid')].map(r => ({channel: card.dataset.channel,
        start: +r.dataset.start, end: +r.dataset.end, count: +r.dataset.count,
        reason: r.dataset.reason, title: r.querySelector('title').textContent})))"""))


def test_the_page_shows_the_station_and_runs_no_station_script(site: Site) -> None:
    page = site.page
    page.load(f"{site.base}/?span=24h&window=300&to={END}")
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert page.evaluate("document.querySelectorAll('img').length") == 0  # onerror never ran
    assert page.outside_references() == []  # works offline
    live = page.evaluate("[...document.querySelectorAll('table.live tbody tr')].map(r => "
                         "[...r.cells].map(c => c.textContent))")
    down = page.evaluate("document.getElementById('agent-down')?.textContent")
    assert {row[0] for row in live} >= {"COD", "NH4", "pH", "Flow"}, down
    assert all(row[5] != "never" for row in live if row[3] == "measuring")
    devices = page.evaluate("[...document.querySelectorAll('table.devices tbody tr')].map(r "
                            "=> r.cells[0].textContent)")
    assert sorted(devices) == ["cabinet", "flow", "hach", "liquiline"]
    clock = page.evaluate("document.getElementById('clock').textContent")
    # in quantrac status's words: unsynchronised (as here, no NTP in a test) says why and the fix
    assert "jumps" in clock and ("fix:" in clock or clock.startswith("synchronised")), clock
    # the same readiness as quantrac status: no uplink in this test, so not 'ready'
    header = page.evaluate("document.querySelector('p.muted').textContent")
    assert "agent degraded: " in header and "no uplink configured" in header, header
    assert "records not acknowledged" in page.evaluate(
        "document.getElementById('outbox').textContent")
    exceeded = page.evaluate("document.querySelector('table.exceedances').textContent")
    assert "COD" in exceeded and "150" in exceeded
    cards = page.evaluate("[...document.querySelectorAll('[data-channel]')].map(c => "
                          "[c.dataset.channel, c.querySelector('h3').textContent])")
    assert [c[0] for c in cards] == ["COD", "NH4", EVIL_CHANNEL]
    assert cards[2][1].startswith(f"{EVIL_CHANNEL} ({EVIL})")  # shown as text, whole
    page.screenshot(site.shot)
    assert site.shot.stat().st_size > 20_000


def test_shading_and_reasons_match_quantrac_history_and_centre_query(site: Site,
                                                                    tmp_path: Path) -> None:
    """The page's bands equal the invalid windows ``quantrac history`` lists, and those the
    centre's ``centre query`` lists once the centre holds the same records (stored with the
    receiver's own ``CentreStore.ingest``): the plant operator and the inspector read the
    same reasons for the same period."""
    site.page.load(f"{site.base}/?span=24h&window=300&to={END}")
    shown = set()
    for b in _bands(site.page):
        assert b["end"] - b["start"] == b["count"] * W
        assert b["title"].endswith(b["reason"] + (f" ({b['count']} windows)"
                                                  if b["count"] > 1 else ""))
        shown |= {(b["channel"], b["start"] + k * W, b["reason"]) for k in range(b["count"])}
    out = _quantrac("history", "--config", str(site.sw.config), "--from", str(START), "--to",
                    str(END), "--window", "300", "--invalid", "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    listed = {(r["channel"], int(dt.datetime.fromisoformat(r["start"]).timestamp()), r["reason"])
              for r in rows}
    assert shown == listed
    reasons = {why for _, _, why in listed}
    assert {"offline", "coverage 44/60 < 75%", "calibrating 12/60 valid",
            "coverage 30/60 < 75%", "no valid value"} <= reasons

    with OutboxReader(site.sw.state_dir / "outbox.sqlite") as outbox:
        held = sorted((h.seq, h.record) for h in outbox.select(RecordFilter()).records)
    centre = tmp_path / "centre.sqlite"
    with CentreStore(centre) as store:
        for k in range(0, len(held), 100):
            got = store.ingest(SID, held[k:k + 100], f"pkt{k}".encode().ljust(32, b"."), 0)
            assert got.refused == [], got.refused  # the centre holds every record the page has
    out = _quantrac("centre", "query", "--store", str(centre), "--station", SID, "--from",
                    str(START), "--to", str(END), "--window", "300", "--invalid", "--format",
                    "csv")
    assert out.returncode == 0, out.stderr
    at_centre = {(r["channel"], int(dt.datetime.fromisoformat(r["start"]).timestamp()),
                  r["reason"]) for r in csv.DictReader(io.StringIO(out.stdout))}
    assert shown == at_centre


def test_a_width_too_fine_for_the_span_is_drawn_at_the_next_that_fits(site: Site) -> None:
    """7 days of 10 s windows of the station's 8 channels would be 483,840 records for one
    page (MAX_WINDOWS 120,960): the page draws 5-minute windows and offers no 10 s link."""
    for target, shown, links in (("/?span=24h&window=10", "10s", ["10s", "5m"]),
                                 ("/?span=7d&window=10", "5m", ["5m"]), ("/?span=7d", "5m",
                                                                        ["5m"])):
        site.page.load(site.base + target)
        heading = site.page.evaluate("[...document.querySelectorAll('h2')].map(h => "
                                     "h.textContent).find(t => t.startsWith('Averages'))")
        assert f"({shown} windows)" in heading, (target, heading)
        offered = site.page.evaluate("[...document.querySelectorAll('p.choices a')].map(a => "
                                     "a.textContent).slice(2)")
        assert offered == links, (target, offered)


def test_no_page_without_login(site: Site) -> None:
    for target in ("/", "/?span=7d", f"/export?from={START}&to={END}"):
        resp = _request(site, "GET", target)
        assert resp.status == 303
        assert (resp.getheader("Location") or "").startswith("/login?next=")
    bad = _request(site, "GET", "/", cookie="quantrac_session=forged")
    assert bad.status == 303
    assert _request(site, "POST", "/", cookie=site.cookie).status == 405  # read-only


def test_bad_parameters_are_a_400_naming_them(site: Site) -> None:
    for target, name in (("/?window=7", "window"), ("/?span=1y", "span"),
                         ("/?to=tomorrow", "to"), ("/export?from=2026-13-01&to=2026-12-01",
                                                   "from"), ("/export?from=2026-11-01", "to"),
                         ("/?spann=7d", "spann"),  # a typo is not 24 h shown without a word
                         (f"/export?from={START}&to={END}&file=../../etc/passwd", "file")):
        resp = _request(site, "GET", target, cookie=site.cookie)
        assert resp.status == 400, target
        assert _body(resp).startswith(f"400 bad request: {name}: "), _body(resp)


def test_export_download_and_no_path_traversal(site: Site) -> None:
    resp = _request(site, "GET", f"/export?from={START}&to={END}", cookie=site.cookie)
    assert resp.status == 200, _body(resp) if resp.status != 200 else ""
    disposition = resp.getheader("Content-Disposition") or ""
    assert disposition.startswith('attachment; filename="quantrac-export-HCM-AGT-01-')
    with zipfile.ZipFile(io.BytesIO(resp.read_body)) as zf:  # type: ignore[attr-defined]
        names = zf.namelist()
        assert "records.csv" in names and all(".." not in n for n in names)
        rows = list(csv.DictReader(io.StringIO(zf.read("records.csv").decode())))
    assert {r["channel"] for r in rows} >= {"COD", "NH4"}
    for target, status in (("/export?from=../../../etc/passwd&to=2026-12-01", 400),
                           ("/export?from=2026-11-01&to=..%2F..%2Fetc%2Fpasswd", 400),
                           ("/../../etc/passwd", 404), ("/%2e%2e/%2e%2e/etc/passwd", 404),
                           ("/export/../../../etc/passwd", 404)):
        got = _request(site, "GET", target, cookie=site.cookie)
        assert got.status == status, target
        assert b"root:" not in got.read_body  # type: ignore[attr-defined]


def test_wrong_passwords_are_rate_limited(site: Site) -> None:
    def attempt(password: str) -> http.client.HTTPResponse:
        body = urllib.parse.urlencode({"password": password}).encode()
        return _request(site, "POST", "/login", body=body)
    statuses = [attempt("not-it").status for _ in range(5)]
    assert statuses == [401] * 5
    limited = attempt(PASSWORD)  # even the right one, for now
    assert limited.status == 429
    assert int(limited.getheader("Retry-After") or 0) > 0
    assert "too many wrong passwords" in _body(limited)
    assert _request(site, "GET", "/", cookie=site.cookie).status == 200  # sessions go on
    wait_for(lambda: "event=web_login_limited" in site.log.read_text(), 10, "the log line")
    assert site.log.read_text().count("event=web_login_failed client=127.0.0.1") == 5


def test_web_refuses_without_a_password_or_a_listen_address(site: Site,
                                                            tmp_path: Path) -> None:
    cfg = tmp_path / "station.toml"
    state = tmp_path / "state"
    state.mkdir()
    text = site.sw.config.read_text().replace(str(site.sw.state_dir), str(state))
    cfg.write_text(text)
    out = _quantrac("web", "--config", str(cfg))
    assert out.returncode == 1
    assert f"{state / 'web.passwd'}: no password set" in out.stderr
    cfg.write_text(text.split("[web]")[0])
    out = _quantrac("web", "--config", str(cfg))
    assert out.returncode == 1 and "the station page is off (no [web] table)" in out.stderr
    json.dumps(out.stderr)  # one line each, no traceback
    assert "Traceback" not in out.stderr
