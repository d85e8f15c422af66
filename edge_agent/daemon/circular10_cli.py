"""``quantrac circular10 list / show / resend``: the operator's view of the Circular 10 spool.

The spool (``<state_dir>/circular10/``, :class:`~edge_agent.uplinks.circular10.uplink.Spool`)
is files, so these work whether the agent runs or not: ``list`` and ``show`` only read, and
``resend`` writes each file as the uplink does (temp file, fsync, rename) into ``pending/``,
where the running uplink finds it at its next cycle (or the agent at its start). Nothing here
tidies the spool's temp files: one may be the running agent's file being written.

``resend`` writes files the agent must read and move, so it refuses to run as another user
than the spool's owner (``root`` would leave files the service user cannot read).

Every string from a file is outside input (``show`` takes a file an inspector copied from
anywhere; names and the server's refusal text come from the spool): escaped where shown
(``protocol.safe_text``). Times are the station's wall clock (``[station] timezone``), as in
the file names. Answers on stdout; a mistake is a ``protocol.cli_error`` error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

from edge_agent.daemon.agent_cli import DEFAULT_CONFIG
from protocol import record_filter
from protocol.cli_error import CommandError, UsageError
from protocol.safe_text import escape_controls as shown

if TYPE_CHECKING:
    from edge_agent.uplinks.circular10.resend import ResendPlan
    from edge_agent.uplinks.circular10.settings import Circular10Settings
    from edge_agent.uplinks.circular10.uplink import Spool

_KEY = re.compile(r"\d{11}_.+")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("circular10", help="the Circular 10 files: list the spool, show a "
                                          "file, send a period again")
    cmds = p.add_subparsers(dest="circular10_command", metavar="COMMAND")
    cmds.required = True
    config_help = f"station config (default $QUANTRAC_CONFIG or {DEFAULT_CONFIG})"

    ls = cmds.add_parser("list", help="the spool's files, oldest first, and what waits")
    ls.add_argument("--config", type=Path, help=config_help)
    which = ls.add_mutually_exclusive_group()
    which.add_argument("--pending", action="store_true", help="only files not delivered yet")
    which.add_argument("--sent", action="store_true", help="only files delivered")
    _period_arguments(ls, required=False)
    ls.set_defaults(func=_list)

    show = cmds.add_parser("show", help="one file's lines as a table, and its check")
    show.add_argument("file", help="the name on the server, the spool key, or a path to any "
                                   "Circular 10 file")
    show.add_argument("--config", type=Path, help=config_help + "; not needed for a path")
    show.set_defaults(func=_show)

    again = cmds.add_parser("resend", help="make a period's files again and queue them for "
                                           "the running uplink")
    again.add_argument("--config", type=Path, help=config_help)
    _period_arguments(again, required=True)
    again.add_argument("--yes", action="store_true",
                       help="do not ask (a script that checked the period itself)")
    again.set_defaults(func=_resend)


def _period_arguments(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--from", dest="t_from", required=required, metavar="TIME",
                   help="windows starting at or after this time: 2026-11-23 or "
                        "2026-11-23T07:00 (station time unless an offset is given)")
    p.add_argument("--to", dest="t_to", required=required, metavar="TIME",
                   help="windows starting before this time (same forms)")


@dataclass(frozen=True)
class _Station:
    settings: Circular10Settings
    spool: Spool
    tz: ZoneInfo
    config: Path
    outbox: Path


def _station(config: Path | None) -> _Station:
    """The config's Circular 10 settings and its spool (refused by name when missing)."""
    from buffer import OUTBOX_NAME
    from edge_agent.config.reader import load_config
    from edge_agent.uplinks.circular10.settings import Circular10Settings
    from edge_agent.uplinks.circular10.uplink import SPOOL_NAME, Spool

    path = config or DEFAULT_CONFIG
    cfg = load_config(path)
    if cfg.circular10 is None:
        raise UsageError(f"{path}: no [uplink.circular10] table: this station sends no "
                         "Circular 10 files")
    root = cfg.agent.state_dir / SPOOL_NAME
    if not root.is_dir():
        raise CommandError(f"{root}: no Circular 10 spool there ([agent] state_dir of {path}): "
                           "the uplink has not run with this config yet")
    return _Station(Circular10Settings.from_config(cfg), Spool(root, tidy=False),
                    ZoneInfo(cfg.station.timezone), path, cfg.agent.state_dir / OUTBOX_NAME)


def _period(args: argparse.Namespace, tz: ZoneInfo) -> tuple[float | None, float | None]:
    t0 = record_filter.parse_time(args.t_from, tz, "--from") if args.t_from else None
    t1 = record_filter.parse_time(args.t_to, tz, "--to", end=True) if args.t_to else None
    if t0 is not None and t1 is not None and t0 >= t1:
        raise UsageError(f"--to {args.t_to!r} is not after --from {args.t_from!r}")
    return t0, t1


def _local(t: float, tz: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return dt.datetime.fromtimestamp(t, tz).strftime(fmt)


# --- list ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    key: str
    state: str  # pending, sent
    path: Path

    @property
    def start(self) -> int:
        return int(self.key.split("_", 1)[0])

    @property
    def name(self) -> str:
        return self.key.split("_", 1)[1]


def _entries(spool: Spool) -> list[_Entry]:
    out = [_Entry(k, "pending", spool.pending / k) for k in spool.pending_keys()]
    out += [_Entry(k, "sent", spool.sent / k) for k in spool.sent_keys()]
    return sorted(out, key=lambda e: (e.start, e.state))


def _list(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from edge_agent.uplinks.circular10.uplink import remote_path

    st = _station(args.config)
    t0, t1 = _period(args, st.tz)
    w = st.settings.window_s
    every = [e for e in _entries(st.spool) if _KEY.fullmatch(e.key)]
    rows = [e for e in every
            if (not args.pending or e.state == "pending") and (not args.sent or e.state == "sent")
            and (t0 is None or e.start >= t0) and (t1 is None or e.start < t1)]
    width = max([len(shown(e.name)) for e in rows] + [len("file")])
    print(f"Circular 10 spool {shown(str(st.spool.root))}", file=out)
    print(f"windows of {w // 60} min, station time ({st.tz.key})", file=out)
    if rows:
        print(f"  {'window':<11}  {'file':<{width}}  {'state':<16} {'bytes':>5} lines",
              file=out)
    group: tuple[str, str] | None = None
    for e in rows:
        try:
            folder, _ = remote_path(st.settings, e.name)
        except ValueError:  # not a name the uplink makes: shown, not placed
            folder = "?"
        heading = (_local(e.start, st.tz, "%Y-%m-%d"), folder)
        if heading != group:
            print(f"{heading[0]}  {shown(folder or '/')}/", file=out)
            group = heading
        try:
            info = e.path.stat()
            data = e.path.read_bytes()
        except FileNotFoundError:  # the running uplink moved it meanwhile
            continue
        state = "pending" if e.state == "pending" else \
            "sent " + _local(info.st_mtime, st.tz, "%m-%d %H:%M")
        span = f"{_local(e.start, st.tz, '%H:%M')}-{_local(e.start + w, st.tz, '%H:%M')}"
        lines = data.count(b"\n")
        print(f"  {span:<11}  {shown(e.name):<{width}}  {state:<16} {len(data):>5} "
              f"{lines:>5}", file=out)
    _summary(st, every, len(rows), out)
    return 0


def _summary(st: _Station, every: Sequence[_Entry], listed: int, out: TextIO) -> None:
    pending = [e for e in every if e.state == "pending"]
    shown_note = f" ({listed} listed)" if listed != len(every) else ""
    if not every:
        print("no files in the spool yet", file=out)
    elif pending:
        oldest = pending[0]
        try:
            since = _local(oldest.path.stat().st_mtime, st.tz, "%Y-%m-%d %H:%M:%S")
        except FileNotFoundError:
            since = "just now"
        print(f"{len(pending)} pending, oldest since {since} (window "
              f"{_local(oldest.start, st.tz)}); {len(every) - len(pending)} sent{shown_note}",
              file=out)
    else:
        print(f"0 pending; {len(every)} sent{shown_note}", file=out)
    remembered = st.spool.remembered_direct()
    if st.settings.receiver.upload == "direct":
        print("upload: direct (receiver.upload = \"direct\")", file=out)
    elif remembered is not None and remembered[0] == st.settings.server:
        print(f"upload: direct, remembered for {shown(remembered[0])}: it refused a rename "
              f"({shown(remembered[1])})", file=out)
    else:
        print("upload: rename (a temp name, then the final name)", file=out)


# --- show ----------------------------------------------------------------------------------
def _show(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from edge_agent.uplinks.circular10 import reading

    given = Path(args.file)
    where = ""
    if given.is_file():
        path = given
        base = given.name
        name = base.split("_", 1)[1] if _KEY.fullmatch(base) else base
        where = str(given)
    else:
        st = _station(args.config)
        path, name, where = _in_spool(st, args.file)
    data = path.read_bytes()
    r = reading.read(name, data)
    print(f"{shown(name)}: {shown(where)}", file=out)
    at = r.local_time()
    if at is not None:
        print(f"time in the name: {at:%Y-%m-%d %H:%M:%S} (station time)", file=out)
    table = [reading.FIELDS] + [tuple(shown(f) for f in (*x.fields, "", "", "", "", "")[:5])
                                for x in r.lines]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for n, row in enumerate(table):
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        status = row[4] if n == 0 else f"{row[4]} {reading.STATUS_MEANINGS.get(row[4], '?')}"
        print("  ".join([*cells, status]).rstrip(), file=out)
    for problem in r.problems:
        print(f"problem: {shown(problem)}", file=out)
    for x in r.lines:
        for problem in x.problems:
            print(f"problem: line {x.number}: {shown(problem)}", file=out)
    if r.ok:
        print(f"check: ok: {len(r.lines)} line(s) of 5 TAB fields, each with the name's time; "
              f"ASCII, {r.line_end.upper().replace('CRLF', 'CR LF')} line ends", file=out)
        return 0
    n = len(r.problems) + sum(len(x.problems) for x in r.lines)
    print(f"check: {n} problem(s): a receiver refuses or misreads this file", file=out)
    return 1


def _in_spool(st: _Station, given: str) -> tuple[Path, str, str]:
    """(path, remote name, where it is) of a spool file given by key or by its name on the
    server (a path on the server: its last part); UsageError naming the spool if none."""
    from edge_agent.uplinks.circular10.uplink import remote_path

    base = given.rstrip("/").rsplit("/", 1)[-1]
    for e in _entries(st.spool):
        if base in (e.key, e.name):
            when = ""
            if e.state == "sent":
                with_time = _local(e.path.stat().st_mtime, st.tz, "%Y-%m-%d %H:%M:%S")
                when = f" {with_time}"
            try:
                server = remote_path(st.settings, e.name)[1]
            except ValueError:
                server = "?"
            return e.path, e.name, f"{e.state}{when}, on the server {server}"
    raise UsageError(f"{given}: no such file here, and no file of that name or key in the "
                     f"spool {st.spool.root}; give the name on the server (e.g. "
                     f"{st.settings.receiver.file_prefix}20261123073500.txt), the spool key "
                     "or a path to the file")


# --- resend --------------------------------------------------------------------------------
def _resend(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from buffer.outbox_read import OutboxReader
    from edge_agent.uplinks.circular10 import resend

    st = _station(args.config)
    t0, t1 = _period(args, st.tz)
    assert t0 is not None and t1 is not None  # required options
    period = f"{_local(t0, st.tz)} .. {_local(t1, st.tz)} ({st.tz.key})"
    owner = st.spool.root.stat().st_uid
    if os.geteuid() != owner:
        raise CommandError(f"{st.spool.root} belongs to user id {owner}, not to you "
                           f"({os.geteuid()}): the agent could not read files you write "
                           "there; run it as the service user (sudo -u quantrac quantrac "
                           "circular10 resend ...)")
    if st.spool.cursor() is None:
        raise CommandError(f"{st.spool.root}: the uplink has made no file yet: there is "
                           "nothing to send again (it makes the closed windows itself)")
    w = st.settings.window_s
    with OutboxReader(st.outbox) as outbox:
        selected = outbox.select(record_filter.RecordFilter(t0=t0, t1=t1, window_s=w))
    held = sorted(((r.seq, r.record) for r in selected.records),
                  key=lambda x: (x[1].start, x[0]))
    if not held:
        raise CommandError(f"no {w // 60} min windows in {st.outbox} for {period}: nothing "
                           "to send again; check --from/--to (windows starting in "
                           "[from, to), station time)")
    todo = resend.plan(st.settings, held, st.spool)
    _describe(todo, st, period, out)
    if not todo.files:
        print("nothing queued", file=out)
        return 0
    # the installer's confirm step (a terminal answers, a pipe does not): one way to ask
    from provisioning.cli import _ask as confirm

    confirm(f"queue {len(todo.files)} file(s) for {period}?", args.yes,
            f"resend {period}: nothing queued; check the period above and pass --yes to go "
            "ahead")
    queued = resend.queue(st.spool, todo)
    print(f"queued {queued} file(s) in {st.spool.pending}: the running agent sends them at "
          f"its next cycle (within {st.settings.interval_s / 60:g} min), oldest first"
          f"{_pacing(st.settings)}; if it is not running, when it starts", file=out)
    return 0


def _describe(todo: ResendPlan, st: _Station, period: str, out: TextIO) -> None:
    w = st.settings.window_s
    print(f"resend {period} to {shown(st.settings.server)}", file=out)
    if todo.files:
        first, last = todo.files[0].start, todo.files[-1].start
        print(f"{len(todo.files)} file(s) to queue: windows {_local(first, st.tz)} .. "
              f"{_local(last + w, st.tz)}, uploaded even if the server holds a copy", file=out)
    if todo.already_pending:
        print(f"{len(todo.already_pending)} already pending: they go anyway, not doubled",
              file=out)
    if todo.after_cursor:
        print(f"{todo.after_cursor} window(s) after the newest file made: the uplink makes "
              "them itself", file=out)
    if todo.empty:
        print(f"{todo.empty} window(s) with every line left out by the receiver profile: "
              "no file, as the first time", file=out)
    if todo.differ:
        print(f"{len(todo.differ)} file(s) differ from the copy first sent (the receiver "
              f"profile changed since?), e.g. {shown(todo.differ[0])}", file=out)


def _pacing(settings: Circular10Settings) -> str:
    pace = settings.receiver.files_per_minute
    return f", {pace:g} file(s) a minute (receiver.files_per_minute)" if pace > 0 else ""
