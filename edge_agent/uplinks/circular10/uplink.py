"""The Circular 10 uplink: text files pushed to the province's server every few minutes.

This is the regulator's path (Circular 10/2021/TT-BTNMT); in code it has one name, Circular 10:
the config table ``[uplink.circular10]``, the status key ``uplink_circular10``, the logger
``quantrac.edge_agent.circular10``, log events ``circular10_*``, and the classes
:class:`Circular10Settings`, :class:`Circular10Uplink`, :class:`Circular10Stats`.

The policy here does not depend on the transport: it talks to a
:class:`~edge_agent.uplinks.circular10.transport.RemoteFiles` session that
:func:`~edge_agent.uplinks.circular10.connect.connector` opens (FTP, FTPS or SFTP).

Two jobs on one thread (:func:`circular10_thread`, an
:class:`~edge_agent.uplinks.thread.UplinkThread`), never on the agent's event loop:

1. **Render.** At every cycle (``interval_minutes``, aligned to the wall clock and run
   ``grace_s + SETTLE_S`` after a window end, when the pipeline has stored that window's
   records) every window of width ``window`` that closed since the last file becomes one file
   (:func:`edge_agent.uplinks.circular10.render.render_file`, for the configured receiver),
   written to the spool's ``pending/`` (temp file, fsync, rename: a crash leaves no half file).
   Records of one window are committed in one transaction by the agent, so a window is never
   rendered with half its channels.
2. **Send.** Whenever ``pending/`` holds files and the back-off allows: one session, the files
   oldest first, each into its dated folder (made if missing), then moved locally to
   ``sent/``. Upload mode ``rename`` stores ``.<stem>.part`` and renames it to the final
   name, so a receiver never reads a half file; the temp name does not end in ``.txt`` and
   does not start with the province's prefix, so a receiver that takes ``<prefix>*.txt`` (or
   any ``*.txt``) ignores it. When the server refuses the rename (upload-only accounts are
   common) the file is stored directly under its final name, and the spool remembers that this
   server wants direct uploads (``upload_mode``), so the refused rename is not tried again.
   ``files_per_minute`` paces a backlog for a receiver that reads only the newest file.

What goes wrong is sorted by what a retry can do (:mod:`~edge_agent.uplinks.circular10.transport`):
a dead link backs off exponentially (capped) and keeps the files; a permanent refusal (530
login, a folder the account may not make, an unknown host key) is state ``refused`` in
``quantrac status`` with what to fix, logged once, and retried every ``refused_retry_s``
(and at once after a config change: the agent builds a new uplink). Nothing is dropped.

Nothing is remembered in memory only. The spool (``<state_dir>/circular10/``) is the state:

* ``pending/<start>_<NAME>``: made, not yet delivered (never pruned: unsent data);
* ``sent/<start>_<NAME>``: delivered; pruned after ``retention_days``;
* ``cursor``: the start (UTC epoch) of the newest window rendered. A restart renders only
  windows after ``max(cursor, newest spool file)``, so a file is made once;
* ``upload_mode``: present when a server refused a rename (which server, and why);
* ``resend/<key>``: the operator asked for this pending file to go again
  (``quantrac circular10 resend``): it is uploaded even when the server holds a file of that
  name and size, since the province said it lost it (its database, not always its folder) and
  the same bytes under the same name harm nothing. The marker is made before the file, so the
  uplink never sees a resent file without it, and removed once the file is in ``sent/``.

A file's modification time says when it was made (``pending/``) or delivered (``sent/``:
:meth:`Spool.mark_sent` sets it), which ``quantrac circular10 list`` shows.

``<start>`` (UTC epoch seconds, zero-padded) orders the spool oldest first whatever the zone.
The dated folder is filled from the time in the name (what receivers read). A restart between
the server's rename and the local move to ``sent/`` is caught before each upload: a file
already on the server with the same size counts as delivered and is not sent again. First
start ever (no cursor): windows of the last ``FIRST_LOOKBACK_S`` only; older records are in the
outbox (and the MQTT link), not worth a flood of old files to the centre. After a backward
clock jump, windows that start at or before the cursor are not rendered again (their file
names are taken).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from buffer import Store
from edge_agent.config.model import fill_remote_dir
from edge_agent.uplinks.circular10 import render as circular10
from edge_agent.uplinks.circular10.connect import connector
from edge_agent.uplinks.circular10.settings import Circular10Settings
from edge_agent.uplinks.circular10.transport import (
    Connect,
    LinkDown,
    PermanentRefusal,
    RemoteFiles,
    RenameRefused,
)
from edge_agent.uplinks.thread import UplinkThread
from protocol.backoff import Backoff
from protocol.clock import Clock
from protocol.model import Record
from provisioning.securefs import sync_dir, write_replace

log = logging.getLogger("quantrac.edge_agent.circular10")

SETTLE_S = 2.0  # after end + grace: the agent's tick has stored the window's records
FIRST_LOOKBACK_S = 3600.0
SPOOL_NAME = "circular10"
UPLOAD_MODE = "upload_mode"
RESEND_DIR = "resend"


def part_name(name: str) -> str:
    """The temp name of ``name`` during a rename-mode upload: ``.<stem>.part``. Receivers take
    ``<prefix>*.txt`` (or ``*.txt``) in a dated folder; this starts with a dot, not with the
    prefix, and does not end in ``.txt``, so none of them ingests a half file, nor the one an
    upload-only account (no rename, no delete) leaves behind."""
    stem = name[:-4] if name.endswith(".txt") else name
    return f".{stem}.part"


def _join(*parts: str) -> str:
    """POSIX join of non-empty parts; a leading ``/`` of the first is kept."""
    out = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return "/" + out if parts and parts[0].startswith("/") else out


def group_windows(held: Iterable[tuple[int, Record]]) -> Iterator[tuple[int, list[Record]]]:
    """(start, records) per window, from records by start then seq (``Store.windows``).

    A channel twice in a window: the first record stored counts. A later one is what a clock
    step back made of a window already stored: marked invalid (CLOCK_JUMP) by the pipeline, it
    must not replace the line of the one that counts. ``quantrac circular10 resend`` groups
    with this too, so a file made again is the file made the first time."""
    window: dict[str, Record] = {}
    current: int | None = None
    for _, rec in held:
        if current is not None and rec.start != current:
            yield current, list(window.values())
            window = {}
        current = rec.start
        window.setdefault(rec.channel, rec)
    if current is not None:
        yield current, list(window.values())


def _name_time(name: str) -> dt.datetime:
    """The local time in a file's name (``...yyyyMMddHHmmss.txt``); ValueError when there
    is none. By slicing, not ``strptime`` (tens of microseconds a name, and an export
    places 17,000 files)."""
    stamp = name[-18:-4]
    if len(stamp) != 14 or not stamp.isascii() or not stamp.isdigit():
        raise ValueError(f"{name!r}: no yyyyMMddHHmmss time before .txt")
    return dt.datetime(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[8:10]),
                       int(stamp[10:12]), int(stamp[12:]))


def remote_path(settings: Circular10Settings, name: str) -> tuple[str, str]:
    """(folder, path) of a spooled file on the server: its dated folder is filled from the
    local time in its name, which is what receivers read."""
    at = _name_time(name)
    folder = _join(settings.directory, fill_remote_dir(settings.receiver.remote_dir, at))
    return folder, _join(folder, name)


@dataclass
class Circular10Stats:
    """Counters for ``quantrac status`` and tests."""

    files_made: int = 0
    files_sent: int = 0
    files_found_on_server: int = 0  # delivered before a restart, not sent twice
    files_sent_direct: int = 0  # stored under the final name (upload = direct, or fallback)
    upload_failures: int = 0
    refusals: int = 0  # permanent refusals met (each retried slowly)
    pruned: int = 0
    pending: int = 0
    last_sent: str = ""
    last_error: str = ""


class Spool:
    """The on-disk state of the uplink (layout in the module docstring).

    ``tidy`` (the uplink, at start) deletes the temp files a crash mid-write left; a command
    beside a running agent passes ``tidy=False``, or it would delete the agent's file being
    written."""

    def __init__(self, root: Path, *, tidy: bool = True) -> None:
        self.root = root
        self.pending = root / "pending"
        self.sent = root / "sent"
        self.resend = root / RESEND_DIR
        for d in (root, self.pending, self.sent, self.resend):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if tidy:
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

    def sent_keys(self) -> list[str]:
        """Files delivered and not pruned yet, oldest window first."""
        return sorted(p.name for p in self.sent.iterdir() if not p.name.startswith("."))

    def requeue(self, start: int, name: str, data: bytes) -> bool:
        """Put a file the operator asked to send again in ``pending/``, marked as a resend;
        False when a file of that window is pending already (it goes anyway: not doubled)."""
        if any(self.start_of(k) == start for k in self.pending_keys()):
            return False
        key = self.key(start, name)
        write_replace(self.resend / key, b"")  # first: the uplink must not see it unmarked
        write_replace(self.pending / key, data)
        return True

    def is_resend(self, key: str) -> bool:
        return (self.resend / key).exists()

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

    def direct_for(self, server: str) -> bool:
        """Did ``server`` refuse a rename before (then upload directly)?"""
        remembered = self.remembered_direct()
        return remembered is not None and remembered[0] == server

    def remembered_direct(self) -> tuple[str, str] | None:
        """(server, the refusal it gave) when a server refused a rename, else None."""
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = (self.root / UPLOAD_MODE).read_text(encoding="utf-8")
            first, _, why = text.partition("\n")
            if first.startswith("direct "):
                return first.removeprefix("direct "), why.strip()
        return None

    def remember_direct(self, server: str, why: str) -> None:
        write_replace(self.root / UPLOAD_MODE, f"direct {server}\n{why}\n".encode())

    def set_cursor(self, start: int) -> None:
        write_replace(self.root / "cursor", f"{start}\n".encode())

    def mark_sent(self, key: str, at: float) -> None:
        """Move a delivered file to ``sent/``, its modification time ``at`` (when it went)."""
        os.utime(self.pending / key, (at, at))
        os.replace(self.pending / key, self.sent / key)
        sync_dir(self.sent)
        sync_dir(self.pending)
        (self.resend / key).unlink(missing_ok=True)

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
                 clock: Clock = time.time, rand: Callable[[], float] = random.random,
                 connect: Connect | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.tz = ZoneInfo(settings.timezone)
        self.spool = Spool(spool_dir)
        self.connect = connect if connect is not None else connector(settings)
        self.backoff = Backoff(min(settings.backoff_base_s, settings.backoff_cap_s),
                               settings.backoff_cap_s, rand)
        self.stats = Circular10Stats(pending=len(self.spool.pending_keys()))
        self._next_render = 0.0  # render at once on start: catch up after a restart
        self._next_attempt = 0.0
        self._next_prune = 0.0
        self.link_up: bool | None = None  # None: not tried yet
        self.refusal: PermanentRefusal | None = None  # the standing permanent refusal
        self.direct = settings.receiver.upload == "direct" or \
            self.spool.direct_for(settings.server)
        self.stopped = False
        self._lag = settings.grace_s + SETTLE_S
        pace = settings.receiver.files_per_minute
        self._pace_s = 60.0 / pace if pace > 0 else 0.0
        if settings.transport == "ftp":
            log.warning("circular10_plain_ftp", extra={
                "server": f"{settings.host}:{settings.port}", "reason": "transport = ftp: the "
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
        yield from group_windows(held)

    def render_due(self, now: float) -> int:
        """Spool a file for each window closed since the last one; how many were made."""
        cursor = self.spool.cursor()
        after = now - FIRST_LOOKBACK_S - self.settings.window_s if cursor is None else cursor
        made = 0
        s = self.settings
        for start, records in self._closed_windows(after, now):
            f = circular10.render_file(s.receiver, self.tz, start, s.window_s, records)
            if f.lines == 0:  # every line left out by the profile (omit_missing, invalid)
                log.info("circular10_window_empty", extra={"file": f.name})
            elif self.spool.add(start, f.name, f.data):
                made += 1
                log.info("circular10_file_made", extra={"file": f.name, "lines": f.lines})
            self.spool.set_cursor(start)
        self.stats.files_made += made
        self.stats.pending = len(self.spool.pending_keys())
        return made

    # --- send ------------------------------------------------------------------------------
    def remote_path(self, name: str) -> tuple[str, str]:
        return remote_path(self.settings, name)

    def _upload(self, files: RemoteFiles, key: str) -> bool:
        """Deliver one file; True when it went over the link (not found there already)."""
        name = self.spool.remote_name(key)
        data = (self.spool.pending / key).read_bytes()
        folder, path = self.remote_path(name)
        if folder:
            files.make_dirs(folder)
        resend = self.spool.is_resend(key)  # asked for again: the server's copy is not enough
        sent = resend or files.size(path) != len(data)
        if not sent:
            self.stats.files_found_on_server += 1
            log.info("circular10_file_already_on_server", extra={"file": path})
        elif self.direct:
            files.store(path, data)
            self.stats.files_sent_direct += 1
        else:
            part = _join(folder, part_name(name))
            files.store(part, data)
            try:
                files.rename(part, path)
            except RenameRefused as exc:
                self._rename_refused(exc, part)
                files.store(path, data)
                self.stats.files_sent_direct += 1
        if sent:
            self.stats.files_sent += 1
            log.info("circular10_file_sent", extra={"file": path, "bytes": len(data),
                                                    "resend": resend})
        self.spool.mark_sent(key, self.clock())
        self.stats.last_sent = name
        return sent

    def _rename_refused(self, exc: RenameRefused, part: str) -> None:
        self.direct = True
        self.spool.remember_direct(self.settings.server, str(exc))
        log.warning("circular10_rename_refused", extra={
            "server": self.settings.server, "error": str(exc), "left_on_server": part,
            "reason": "the account may not rename: files are stored under their final name "
                      "from now on (remembered in the spool); the temp file is named so that "
                      "receivers ignore it"})

    def send_pending(self) -> int:
        """Deliver pending files, oldest first, on one session; how many went. With pacing,
        one file per call (then the next one waits ``60 / files_per_minute`` seconds)."""
        keys = self.spool.pending_keys()
        if not keys:
            return 0
        done = 0
        try:
            files = self.connect()
            try:
                for key in keys:
                    went = self._upload(files, key)
                    done += 1
                    if went and self._pace_s:
                        self._next_attempt = self.clock() + self._pace_s
                        break
            finally:
                files.close()
        except PermanentRefusal as exc:
            self._refused(exc)
            return done
        except LinkDown as exc:
            self._link_down(exc, len(keys) - done)
            return done
        finally:
            self.stats.pending = len(self.spool.pending_keys())
        if self.link_up is not True or self.refusal is not None:
            log.info("circular10_link_up", extra={"server": self.settings.server, "sent": done})
        self.link_up = True
        self.refusal = None
        self.stats.last_error = ""
        self.backoff.reset()
        return done

    def _refused(self, exc: PermanentRefusal) -> None:
        """Loud once, then quiet: retried every ``refused_retry_s``, never in a tight loop."""
        again = self.refusal is not None and str(self.refusal) == str(exc)
        self.refusal = exc
        self.link_up = False
        self.stats.refusals += 1
        self.stats.last_error = str(exc)
        self._next_attempt = self.clock() + self.settings.refused_retry_s
        (log.info if again else log.error)("circular10_refused", extra={
            "server": self.settings.server, "error": str(exc), "fix": exc.fix,
            "pending": len(self.spool.pending_keys()),
            "retry_in_s": self.settings.refused_retry_s})

    def _link_down(self, exc: LinkDown, waiting: int) -> None:
        delay = self.backoff.next_delay()
        self._next_attempt = self.clock() + delay
        self.refusal = None
        self.stats.upload_failures += 1
        self.stats.last_error = str(exc)
        fields: dict[str, Any] = {
            "server": self.settings.server, "error": self.stats.last_error,
            "pending": waiting, "retry_in_s": round(delay, 2)}
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
        state = ("stopped" if self.stopped else "refused" if self.refusal is not None
                 else "connected" if up else "waiting" if up is None else "retrying")
        out: dict[str, Any] = {
            "state": state, "detail": f"{s.transport}://{s.host}:{s.port}/"
            f"{s.directory.lstrip('/')}", "stats": asdict(self.stats),
            "upload": "direct" if self.direct else "rename"}
        if self.refusal is not None:
            out["fix"] = self.refusal.fix
        return out


def circular10_thread(uplink: Circular10Uplink, idle_s: float = 1.0
                      ) -> UplinkThread[Circular10Uplink]:
    """``uplink`` on its own thread: a step every ``idle_s``, 5 s of rest after an error."""
    return UplinkThread(uplink, name="uplink-circular10", log=log,
                        error_event="circular10_uplink_error", error_pause_s=5.0,
                        idle_s=idle_s, stop_error_event="circular10_uplink_stop_failed")
