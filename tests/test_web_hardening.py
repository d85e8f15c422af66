"""What a LAN client or a hostile station can send the web pages: found in review (R1).

* many client addresses each failing once (the public feed counts every request as one):
  the limiter's table of clients must stay bounded;
* a login whose ``next`` holds non-ASCII text: the redirect's ``Location`` header is
  Latin-1 on the wire, so it must be percent-encoded, or the browser gets no answer at all;
* connections that never finish their request (slowloris): one address may hold only
  ``MAX_PER_CLIENT`` of the server's threads;
* a chunked body, or two Content-Lengths: refused (else its bytes are the next request);
* a public route whose store cannot be read: a 503 that does not name the file or host;
* a public station sending 1e308 and -1e308 mg/m3 of PM10: the index (every station's page)
  must not fail, nor print Infinity;
* a plot of +-1.7e308: no NaN coordinate (the browser dropped the whole line);
* an IPv6 host taking a new address of its /64 for each guess: one client to the limits;
* an epoch time or a duration no date or SQLite integer holds (``to=99999999999999999``,
  ``window=99999999999999999999d``): a 400 naming the parameter, not a request that dies.

The server-side checks run on the real adapter (``protocol.web_server`` on a loopback port)
or the centre's real application on a SQLite store; times are passed in, nothing sleeps.
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from centre.serve_config import load
from centre.store import CentreStore
from centre.web.app import build
from protocol import web_app, web_auth, web_server
from protocol.model import Record, RecordFlag, Status
from tests.mqtt_world import wait_for

PASSWORD = "correct horse battery"
HASH = web_auth.hash_password(PASSWORD)
T1 = 1_790_000_000 - 1_790_000_000 % 300


def test_the_limiter_forgets_clients_whose_failures_left_the_window() -> None:
    limiter = web_auth.Limiter(per_client=5, overall=20, window_s=60.0)
    now = 0.0
    for i in range(5000):  # one request from each of 5,000 addresses, one a second
        client = f"2001:db8::{i:x}"
        if limiter.retry_after(client, now) is None:
            limiter.failed(client, now)
        now += 1.0
    assert len(limiter._by_client) <= 2 * limiter.overall
    # a client still in its window keeps its count: the sweep forgets only quiet ones
    for _ in range(5):
        limiter.failed("10.0.0.9", now)
    assert limiter.retry_after("10.0.0.9", now + 1) is not None


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    app = web_app.App("Station", HASH)
    app.route("/", lambda req, now: web_app.html("the page"))
    srv = web_server.make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=web_server.serve, args=(srv,), daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        thread.join(10)


def test_a_login_to_a_next_with_non_ascii_text_is_answered(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    body = urllib.parse.urlencode({"password": PASSWORD, "next": "/?note=Hà Nội"})
    conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    assert resp.status == 303
    assert resp.getheader("Location") == "/?note=H%C3%A0%20N%E1%BB%99i"
    assert resp.getheader("Set-Cookie", "").startswith(web_auth.COOKIE + "=")
    conn.close()


def _closed_unanswered(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` without a byte (waits up to the socket's timeout)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_one_client_cannot_hold_every_thread(server: int,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    """Slowloris: connections that never finish their request. Past ``MAX_PER_CLIENT`` the
    server closes the next one at once; another address, and the same one once it lets go,
    is served. The held ones hang up before their answer: an event each, no traceback."""
    held = []
    try:
        for _ in range(web_server.MAX_PER_CLIENT):
            sock = socket.create_connection(("127.0.0.1", server), timeout=10)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            held.append(sock)
        with socket.create_connection(("127.0.0.1", server), timeout=10) as extra:
            assert _closed_unanswered(extra)
        other = http.client.HTTPConnection("127.0.0.1", server, timeout=10,
                                           source_address=("127.0.0.2", 0))
        other.request("GET", "/login")
        assert other.getresponse().status == 200
        other.close()
    finally:
        for sock in held:
            sock.close()

    def served() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        try:
            conn.request("GET", "/login")
            return conn.getresponse().status == 200
        except (ConnectionError, http.client.HTTPException):
            return False  # the server has not yet seen the held ones close
        finally:
            conn.close()

    wait_for(served, 10, "the server to serve 127.0.0.1 again")
    assert "Traceback" not in capfd.readouterr().err


def _rec(start: int) -> Record:
    return Record(channel="COD", start=start, end=start + 300, mean=10.0, min=9.0, max=11.0,
                  std=0.5, n_valid=60, n_expected=60, valid=True, status=Status.MEASURING,
                  unit="mg/L", flags=RecordFlag(0))


@pytest.fixture(scope="module")
def centre_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[web_app.App, str]:
    d: Path = tmp_path_factory.mktemp("centre")
    (d / "centre.toml").write_text('centre_dir = "."\nstore = "records.sqlite"\n'
                                   'zone = "Asia/Ho_Chi_Minh"\n[station."WW-01"]\n'
                                   'public = true\npublic_channels = ["COD"]\n')
    with CentreStore(d / "records.sqlite") as store:
        store.ingest("WW-01", [(1, _rec(T1 - 600)), (2, _rec(T1 - 300))], b"p".ljust(32, b"."),
                     0)
        store.security_event("WW-01", "replay", "seq 1: replayed")
        for k in range(120):  # a station sending bad packets all day
            store.security_event("EVIL", "decrypt_failed", f"packet {k}")
        store.security_event("WW-01", "replay", "seq 2: replayed")
    app = build(load(d / "centre.toml"), HASH)
    login = app.handle(web_app.Request.make(
        "POST", "/login", body=urllib.parse.urlencode({"password": PASSWORD}).encode(),
        client="10.0.0.1"), T1)
    cookie = dict(login.headers)["Set-Cookie"].split(";")[0]
    return app, cookie


@pytest.mark.parametrize(("target", "named"), [
    ("/station?id=WW-01&to=99999999999999999", "to"),
    ("/station?id=WW-01&window=99999999999999999999d", "window"),
    ("/open-data/v1/latest.json?window=99999999999999999999999d", "window"),
])
def test_a_time_or_duration_out_of_range_is_a_400_naming_it(
        centre_app: tuple[web_app.App, str], target: str, named: str) -> None:
    app, cookie = centre_app
    resp = app.handle(web_app.Request.make("GET", target, {"Cookie": cookie},
                                           client="10.0.0.1"), T1)
    assert resp.status == 400 and resp.body.decode().startswith(f"400 bad request: {named}: ")
    fine = app.handle(web_app.Request.make("GET", "/station?id=WW-01&window=5m",
                                           {"Cookie": cookie}, client="10.0.0.1"), T1)
    assert fine.status == 200


def test_a_public_route_does_not_tell_the_world_where_the_store_is(
        tmp_path: Path) -> None:
    (tmp_path / "centre.toml").write_text('centre_dir = "."\nstore = "gone.sqlite"\n'
                                          '[station."WW-01"]\npublic = true\n'
                                          'public_channels = ["COD"]\n')
    app = build(load(tmp_path / "centre.toml"), HASH)
    for target in ("/public", "/open-data/v1/latest.json", "/open-data/v1/aqi.csv"):
        resp = app.handle(web_app.Request.make("GET", target, client="10.0.0.1"), T1)
        assert resp.status == 503 and b"try again later" in resp.body
        assert b"gone.sqlite" not in resp.body and str(tmp_path).encode() not in resp.body
    login = app.handle(web_app.Request.make(
        "POST", "/login", body=urllib.parse.urlencode({"password": PASSWORD}).encode(),
        client="10.0.0.1"), T1)
    cookie = dict(login.headers)["Set-Cookie"].split(";")[0]
    inside = app.handle(web_app.Request.make("GET", "/", {"Cookie": cookie},
                                             client="10.0.0.1"), T1)
    assert inside.status == 503 and b"gone.sqlite" in inside.body  # the operator is told


def test_every_answer_forbids_framing_and_no_spelling_of_a_page_skips_the_login(
        centre_app: tuple[web_app.App, str]) -> None:
    """HEAD, a trailing slash, an encoded or doubled slash, a parameter given twice: each is
    the login redirect, a 404 or a 400, never the page; and every answer, a redirect or an
    error included, carries the headers that keep it out of another site's frame."""
    app, _ = centre_app
    for target, method, status in [("/", "HEAD", 303), ("/station?id=WW-01", "GET", 303),
                                   ("/station/?id=WW-01", "GET", 404),
                                   ("/%73tation?id=WW-01", "GET", 303),
                                   ("/station%2F?id=WW-01", "GET", 404),
                                   ("//station?id=WW-01", "GET", 303),
                                   ("/open-data/v1/latest.json?station=WW-01&station=X", "GET",
                                    400),
                                   ("/login", "GET", 200), ("/public", "PUT", 405)]:
        resp = app.handle(web_app.Request.make(method, target, client="10.0.0.2"), T1)
        assert resp.status == status, (method, target, resp.status, resp.body[:80])
        if status == 303:
            assert dict(resp.headers)["Location"].startswith("/login?next=")
        headers = dict(resp.all_headers())
        assert headers["X-Frame-Options"] == "DENY", target
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"


def _exchange(port: int, data: bytes) -> bytes:
    """``data`` on a fresh connection, and everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    return got


def test_a_chunked_body_is_refused_not_read_as_a_second_request(server: int) -> None:
    smuggled = b"GET /login?next=/smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    chunked = (b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
               smuggled)
    got = _exchange(server, chunked)
    assert got.startswith(b"HTTP/1.1 400") and got.count(b"HTTP/1.1 ") == 1, got[:300]
    assert b"smuggled" not in got
    two = (b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: "
           + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled)
    got = _exchange(server, two)
    assert got.startswith(b"HTTP/1.1 400") and got.count(b"HTTP/1.1 ") == 1, got[:300]


def test_a_station_sending_absurd_pm_means_cannot_break_the_public_index(
        tmp_path: Path) -> None:
    """The store takes any finite mean; 1e308 mg/m3 is infinite in µg/m3, and +inf with -inf
    made the NowCast NaN: the index raised, for the public page of every station."""
    import json
    import math

    hour = 3600
    now = float(T1)
    newest = int(now // hour) * hour

    def pm(start: int, mean: float) -> Record:
        return Record(channel="PM10", start=start, end=start + hour, mean=mean, min=mean,
                      max=mean, std=0.0, n_valid=60, n_expected=60, valid=True,
                      status=Status.MEASURING, unit="mg/m3", flags=RecordFlag(0))

    (tmp_path / "centre.toml").write_text(
        'centre_dir = "."\nstore = "r.sqlite"\nzone = "Asia/Ho_Chi_Minh"\n'
        '[station."EVIL"]\npublic = true\npublic_channels = ["PM10"]\n'
        '[station."GOOD"]\npublic = true\npublic_channels = ["PM10"]\n')
    with CentreStore(tmp_path / "r.sqlite") as store:
        evil = [(i + 1, pm(newest - (i + 1) * hour, v))
                for i, v in enumerate((1e308, -1e308, 0.05))]
        store.ingest("EVIL", evil, b"e".ljust(32, b"."), 0)
        good = [(i + 1, pm(newest - (i + 1) * hour, 0.05)) for i in range(3)]
        store.ingest("GOOD", good, b"g".ljust(32, b"."), 0)
    app = build(load(tmp_path / "centre.toml"), HASH)

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    page = app.handle(web_app.Request.make("GET", "/public", client="10.0.0.1"), now)
    assert page.status == 200
    feed = app.handle(web_app.Request.make("GET", "/open-data/v1/aqi.json?period=hourly",
                                           client="10.0.0.1"), now)
    assert feed.status == 200
    items = {x["station"]: x for x in json.loads(feed.body, parse_constant=refuse)["aqi"]}
    assert items["GOOD"]["aqi"] is not None  # 50 µg/m3 PM10: the honest station is shown
    assert all(math.isfinite(v) for v in items["EVIL"]["concentrations"].values())


def test_a_station_page_reads_only_its_own_newest_security_events(
        centre_app: tuple[web_app.App, str], tmp_path_factory: pytest.TempPathFactory) -> None:
    app, cookie = centre_app
    page = app.handle(web_app.Request.make("GET", "/station?id=WW-01", {"Cookie": cookie},
                                           client="10.0.0.1"), T1).body.decode()
    assert "seq 1: replayed" in page and "seq 2: replayed" in page and "packet 1" not in page
    store_path = next(tmp_path_factory.getbasetemp().glob("centre*/records.sqlite"))
    with CentreStore(store_path, read_only=True) as store:
        newest = store.security_events("EVIL", last=50)
        assert [d for *_, d in newest] == [f"packet {k}" for k in range(70, 120)]
        assert [d for *_, d in store.security_events("WW-01")] == ["seq 1: replayed",
                                                                   "seq 2: replayed"]
        assert len(store.security_events()) == 122


def test_a_plot_of_absurd_values_keeps_its_line() -> None:
    """An analyser's garbage the station still marked valid (+-1.7e308): the plot's range
    overflowed to inf and every coordinate was NaN, so the browser drew no line at all."""
    import re
    from zoneinfo import ZoneInfo

    from protocol import svg_plot

    def rec(start: int, mean: float) -> Record:
        return Record(channel="COD", start=start, end=start + 300, mean=mean, min=mean,
                      max=mean, std=0.0, n_valid=60, n_expected=60, valid=True,
                      status=Status.MEASURING, unit="mg/L", flags=RecordFlag(0))

    windows = [svg_plot.from_record(rec(T1 + k * 300, v), "")
               for k, v in enumerate((1.7e308, -1.7e308, 5.0))]
    svg = svg_plot.plot(windows, T1, T1 + 900, ZoneInfo("UTC"), label="COD", unit="mg/L",
                        limit=1.7e308)
    line = re.search(r'class="line"[^>]* d="([^"]*)"', svg)
    assert line is not None and line.group(1).count("L") == 2
    assert not re.search(r"nan|inf", svg, re.IGNORECASE)


def test_an_ipv6_host_is_one_client_whatever_address_of_its_64_it_takes() -> None:
    """One host holds a /64: counted per address it would never meet the per-client limit
    and would spend the overall one, locking the operator out."""
    client_of = web_server.client_of
    assert client_of("2001:db8:1:2::7") == client_of("2001:db8:1:2:ffff::1") == \
        "2001:db8:1:2::/64"
    assert client_of("2001:db8:1:3::7") == "2001:db8:1:3::/64"
    assert client_of("::ffff:192.0.2.7") == client_of("192.0.2.7") == "192.0.2.7"
    app = web_app.App("Station", HASH)  # 5 wrong per client, 20 in all
    wrong = urllib.parse.urlencode({"password": "not it at all"}).encode()
    codes = [app.handle(web_app.Request.make(
        "POST", "/login", body=wrong, client=client_of(f"2001:db8:1:2::{i:x}")), T1 + i).status
        for i in range(8)]
    assert codes == [401] * 5 + [429] * 3
    right = urllib.parse.urlencode({"password": PASSWORD}).encode()
    operator = app.handle(web_app.Request.make("POST", "/login", body=right,
                                               client=client_of("2001:db8:9::1")), T1 + 9)
    assert operator.status == 303
