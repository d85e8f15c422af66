"""The socket side of a ``protocol.web_app.App``: the standard library's HTTP server.

``http.server.ThreadingHTTPServer`` because a station page or a centre dashboard has a handful
of readers on a LAN: no new dependency, nothing to vendor, and a thread per connection keeps
one slow reader (a laptop on a bad Wi-Fi link, a large export download) from holding up the
others. The application itself is not thread-safe (its sessions and login limits are plain
dicts), so calls to ``App.handle`` are serialised with one lock; rendering is CPU work under
the GIL anyway, so a lock costs nothing a second core would have given.

Hardening that belongs to the socket: a connection idle for ``TIMEOUT_S`` is closed, and a
client address may hold at most ``MAX_PER_CLIENT`` connections open, all clients together
``MAX_CONNECTIONS``; a connection past either is closed unanswered. The idle timeout alone
did not bound the threads: a client that sends one byte of its request every few seconds is
never idle that long ("slowloris"), and each connection it opens was a thread, without end.
With the caps one address cannot hold more than its share, and many addresses cannot grow the
server past a fixed number of threads. (A centre whose public page faces the internet is
better behind a reverse proxy, which also gives it TLS; every client is then the proxy's
address to these caps and to the rate limits, so the proxy must do the per-client limiting.)
A request with a ``Transfer-Encoding`` or more than one ``Content-Length`` is refused and its
connection closed: this server reads bodies by ``Content-Length`` only, so a chunked body
would be read as the next request on the connection, and behind a proxy that reads it the
other way one client's bytes would become another request ("request smuggling"). A body
longer than
``web_app.MAX_BODY`` is refused before it is read; the client address handed to the login
limiter is the peer's IP, an IPv6 one as its /64 (``client_of``; a proxy's
``X-Forwarded-For`` is not trusted: it is whatever the client wrote). Access is logged at
debug level, errors at warning, in the project's logfmt.

API: ``make_server(app, host, port, clock=time.time) -> ThreadingHTTPServer`` (bound, not yet
serving; ``.server_address`` has the real port when ``port`` is 0); ``serve(server)`` runs it
until ``server.shutdown()`` from another thread or KeyboardInterrupt; ``ask_new_password(what,
from_stdin)`` is the one prompt both ``web passwd`` commands use (typed twice on a terminal, or
the first line of stdin for scripts; at least ``MIN_PASSWORD`` characters); ``client_of(peer)``
is the client the limits count.
"""

from __future__ import annotations

import getpass
import ipaddress
import logging
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from protocol import web_app
from protocol.cli_error import UsageError

MIN_PASSWORD = 8


def ask_new_password(what: str, from_stdin: bool) -> str:
    """A new password for ``what`` (e.g. "the station page"); UsageError when unusable."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"new password for {what}: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ; nothing changed")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password needs at least {MIN_PASSWORD} characters")
    return password

log = logging.getLogger(__name__)
TIMEOUT_S = 20.0
#: open connections one client address may hold (a page is one request: no script, no
#: image, the style inline; a browser opens a few, an office behind one NAT some more)
MAX_PER_CLIENT = 16
#: open connections in all: each is a thread, and a Pi has little memory to give
MAX_CONNECTIONS = 128


def client_of(address: str) -> str:
    """The client the limits count for a peer ``address``: an IPv6 peer's /64, because one
    host is given a whole /64 and may take a new address from it for every request (counted
    one by one it would never meet the per-client limits, and would spend the overall ones
    that lock everybody else out); an IPv4-mapped peer (``::ffff:192.0.2.7``, a dual-stack
    listener) as its IPv4 address; IPv4 as it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def make_server(app: web_app.App, host: str, port: int,
                clock: Callable[[], float] = time.time) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "quantrac"
        sys_version = ""
        timeout = TIMEOUT_S
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            lengths = self.headers.get_all("Content-Length") or []
            if "Transfer-Encoding" in self.headers or len(lengths) > 1:
                refused = web_app.text(400, "400: a body is sent with one Content-Length "
                                       "(no Transfer-Encoding)")
                self._send(refused, body=True)
                self.close_connection = True  # what follows on this connection is not ours
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= web_app.MAX_BODY:
                refused = web_app.text(413, "413: the request body has no length or is too large")
                self._send(refused, body=True)
                self.close_connection = True
                return
            body = self.rfile.read(length) if length > 0 else b""
            headers = {k: v for k, v in self.headers.items()}
            with lock:
                resp = web_app.respond(app, self.command, self.path, headers, body,
                                       client_of(self.client_address[0]), clock())
            self._send(resp, body=self.command != "HEAD")

        def _send(self, resp: web_app.Response, *, body: bool) -> None:
            self.send_response(resp.status)
            for key, value in resp.all_headers():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(resp.body)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http", extra={"client": self.client_address[0],
                                     "request": format % args})

        def log_error(self, format: str, *args: object) -> None:
            log.warning("http_error", extra={"client": self.client_address[0],
                                             "problem": format % args})

    class Server(ThreadingHTTPServer):
        """Counts the open connections, per client and in all (module docstring)."""

        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._open: dict[Any, str] = {}
            self._per_client: Counter[str] = Counter()
            self._open_lock = threading.Lock()
            super().__init__(*args, **kwargs)

        def verify_request(self, request: Any, client_address: Any) -> bool:
            client = client_of(str(client_address[0]))
            with self._open_lock:
                if (len(self._open) >= MAX_CONNECTIONS
                        or self._per_client[client] >= MAX_PER_CLIENT):
                    log.warning("http_refused", extra={
                        "client": client, "open": len(self._open),
                        "open_by_client": self._per_client[client]})
                    return False  # closed unanswered: a held thread is what it wants
                self._open[request] = client
                self._per_client[client] += 1
            return True

        def handle_error(self, request: Any, client_address: Any) -> None:
            """One event, not socketserver's traceback on stderr: a client that hangs up
            mid-answer is routine (debug); anything else is ours to fix (an error, with
            the exception)."""
            exc = sys.exc_info()[1]
            client = str(client_address[0])
            if isinstance(exc, ConnectionError):
                log.debug("http_client_gone", extra={"client": client, "problem": str(exc)})
            else:
                log.error("http_request_failed", extra={"client": client}, exc_info=True)

        def shutdown_request(self, request: Any) -> None:
            with self._open_lock:
                client = self._open.pop(request, None)
                if client is not None:
                    self._per_client[client] -= 1
                    if not self._per_client[client]:
                        del self._per_client[client]
            super().shutdown_request(request)

    return Server((host, port), Handler)


def serve(server: ThreadingHTTPServer) -> None:
    """Serve until shut down; the socket is closed on the way out."""
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
