"""Who may read a page: the password hash, sessions and the limit on wrong passwords.

Shared by the station page (``quantrac web``) and the centre dashboard (``quantrac centre
web``); sans-IO apart from reading and writing the one hash file, and every rule that depends
on time takes ``now`` (epoch s) from the caller, so a test drives it without sleeping.

The password. The installer sets it (``quantrac web passwd``); only its scrypt hash is kept,
in the state directory, mode 0600 (``save_hash``/``load_hash``). scrypt (RFC 7914, in
``hashlib``: no dependency) because it is memory-hard: a stolen SD card's hash costs an
attacker memory as well as time per guess, where a plain or fast hash falls to a GPU. The
parameters (n=2**14, r=8, p=1: 16 MiB, ~50 ms on a Pi 4) are written into the hash, so a
later release can raise them and still check old hashes. Comparison is constant-time.

Sessions. A successful login gets a random token (``secrets``, 256 bits) kept in memory only:
a restart logs everybody out, which is the safe direction. A session lasts ``ttl_s`` from its
last use. The cookie is ``HttpOnly`` (no script can read it) and ``SameSite=Strict`` (another
site cannot make the operator's browser send it); it is not ``Secure`` because a station's LAN
page is plain HTTP.

Wrong passwords. Each client address may fail ``per_client`` times within ``window_s``; all
clients together ``overall`` times (many addresses guessing at once). Past either, login is
refused with 429 and ``Retry-After`` until the oldest failure leaves the window, and the
password is not even hashed (a flood costs no scrypt work). A success clears that client's
failures. The table of clients is bounded (at most ``2 * overall``
entries: clients whose failures all left the window are swept out), so guesses from many
addresses cannot grow the server's memory.

API:

* ``hash_password(password, salt=None) -> str``; ``check_password(password, stored) -> bool``.
* ``save_hash(path, stored)`` (creates with 0600, atomic replace); ``load_hash(path) ->
  str | None`` (None: no password set).
* ``Sessions(ttl_s)``: ``.start(now) -> token``, ``.valid(token, now) -> bool`` (and renews),
  ``.end(token)``.
* ``Limiter(per_client=5, overall=20, window_s=300)``: ``.retry_after(client, now) -> float |
  None`` (None: may try), ``.failed(client, now)``, ``.succeeded(client)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections import deque
from pathlib import Path

from protocol.cli_error import UserError

_N, _R, _P = 1 << 14, 8, 1
#: the station page's session cookie
COOKIE = "quantrac_session"
#: the centre dashboard's cookie: its own name, because cookies are not kept apart by port and
#: a station page and a dashboard on one host (the demo, a centre's own logger) would
#: otherwise log each other out
CENTRE_COOKIE = "quantrac_centre_session"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$<salt>$<hash>`` (base64), a fresh 16-byte salt unless given."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=64 << 20,
                            dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    """True when ``password`` hashes to ``stored``; False for any other text, a malformed
    ``stored`` included (it never raises on what a client sent)."""
    try:
        kind, n, r, p, salt, digest = stored.strip().split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest, validate=True)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt, validate=True),
                             n=int(n), r=int(r), p=int(p), maxmem=256 << 20, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def save_hash(path: Path, stored: str) -> None:
    """Write the hash to ``path`` readable by its owner only (0600 from creation: there is no
    moment it is world-readable), replacing any previous one atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(stored + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_hash(path: Path) -> str | None:
    """The stored hash, or None when no password was set; UserError naming the file when it
    is readable by others (someone copied it around: set the password again) or malformed."""
    try:
        text = path.read_text().strip()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise UserError(f"{path}: the password hash is readable by others (mode {mode:o}); "
                        "run `chmod 600` on it or set the password again")
    if text.count("$") != 5 or not text.startswith("scrypt$"):
        raise UserError(f"{path}: not a password hash written by `quantrac web passwd`")
    return text


class Sessions:
    """Logged-in browsers: token -> last use (epoch s), in memory."""

    def __init__(self, ttl_s: float = 8 * 3600) -> None:
        self.ttl_s = ttl_s
        self._last: dict[str, float] = {}

    def start(self, now: float) -> str:
        self._expire(now)
        token = secrets.token_urlsafe(32)
        self._last[token] = now
        return token

    def valid(self, token: str | None, now: float) -> bool:
        """True for a live session (and it is renewed); an expired one is forgotten."""
        if not token:
            return False
        last = self._last.get(token)
        if last is None:
            return False
        if now - last > self.ttl_s:
            del self._last[token]
            return False
        self._last[token] = now
        return True

    def end(self, token: str | None) -> None:
        if token:
            self._last.pop(token, None)

    def _expire(self, now: float) -> None:
        for token in [t for t, last in self._last.items() if now - last > self.ttl_s]:
            del self._last[token]


class Limiter:
    """Failed logins per client and overall in a sliding window (module docstring)."""

    def __init__(self, per_client: int = 5, overall: int = 20, window_s: float = 300.0) -> None:
        self.per_client, self.overall, self.window_s = per_client, overall, window_s
        self._by_client: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def _trim(self, times: deque[float], now: float) -> None:
        while times and now - times[0] >= self.window_s:
            times.popleft()

    def retry_after(self, client: str, now: float) -> float | None:
        """Seconds until ``client`` may try again, or None when it may try now."""
        self._trim(self._all, now)
        mine = self._by_client.get(client)
        if mine is not None:
            self._trim(mine, now)
            if not mine:
                del self._by_client[client]
                mine = None
        waits = []
        if mine is not None and len(mine) >= self.per_client:
            waits.append(mine[-self.per_client] + self.window_s - now)
        if len(self._all) >= self.overall:
            waits.append(self._all[-self.overall] + self.window_s - now)
        return max(max(waits), 1.0) if waits else None

    def failed(self, client: str, now: float) -> None:
        self._by_client.setdefault(client, deque()).append(now)
        self._all.append(now)
        if len(self._by_client) > 2 * self.overall:
            self._forget_quiet(now)

    def _forget_quiet(self, now: float) -> None:
        """Drop the clients with no failure left in the window. A client is otherwise only
        forgotten when it comes back, and one from each of many addresses (an IPv6 /64 has
        2**64; the public feed counts every request) would grow the table without end. At
        most ``overall`` failures are in the window, so at most that many clients survive a
        sweep, and sweeping only past twice that keeps the cost per failure constant."""
        for client in [c for c, t in self._by_client.items() if now - t[-1] >= self.window_s]:
            del self._by_client[client]

    def succeeded(self, client: str) -> None:
        self._by_client.pop(client, None)
