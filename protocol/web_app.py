"""A read-only web application as a function: ``Request`` in, ``Response`` out.

The station page and the centre dashboard answer HTTP the same way, so the rules live here
once and a test drives them without a socket: every page needs a login (except the routes
marked public: the login form, and the centre's open data); only GET and HEAD reach a page,
and the one POST is the login form (no page or API changes configuration); a bad query
parameter is a 400 whose text names the parameter; an unknown path is a 404; a handler's
``UserError`` (a missing store, say) is a 503 with its message, escaped, behind login; on a
public route the message is logged and the answer says only that the records cannot be read
(it names the store's file or database host and user, which a citizen has no use for). The
thin adapter to a real socket is ``protocol.web_server``.

Every response carries a Content-Security-Policy that allows no script, no frame and no
outside resource (``default-src 'none'``; styles and images from the page itself): the pages
have no script (``protocol.html_page``), so even markup that slipped through escaping cannot
run code, and ``X-Content-Type-Options: nosniff`` keeps a CSV download from being read as
HTML. ``X-Frame-Options: DENY`` says what ``frame-ancestors 'none'`` says to a browser too old
for CSP (a station's tablet): no other site may frame a page to trick a click.
``Cache-Control: no-store``: pages show a plant's data to the logged-in operator only.
Logins are logged (``web_login``, ``web_login_failed``, ``web_login_limited`` with the client
address): someone guessing the password is a security event the operator should see.

API:

* ``Request(method, path, query, headers, body=b"", client="")``: ``query`` maps a name to
  its values (``urllib.parse.parse_qs``); ``headers`` keys are lower case. ``Request.make``
  builds one from a raw target (``/plot?ch=COD``).
* ``Response(status, body, content_type, headers)``; ``html(text)``, ``text(status, msg)``,
  ``redirect(location)``, ``download(data, filename, content_type)``.
* ``BadParameter(name, problem)``: raise it in a handler -> 400 ``<name>: <problem>``.
* ``one(req, name)``, ``choice(req, name, choices, default)``, ``time_param(req, name, tz,
  end=False)`` (``protocol.record_filter.parse_time``), ``duration_param(req, name,
  default)``: read a parameter or raise ``BadParameter`` naming it (given twice is an error).
  ``allow(req, names)``: ``BadParameter`` naming a parameter the route does not take (a typo
  such as ``?spann=7d`` or ``?staton=`` would otherwise be ignored without a word, and the
  page would show something other than what was asked).
* ``App(title, password_hash, *, sessions=None, limiter=None)``: ``.route(path, handler,
  public=False)`` with ``handler(req, now) -> Response``; ``.handle(req, now) -> Response``.
  ``password_hash`` is the stored scrypt hash (``protocol.web_auth``) or None (then nobody
  can log in and the login page says how to set one). ``/login`` (GET form, POST check),
  ``/logout`` are built in; after login the browser goes to the ``next`` it came from (a
  path on this server only).
* ``respond(app, method, target, headers, body, client, now) -> Response``: parse and handle
  one request (what ``protocol.web_server`` calls).
* ``parse_listen(text, what) -> (host, port)``: ``192.168.1.10:8080``, ``[::1]:8080``;
  UsageError naming ``what`` (the config key or option) otherwise.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from zoneinfo import ZoneInfo

from protocol import record_filter
from protocol.cli_error import UsageError, UserError
from protocol.html_page import el, page, void
from protocol.safe_text import escape_controls
from protocol.web_auth import COOKIE, Limiter, Sessions, check_password

log = logging.getLogger(__name__)
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
#: a login form is a few dozen bytes; anything bigger is refused unread
MAX_BODY = 4096
#: parameters a query may carry (parse_qs refuses more): no page takes more than a few
MAX_FIELDS = 20
#: windows (of all channels) one plot page reads at the most, the station's and the
#: centre's: twice the page the benches measure (30 channels x 7 days of 5-minute windows,
#: well under 1 s). 7 days of 1-minute windows of 30 channels are 302,400 records: 4 s of
#: CPU and 300 MB on the development machine, several times that on a Pi, for plots no
#: wider than ~600 px. A page asked for a finer width draws the next wider one that fits.
MAX_WINDOWS = 2 * 30 * 7 * 288


def fitting_widths(widths: Sequence[int], channels: int, span_s: float) -> list[int]:
    """Those of ``widths`` whose windows over ``span_s`` of ``channels`` channels stay
    within ``MAX_WINDOWS`` (the widest at least, whatever it comes to)."""
    ok = [w for w in widths if max(1, channels) * span_s / w <= MAX_WINDOWS]
    return ok or sorted(widths)[-1:]


def fitting_width(widths: Sequence[int], channels: int, span_s: float, want: int) -> int:
    """``want`` when it fits (``fitting_widths``), else the next wider width that does."""
    ok = fitting_widths(widths, channels, span_s)
    return want if want in ok else min([w for w in ok if w > want] or [max(ok)])
#: the times a page can show as a date (0001-01-02 .. 9999-12-30 in any zone): an epoch
#: second past them made the page's date formatting fail mid-request
MIN_TIME, MAX_TIME = -62_135_510_400.0, 253_402_128_000.0
#: the longest duration a parameter may be (a span, a window): ten years
MAX_DURATION_S = 3650 * 86_400


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]
    body: bytes = b""
    client: str = ""

    @classmethod
    def make(cls, method: str, target: str, headers: Mapping[str, str] | None = None,
             body: bytes = b"", client: str = "") -> Request:
        """From a request line's target; raises BadParameter on a malformed query."""
        split = urllib.parse.urlsplit(target)
        try:
            query = urllib.parse.parse_qs(split.query, keep_blank_values=True, strict_parsing=False,
                                          max_num_fields=MAX_FIELDS)
        except ValueError:
            raise BadParameter("query", f"more than {MAX_FIELDS} parameters") from None
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        return cls(method.upper(), urllib.parse.unquote(split.path) or "/", query, hdrs, body,
                   client)

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def all_headers(self) -> list[tuple[str, str]]:
        """The response's headers with the security ones every response carries."""
        return [("Content-Type", self.content_type), ("Content-Length", str(len(self.body))),
                ("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store"),
                ("X-Frame-Options", "DENY"), *self.headers]


def html(text: str, status: int = 200) -> Response:
    return Response(status, text.encode())


def text(status: int, message: str) -> Response:
    """A plain-text answer (errors): the message's outside parts are already escaped."""
    return Response(status, (message + "\n").encode(), "text/plain; charset=utf-8")


def redirect(location: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
    return Response(303, b"", "text/plain; charset=utf-8", [("Location", location), *headers])


def download(data: bytes, filename: str, content_type: str) -> Response:
    """An attachment; ``filename`` is ours (built from parsed times), never a client's text."""
    return Response(200, data, content_type,
                    [("Content-Disposition", f'attachment; filename="{filename}"')])


class BadParameter(UsageError):
    """A query parameter that cannot be used: a 400 naming it."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


def one(req: Request, name: str) -> str | None:
    """The parameter's one value, None when absent; BadParameter when given twice."""
    values = req.query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadParameter(name, "given more than once")
    return values[0]


def allow(req: Request, names: Collection[str]) -> None:
    """BadParameter naming the first parameter the route does not take."""
    for name in req.query:
        if name not in names:
            raise BadParameter(escape_controls(name), "unknown parameter (this page takes "
                               f"{', '.join(sorted(names)) or 'none'})")


def choice(req: Request, name: str, choices: Sequence[str], default: str) -> str:
    value = one(req, name)
    if value is None or value == "":
        return default
    if value not in choices:
        raise BadParameter(name, f"{escape_controls(value)!r} is not one of {', '.join(choices)}")
    return value


def time_param(req: Request, name: str, tz: ZoneInfo, *, end: bool = False) -> float | None:
    """A time as the ``--from``/``--to`` options take it (``record_filter.parse_time``)."""
    value = one(req, name)
    if value is None or value == "":
        return None
    try:
        t = record_filter.parse_time(value, tz, name, end=end)
        if not MIN_TIME <= t <= MAX_TIME:  # a page shows it as a date: years 1..9999 only
            raise UsageError(name)
        return t
    except UsageError:
        raise BadParameter(name, f"{escape_controls(value)!r} is not a time (use 2026-11-23, "
                           "2026-11-23T07:30 or epoch seconds)") from None


def duration_param(req: Request, name: str, default: int) -> int:
    value = one(req, name)
    if value is None or value == "":
        return default
    try:
        seconds = record_filter.parse_duration(value, name)
        if seconds > MAX_DURATION_S:  # no span or window is longer; SQLite's integers end
            raise UsageError(name)
        return seconds
    except UsageError:
        raise BadParameter(name, f"{escape_controls(value)!r} is not a duration "
                           "(use 5m, 24h or 7d)") from None


Handler = Callable[[Request, float], Response]


def _local_next(value: str | None) -> str:
    """Where to go after login: a path on this server, never another site (``//evil``; a
    browser drops tabs and line breaks from a URL, so ``/<TAB>/evil`` is ``//evil`` to it,
    and it reads a backslash as ``/``). Anything past ASCII is percent-encoded: it goes
    into the ``Location`` header, which is Latin-1 on the wire, so a raw ``ộ`` there made the
    adapter fail mid-response and the browser got no answer to a correct password."""
    if not value or not value.startswith("/") or "\\" in value \
            or any(c < " " or c == "\x7f" for c in value):
        return "/"
    return "/" if value.startswith("//") else urllib.parse.quote(value, safe=_URL_ASCII)


#: every printable ASCII character but the space: kept as it is in a ``next`` path
_URL_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


class App:
    """Routes, login and the rules above; one instance per server (not thread-safe: the
    adapter serialises calls)."""

    def __init__(self, title: str, password_hash: str | None, *,
                 sessions: Sessions | None = None, limiter: Limiter | None = None,
                 passwd_hint: str = "quantrac web passwd", cookie: str = COOKIE) -> None:
        self.title = title
        self.cookie = cookie
        self.password_hash = password_hash
        self.sessions = sessions or Sessions()
        self.limiter = limiter or Limiter()
        self.passwd_hint = passwd_hint
        self._routes: dict[str, tuple[Handler, bool]] = {}

    def route(self, path: str, handler: Handler, *, public: bool = False) -> None:
        self._routes[path] = (handler, public)

    def handle(self, req: Request, now: float) -> Response:
        try:
            return self._handle(req, now)
        except BadParameter as exc:
            return text(400, f"400 bad request: {exc}")
        except UserError as exc:
            return text(503, f"503 unavailable: {escape_controls(str(exc))}")

    def _handle(self, req: Request, now: float) -> Response:
        if req.path == "/login":
            allow(req, ("next",))  # the built-in routes by the same 400 rule as the others
            return self._login(req, now)
        if req.path == "/logout":
            allow(req, ())
            self.sessions.end(req.cookie(self.cookie))
            return redirect("/login", [("Set-Cookie", _cookie(self.cookie, "", 0))])
        found = self._routes.get(req.path)
        if found is None:
            return text(404, f"404 not found: {escape_controls(req.path)}")
        handler, public = found
        if req.method not in ("GET", "HEAD"):
            return Response(405, b"405: read-only: only GET here\n", "text/plain; charset=utf-8",
                            [("Allow", "GET, HEAD")])
        if not public and not self.sessions.valid(req.cookie(self.cookie), now):
            target = req.path + ("?" + urllib.parse.urlencode(req.query, doseq=True)
                                 if req.query else "")
            return redirect("/login?" + urllib.parse.urlencode({"next": target}))
        if not public:
            return handler(req, now)
        try:
            return handler(req, now)
        except BadParameter:
            raise
        except UserError as exc:  # the detail names our files or database host: not for all
            log.warning("web_unavailable", extra={"path": req.path, "problem": str(exc)})
            return text(503, "503 unavailable: the records cannot be read just now; "
                        "try again later")

    def _login(self, req: Request, now: float) -> Response:
        if req.method in ("GET", "HEAD"):
            return self._form(one(req, "next"), None, 200)
        if req.method != "POST":
            return Response(405, b"405: GET or POST\n", "text/plain; charset=utf-8",
                            [("Allow", "GET, POST")])
        if len(req.body) > MAX_BODY:
            return text(413, "413: the login form is small; this request is not one")
        form = urllib.parse.parse_qs(req.body.decode("utf-8", "replace"),
                                     max_num_fields=MAX_FIELDS)
        password = (form.get("password") or [""])[0]
        target = form["next"][0] if form.get("next") else None
        wait = self.limiter.retry_after(req.client, now)
        if wait is not None:
            log.warning("web_login_limited", extra={"client": req.client,
                                                    "retry_after_s": round(wait)})
            resp = self._form(target, f"too many wrong passwords: try again in {wait:.0f} s",
                              429)
            resp.headers.append(("Retry-After", f"{wait:.0f}"))
            return resp
        if self.password_hash is None:
            return self._form(target, f"no password is set: run `{self.passwd_hint}`", 403)
        if not check_password(password, self.password_hash):
            self.limiter.failed(req.client, now)
            log.warning("web_login_failed", extra={"client": req.client})
            return self._form(target, "wrong password", 401)
        self.limiter.succeeded(req.client)
        log.info("web_login", extra={"client": req.client})
        token = self.sessions.start(now)
        return redirect(_local_next(target),
                        [("Set-Cookie", _cookie(self.cookie, token, int(self.sessions.ttl_s)))])

    def _form(self, target: str | None, error: str | None, status: int) -> Response:
        body = [el("h2", "Log in")]
        if error is not None:
            body.append(el("p", error, class_="error", id="login-error"))
        body.append(el(
            "form",
            el("label", "Password ", void("input", type="password", name="password",
                                          autofocus=True, autocomplete="current-password")),
            void("input", type="hidden", name="next", value=_local_next(target)),
            el("button", "Log in", type="submit"),
            method="post", action="/login"))
        resp = html(page(self.title, *body), status)
        return resp


def _cookie(name: str, token: str, max_age: int) -> str:
    return f"{name}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"


def respond(app: App, method: str, target: str, headers: Mapping[str, str], body: bytes,
            client: str, now: float) -> Response:
    """What the adapter calls for each request: parse it, then ``app.handle`` (a query that
    cannot be parsed is a 400 too)."""
    try:
        req = Request.make(method, target, headers, body, client)
    except BadParameter as exc:
        return text(400, f"400 bad request: {exc}")
    return app.handle(req, now)


def parse_listen(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets) as ``(host, port)``; port 0: any free one."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"{what}: {escape_controls(text)!r} is not HOST:PORT "
                         "(e.g. 192.168.1.10:8080)")
    return host, int(port)


def status_line(status: int) -> str:
    """``404 Not Found``: the reason phrase of a status, for the adapter."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)
