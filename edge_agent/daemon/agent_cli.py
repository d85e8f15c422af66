"""`quantrac run | status | config check`: the daemon, its status, and config validation.

``run`` logs one logfmt line per event on stdout (journald stamps them under systemd).
``status`` asks the running agent over its control socket and prints an 80-column summary
(``--json`` for machines). ``config check`` validates a station config without starting
anything and prints every problem it finds, one per line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from protocol.cli_error import CommandError

DEFAULT_CONFIG = Path(os.environ.get("QUANTRAC_CONFIG", "/etc/quantrac/station.toml"))


def register_run(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("run", help="run the edge agent daemon (poll, average, store, send)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help=f"station config (default $QUANTRAC_CONFIG or {DEFAULT_CONFIG})")
    p.set_defaults(func=_run, logs_always=True)  # the daemon: its log is its output


def register_status(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("status", help="what the running agent sees: devices, channels, "
                                      "backlog, uplink, clock")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help="station config (its control socket)")
    where.add_argument("--socket", type=Path, help="the agent's control socket")
    p.add_argument("--json", action="store_true", help="the full status as JSON")
    p.set_defaults(func=_status)


def register_config(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("config", help="station config tools")
    actions = p.add_subparsers(dest="config_command", metavar="ACTION")
    actions.required = True
    c = actions.add_parser(
        "check", help="validate a station config, and check this machine can run it",
        description="Read the station config and report every mistake in it at once; then check "
                    "the station itself: each serial port exists and opens for the service user "
                    "(or the running agent holds it), each TCP host resolves, the state dir is "
                    "writable by the service user, and [station] id is the provisioned one.",
        epilog="Errors or warnings: the machine is taken for the station when the service user "
               "exists (the package creates it); there a missing port, an unresolved host or "
               "an unusable state dir is an error. Elsewhere (a laptop, a CI box) they are "
               "warnings, since the config is meant for another machine. A station id that "
               "differs from the provisioned identity is an error everywhere.\n\n"
               "exit status: 0 the config reads and nothing stops the station (warnings may be "
               "listed); 1 the config file has problems (the station is not checked until it "
               "reads); 3 the config reads but the station check found errors (or, with "
               "--strict, warnings); 2 a usage error.",
        formatter_class=_Paragraphs)
    c.add_argument("file", type=Path)
    c.add_argument("--offline", action="store_true",
                   help="check the file only, not this machine (ports, hosts, state dir, "
                        "identity): for a config written away from the station")
    c.add_argument("--service-user", default=None, metavar="NAME",
                   help="the user the agent runs as, whose access is checked (default quantrac)")
    c.add_argument("--state-dir", type=Path, default=None,
                   help="the state dir to check (default: the config's [agent] state_dir, "
                        "where the agent reads its identity)")
    c.add_argument("--strict", action="store_true",
                   help="warnings fail too (exit 3): for an installer's script on site")
    c.set_defaults(func=_check)


class _Paragraphs(argparse.HelpFormatter):
    """Help text wrapped as usual, but the epilog's blank lines kept between paragraphs."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(super(_Paragraphs, self)._fill_text(p, width, indent)
                             for p in text.split("\n\n"))


def _run(args: argparse.Namespace) -> int:
    from edge_agent.config.reader import ConfigError, load_config
    from edge_agent.daemon import logs

    logs.configure(args.log_level, stream=sys.stdout,
                   timestamps=not os.environ.get("JOURNAL_STREAM"))
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:  # rc 2, as before: the count, then one line per problem
        raise CommandError(f"{len(exc.problems)} problem(s) in the config:\n{exc}",
                           exit_code=2) from exc
    from edge_agent.daemon.agent import run

    return run(cfg)


STATION_PROBLEMS = 3  # `config check`: the file reads, the station is not ready


def _check(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from edge_agent.config.reader import ConfigError, load_config

    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=out)
        print(f"{len(exc.problems)} problem(s) found", file=out)
        return 1
    from edge_agent.daemon.capacity import retention_capacity

    problem, capacity = retention_capacity(cfg)
    if problem is not None:
        print(problem, file=out)
        print("1 problem(s) found", file=out)
        return 1
    devices = len(cfg.poll.devices)
    print(f"{args.file}: ok: station {cfg.station.id}, {len(cfg.poll.buses)} bus(es), "
          f"{devices} device(s), {len(cfg.channels)} channel(s), windows "
          f"{', '.join(f'{w} s' for w in cfg.averaging.windows)}"
          + (f", roll-ups {', '.join(f'{r.width} s' for r in cfg.averaging.rollups)}"
             if cfg.averaging.rollups else "")
          + "".join(f", rolling {ro.rolling.width_s} s of {', '.join(ro.channels)}"
                    for ro in cfg.averaging.rolling)
          + (", uplink mqtt" if cfg.mqtt else ", no uplink")
          + (f", circular10 {cfg.circular10.transport}://{cfg.circular10.host}:"
             f"{cfg.circular10.port} every {cfg.circular10.interval_minutes:g} min"
             if cfg.circular10 else "")
          + f"; state dir: {capacity}", file=out)
    if cfg.circular10 is not None:  # valid but not compliant: said, not refused
        from edge_agent.config.model import circular10_warnings

        for warning in circular10_warnings(cfg.circular10):
            print(f"{args.file}: warning: {warning}", file=out)
    from edge_agent.config.standards import unverified_warnings

    for warning in unverified_warnings([(f"normalise[{i}]", n.standard, n.source or "")
                                        for i, n in enumerate(cfg.normalise) if n.standard]):
        print(f"{args.file}: warning: {warning}", file=out)
    if args.offline:
        print("station not checked (--offline)", file=out)
        return 0
    from edge_agent.console import station_check

    report = station_check.check_station(
        cfg, service_user=args.service_user or station_check.DEFAULT_SERVICE_USER,
        state_dir=args.state_dir)
    for line in station_check.lines(report):
        print(line, file=out)
    failed = report.errors or (args.strict and report.warnings)
    return STATION_PROBLEMS if failed else 0


def _socket_of(args: argparse.Namespace) -> Path:
    """--socket, else --config's, else the places every tool looks (control_client)."""
    from edge_agent.console.control_client import find_socket

    return find_socket(args.socket, args.config)


def _status(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up per call: a caller may have replaced it
    from edge_agent.console.control_client import ControlError, request
    from edge_agent.console.width import wrap

    sock = _socket_of(args)
    try:
        answer = request(sock, {"op": "status"})
    except ControlError as exc:  # "<socket>: <problem>": the path, then the problem whole,
        room = 80 - len("quantrac status: error: ")  # each wrapped with main's prefix
        path, sep, problem = str(exc).partition(f"{sock}: ")
        parts = [f"{sock}:", problem] if sep and not path else [str(exc)]
        raise CommandError("\n".join(w for part in parts for w in wrap(part, "  ", room))
                           ) from None
    if not answer.get("ok"):
        raise CommandError(f"the agent answered: {answer.get('error')}")
    if args.json:
        # strict JSON even from an agent that still sends NaN: null is "no value"
        from edge_agent.console.control_client import dumps

        out.write(dumps(answer["status"], indent=2, sort_keys=True) + "\n")
    else:
        from edge_agent.console.status_view import render

        for line in render(answer["status"], time.time()):
            print(line, file=out)
    return 0
