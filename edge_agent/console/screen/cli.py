"""``quantrac console [--config FILE]``: the technician's full-screen program.

The agent's control socket is found the way ``quantrac status`` and ``diag`` find it
(:func:`edge_agent.console.control_client.find_socket`: ``--socket``, else the config's
``[agent]`` state dir). The config is read in full when it is a
station config, else as the poll-only view ``diag watch`` uses, so the console works on a
station whose config does not (yet) pass ``config check``. Anything unexpected is reported
after the terminal is restored, as one line: never a traceback over the screen.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from edge_agent.console.control_client import DEFAULT_CONFIG

INTERNAL_ERROR = 70  # EX_SOFTWARE


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("console", help="the technician's full-screen program (serial console)",
                       description="Overview, live values, buses, a register read, the agent's "
                                   "events and network tests, on single keys (? lists them).")
    p.add_argument("--config", type=Path, default=None,
                   help="station config (default $QUANTRAC_CONFIG or "
                        f"{DEFAULT_CONFIG})")
    p.add_argument("--socket", type=Path, default=None,
                   help="the agent's control socket (default: the config's state dir)")
    p.add_argument("--log", type=Path, default=os.environ.get("QUANTRAC_AGENT_LOG") or None,
                   help="the agent's log file for the events page (default "
                        "$QUANTRAC_AGENT_LOG, else the journal of quantrac-agent)")
    p.set_defaults(func=_console)


def _console(args: argparse.Namespace) -> int:
    from edge_agent.config.reader import ConfigError, load_config
    from edge_agent.console.control_client import find_socket
    from edge_agent.console.screen.app import run
    from edge_agent.console.screen.source import Source

    _check_terminal()
    path = args.config or Path(os.environ.get("QUANTRAC_CONFIG") or DEFAULT_CONFIG)
    try:
        cfg = load_config(path)
    except ConfigError:  # not a whole station config: what to poll is enough here
        cfg = load_config(path, station_required=False)
    source = Source(cfg, find_socket(args.socket, path), args.log)
    source.start()
    try:
        return run(source)
    except Exception as exc:  # a bug; the terminal is back, so say it in one line
        print(f"quantrac console: internal error: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return INTERNAL_ERROR
    finally:
        source.stop()


def _check_terminal() -> None:
    """Refuse before the screen starts, in one line, what curses would fail on later: no
    terminal on stdin/stdout (a pipe, cron), or a ``$TERM`` terminfo does not know."""
    import curses

    from protocol.cli_error import UsageError

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("quantrac console needs a terminal on stdin and stdout (for a "
                         "script: quantrac status, or quantrac diag)")
    term = os.environ.get("TERM") or ""
    try:
        curses.setupterm(term or "dumb", sys.stdout.fileno())
    except curses.error:
        raise UsageError(f"TERM={term!r}: a terminal type this system does not know; try "
                         "TERM=vt100") from None
