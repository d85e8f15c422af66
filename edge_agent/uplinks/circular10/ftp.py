"""The Circular 10 uplink: text files pushed by FTP/FTPS every few minutes.

This is the regulator's legacy path (Circular 10/2021/TT-BTNMT); in code it has one name,
Circular 10: the config table ``[uplink.circular10]``, the status key ``uplink_circular10``,
the logger ``quantrac.edge_agent.circular10``, log events ``circular10_*``, and the classes
:class:`Circular10Settings`, :class:`Circular10Uplink`, :class:`Circular10Stats`.

Two jobs on one thread (:func:`circular10_thread`, an
:class:`~edge_agent.uplinks.thread.UplinkThread`), never on the agent's event loop:

1. **Render.** At every cycle (``interval_minutes``, aligned to the wall clock and run
   ``grace_s + SETTLE_S`` after a window end, when the pipeline has stored that window's
   records) every window of width ``window`` that closed since the last file becomes one file
   (:mod:`edge_agent.uplinks.circular10.render`), written to the spool's ``pending/`` (temp
   file, fsync, rename: a crash leaves no half file). Records of one window are committed in one
   transaction by the agent, so a window is never rendered with half its channels.
2. **Send.** Whenever ``pending/`` holds files and the back-off allows: one connection
   (FTP, or FTPS with ``AUTH TLS`` and a protected data channel that resumes the control
   connection's TLS session, see :class:`SessionReuseFTP_TLS`; passive mode), the files
   oldest first, each stored under ``NAME.part`` then renamed to ``NAME`` so the centre never
   reads a half file, then moved locally to ``sent/``. A dead link backs off exponentially
   (capped) and keeps the files for later.

Nothing is remembered in memory only. The spool (``<state_dir>/circular10/``) is the state:

* ``pending/<start>_<NAME>``: made, not yet delivered (never pruned: unsent data);
* ``sent/<start>_<NAME>``: delivered; pruned after ``retention_days``;
* ``cursor``: the start (UTC epoch) of the newest window rendered. A restart renders only
  windows after ``max(cursor, newest spool file)``, so a file is made once.

``<start>`` (UTC epoch seconds, zero-padded) orders the spool oldest first whatever the zone.
A restart between the server's rename and the local move to ``sent/`` is caught before each
upload: a file already on the server with the same size counts as delivered and is not sent
again. First start ever (no cursor): windows of the last ``FIRST_LOOKBACK_S`` only; older
records are in the outbox (and the MQTT link), not worth a flood of old files to the centre.
After a backward clock jump, windows that start at or before the cursor are not rendered again
(their file names are taken).
"""

from __future__ import annotations

import contextlib
import ftplib
import logging
import math
import os
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from buffer import Store
from edge_agent.config.model import StationConfig
from edge_agent.uplinks.circular10 import render as circular10
from edge_agent.uplinks.thread import UplinkThread
from protocol.backoff import Backoff
from protocol.clock import Clock
from protocol.model import Record
from provisioning.securefs import sync_dir, write_replace

log = logging.getLogger("quantrac.edge_agent.circular10")

SETTLE_S = 2.0  # after end + grace: the agent's tick has stored the window's records
FIRST_LOOKBACK_S = 3600.0
SPOOL_NAME = "circular10"
_LINK_ERRORS = (OSError, EOFError, ftplib.Error)  # ssl.SSLError and timeouts are OSErrors


class SessionReuseFTP_TLS(ftplib.FTP_TLS):
    """``FTP_TLS`` whose data connections resume the control connection's TLS session.

    Why: the stdlib's ``FTP_TLS`` opens a fresh TLS session on every data connection, and
    servers that guard against data-connection theft refuse that (vsftpd's default
    ``require_ssl_reuse=YES``: "522 SSL connection failed: session reuse required"; many
    FileZilla servers likewise), so the transfer fails although login worked. Offering the
    control connection's session proves the data connection comes from the same client.
    A server that does not care simply does a full handshake instead.
    """

    def ntransfercmd(self, cmd: str, rest: int | str | None = None
                     ) -> tuple[socket.socket, int | None]:
        # FTP.ntransfercmd, not FTP_TLS's (which would wrap without the session)
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            control = self.sock
            session = control.session if isinstance(control, ssl.SSLSocket) else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=session)
        return conn, size


@dataclass(frozen=True)
class Circular10Settings:
    """Everything the uplink needs; :meth:`from_config` builds it from the station config.

    Tests and tools change a field with :func:`dataclasses.replace` (checked by mypy)."""

    host: str
    province: str
    facility: str
    station: str
    port: int = 21
    user: str = "anonymous"
    password: str = field(default="", repr=False)
    directory: str = ""
    tls: bool = True
    ca_file: Path | None = None
    interval_s: float = 300.0
    window_s: int = 300
    grace_s: float = 30.0
    timezone: str = "Asia/Ho_Chi_Minh"
    retention_s: float = 60 * 86400.0
    timeout_s: float = 30.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0

    @classmethod
    def from_config(cls, cfg: StationConfig) -> Circular10Settings:
        """From a station config with ``[uplink.circular10]`` set (ValueError if not)."""
        c = cfg.circular10
        if c is None:
            raise ValueError(f"{cfg.source}: no [uplink.circular10] table")
        return cls(
            host=c.host, port=c.port, user=c.user, password=c.password,
            directory=c.directory, tls=c.tls, ca_file=c.ca_file,
            interval_s=c.interval_minutes * 60.0, window_s=c.window,
            grace_s=cfg.averaging.grace_s, timezone=cfg.station.timezone,
            retention_s=c.retention_days * 86400.0, timeout_s=c.timeout_s,
            backoff_cap_s=c.backoff_cap_s, province=cfg.station.province,
            facility=cfg.station.facility, station=cfg.station.name,
        )  # fmt: skip


@dataclass
class Circular10Stats:
    """Counters for ``quantrac status`` and tests."""

    files_made: int = 0
    files_sent: int = 0
    files_found_on_server: int = 0  # delivered before a restart, not sent twice
    upload_failures: int = 0
    pruned: int = 0
    pending: int = 0
    last_sent: str = ""
    last_error: str = ""


class Spool:
    """The on-disk state of the uplink (layout in the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pending = root / "pending"
        self.sent = root / "sent"
        for d in (root, self.pending, self.sent):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (root, self.pending, self.sent):  # leftovers of a crash mid-write
            for tmp in d.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    @staticmethod
    def key(start: int, name: str) -> str:
        return f"{start:011d}_{name}"

    @staticmethod
    def start_of(key: str) -> int:
        return int(key.split("_", 1)[0])

    @staticmethod
    def remote_name(key: str) -> str:
        return key.split("_", 1)[1]

    def pending_keys(self) -> list[str]:
        """Files waiting, oldest window first."""
        return sorted(p.name for p in self.pending.iterdir() if not p.name.startswith("."))

    def cursor(self) -> int | None:
        """The start of the newest window rendered (cursor file or spool, whichever is later)."""
        best: int | None = None
        with contextlib.suppress(OSError, ValueError):
            best = int((self.root / "cursor").read_text().strip())
        for d in (self.pending, self.sent):
            for p in d.iterdir():
                if not p.name.startswith("."):
                    with contextlib.suppress(ValueError):
                        start = self.start_of(p.name)
                        best = start if best is None else max(best, start)
        return best

    def add(self, start: int, name: str, data: bytes) -> bool:
        """Put a rendered file in ``pending/``; False if it was made before (restart)."""
        key = self.key(start, name)
        if (self.pending / key).exists() or (self.sent / key).exists():
            return False
        write_replace(self.pending / key, data)
        return True

    def set_cursor(self, start: int) -> None:
        write_replace(self.root / "cursor", f"{start}\n".encode())

    def mark_sent(self, key: str) -> None:
        os.replace(self.pending / key, self.sent / key)
        sync_dir(self.sent)
        sync_dir(self.pending)

    def prune(self, before_start: float) -> int:
        """Delete sent files whose window started before ``before_start``."""
        n = 0
        for p in self.sent.iterdir():
            with contextlib.suppress(ValueError):
                if self.start_of(p.name) < before_start:
                    p.unlink(missing_ok=True)
                    n += 1
        return n


class Circular10Uplink:
    """Renders and pushes Circular 10 files; call :meth:`step` in a loop (one thread)."""

    def __init__(self, settings: Circular10Settings, store: Store, spool_dir: Path,
                 clock: Clock = time.time, rand: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.tz = ZoneInfo(settings.timezone)
        self.spool = Spool(spool_dir)
        self.backoff = Backoff(min(settings.backoff_base_s, settings.backoff_cap_s),
                               settings.backoff_cap_s, rand)
        self.stats = Circular10Stats(pending=len(self.spool.pending_keys()))
        self._next_render = 0.0  # render at once on start: catch up after a restart
        self._next_attempt = 0.0
        self._next_prune = 0.0
        self.link_up: bool | None = None  # None: not tried yet
        self.stopped = False
        self._lag = settings.grace_s + SETTLE_S
        if not settings.tls:
            log.warning("circular10_plain_ftp", extra={
                "server": f"{settings.host}:{settings.port}", "reason": "tls = false: the "
                "password and the files cross the network in clear text"})

    # --- render ----------------------------------------------------------------------------
    def _due_after(self, now: float) -> float:
        """The next cycle: ``lag`` after a multiple of the interval."""
        k = (now - self._lag) // self.settings.interval_s
        return (k + 1) * self.settings.interval_s + self._lag

    def _closed_windows(self, after: float, now: float) -> Iterator[tuple[int, list[Record]]]:
        # starts are whole seconds: start > after  <=>  start >= floor(after) + 1
        held = self.store.windows(self.settings.window_s, start_from=math.floor(after) + 1,
                                  end_until=now - self._lag)
        window: dict[str, Record] = {}
        current: int | None = None
        for _, rec in held:
            if current is not None and rec.start != current:
                yield current, list(window.values())
                window = {}
            current = rec.start
            # a channel twice in a window: the first record stored counts. A later one is
            # what a clock step back made of a window already stored: marked invalid
            # (CLOCK_JUMP) by the pipeline, it must not turn the file's line into "02"
            window.setdefault(rec.channel, rec)
        if current is not None:
            yield current, list(window.values())

    def render_due(self, now: float) -> int:
        """Spool a file for each window closed since the last one; how many were made."""
        cursor = self.spool.cursor()
        after = now - FIRST_LOOKBACK_S - self.settings.window_s if cursor is None else cursor
        made = 0
        for start, records in self._closed_windows(after, now):
            s = self.settings
            name = circular10.file_name(s.province, s.facility, s.station,
                                        circular10.local(start, self.tz))
            if self.spool.add(start, name, circular10.render(records, self.tz)):
                made += 1
                log.info("circular10_file_made", extra={"file": name, "lines": len(records)})
            self.spool.set_cursor(start)
        self.stats.files_made += made
        self.stats.pending = len(self.spool.pending_keys())
        return made

    # --- send ------------------------------------------------------------------------------
    def _connect(self) -> ftplib.FTP:
        s = self.settings
        ftp: ftplib.FTP
        if s.tls:
            context = ssl.create_default_context(
                cafile=str(s.ca_file) if s.ca_file is not None else None)
            ftp = SessionReuseFTP_TLS(context=context, timeout=s.timeout_s, encoding="utf-8")
        else:
            ftp = ftplib.FTP(timeout=s.timeout_s, encoding="utf-8")
        try:
            ftp.connect(s.host, s.port)
            ftp.login(s.user, s.password)  # FTP_TLS.login sends AUTH TLS first
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()  # the data channel too
            ftp.set_pasv(True)
            ftp.voidcmd("TYPE I")  # binary: bytes as rendered, and SIZE means bytes
            if s.directory:
                ftp.cwd(s.directory)
        except BaseException:
            with contextlib.suppress(*_LINK_ERRORS):
                ftp.close()
            raise
        return ftp

    @staticmethod
    def _remote_size(ftp: ftplib.FTP, name: str) -> int | None:
        try:
            size = ftp.size(name)
        except ftplib.error_perm:  # 550: not there (or SIZE refused): upload it
            return None
        return size

    def _upload(self, ftp: ftplib.FTP, key: str) -> None:
        name = self.spool.remote_name(key)
        data = (self.spool.pending / key).read_bytes()
        if self._remote_size(ftp, name) == len(data):
            self.stats.files_found_on_server += 1
            log.info("circular10_file_already_on_server", extra={"file": name})
        else:
            part = f"{name}.part"
            with open(self.spool.pending / key, "rb") as f:
                ftp.storbinary(f"STOR {part}", f)
            ftp.rename(part, name)
            self.stats.files_sent += 1
            log.info("circular10_file_sent", extra={"file": name, "bytes": len(data)})
        self.spool.mark_sent(key)
        self.stats.last_sent = name

    def send_pending(self) -> int:
        """Deliver every pending file, oldest first, on one connection; how many went."""
        keys = self.spool.pending_keys()
        if not keys:
            return 0
        done = 0
        try:
            ftp = self._connect()
            try:
                for key in keys:
                    self._upload(ftp, key)
                    done += 1
            finally:
                with contextlib.suppress(*_LINK_ERRORS):
                    ftp.quit()
        except _LINK_ERRORS as exc:
            self._link_down(exc, len(keys) - done)
            return done
        finally:
            self.stats.pending = len(self.spool.pending_keys())
        if self.link_up is not True:
            server = f"{self.settings.host}:{self.settings.port}"
            log.info("circular10_link_up", extra={"server": server, "sent": done})
        self.link_up = True
        self.stats.last_error = ""
        self.backoff.reset()
        return done

    def _link_down(self, exc: BaseException, waiting: int) -> None:
        delay = self.backoff.next_delay()
        self._next_attempt = self.clock() + delay
        self.stats.upload_failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        fields: dict[str, Any] = {
            "server": f"{self.settings.host}:{self.settings.port}", "error": self.stats.last_error,
            "pending": waiting, "retry_in_s": round(delay, 2)}
        if isinstance(exc, ssl.SSLCertVerificationError):  # not a flaky link: say what to fix
            trusted = self.settings.ca_file or "the system's CA store"
            fields["reason"] = (f"the server's certificate is not trusted: it does not verify "
                                f"against {trusted}; set ca_file to the CA that signed it")
        # a warning when the link goes down; the retries after it at info level
        (log.warning if self.link_up is not False else log.info)(
            "circular10_upload_failed", extra=fields)
        self.link_up = False

    # --- loop ------------------------------------------------------------------------------
    def step(self) -> None:
        """One turn: render if a cycle is due, send if files wait and the back-off allows,
        prune the sent files now and then."""
        now = self.clock()
        if now >= self._next_render:
            self.render_due(now)
            self._next_render = self._due_after(now)
        if now >= self._next_attempt and self.stats.pending:
            self.send_pending()
        if now >= self._next_prune:
            n = self.spool.prune(now - self.settings.retention_s)
            if n:
                self.stats.pruned += n
                log.info("circular10_spool_pruned", extra={"files": n})
            self._next_prune = now + 3600.0


    def stop(self) -> None:
        """The thread's last act: nothing is held in memory (the spool is the state)."""
        self.stopped = True

    def status(self) -> dict[str, Any]:
        s = self.settings
        up = self.link_up
        state = ("stopped" if self.stopped else "connected" if up
                 else "waiting" if up is None else "retrying")
        return {"state": state, "detail": f"{'ftps' if s.tls else 'ftp'}://{s.host}:"
                f"{s.port}/{s.directory.lstrip('/')}", "stats": asdict(self.stats)}


def circular10_thread(uplink: Circular10Uplink, idle_s: float = 1.0
                      ) -> UplinkThread[Circular10Uplink]:
    """``uplink`` on its own thread: a step every ``idle_s``, 5 s of rest after an error."""
    return UplinkThread(uplink, name="uplink-circular10", log=log,
                        error_event="circular10_uplink_error", error_pause_s=5.0,
                        idle_s=idle_s, stop_error_event="circular10_uplink_stop_failed")
