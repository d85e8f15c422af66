"""The one command-line entry point, ``quantrac``.

Subcommands are contributed by the packages through the ``quantrac.commands`` entry-point
group (see pyproject.toml): each entry is a ``register(subparsers)`` function that adds its
parser and sets ``func`` to a handler returning an exit code. Heavy imports (numba, pymodbus)
belong inside the handlers, so ``quantrac --help`` stays fast on a Raspberry Pi. A handler's
expected failures rise to :func:`main`, which prints them the one way (``protocol.cli_error``).

Who sees log lines: a person at a terminal wants the command's answer on stdout and, when it
fails, one error on stderr; logfmt lines between the answers only bury them. So interactive
commands show no log lines unless asked (``--verbose``, or ``--log-level`` given). Services
(``quantrac run``, ``centre serve``, ``sim station``: a command whose parser sets
``logs_always=True``) and anything started by systemd (``$JOURNAL_STREAM`` or
``$INVOCATION_ID`` set) always log: there the log *is* the output. Records still reach the
root logger either way (the level is unchanged), so nothing is lost to a caller that attaches
its own handler; only the stderr handler is silenced.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from edge_agent.daemon import logs
from protocol.cli_error import USER_ERRORS, fail

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantrac",
        description="quantrac-edge: environmental monitoring station gateway",
    )
    parser.add_argument(
        "--log-level",
        default=None,
        help="DEBUG, INFO, WARNING or ERROR (default $QUANTRAC_LOG_LEVEL or INFO); giving it "
             "also shows the log lines of an interactive command",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="show log lines on stderr (interactive commands print only their answer otherwise)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for ep in sorted(entry_points(group="quantrac.commands"), key=lambda e: e.name):
        register: Register = ep.load()
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    explicit_level: str | None = args.log_level
    args.log_level = explicit_level or os.environ.get("QUANTRAC_LOG_LEVEL", "INFO")
    show = (args.verbose or explicit_level is not None or getattr(args, "logs_always", False)
            or under_systemd())
    logs.configure(args.log_level, timestamps=not os.environ.get("JOURNAL_STREAM"), show=show)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # an OSError, but not a failure: the reader (| head) has enough
        return 0
    except USER_ERRORS as exc:  # expected: one line, the operator's to fix
        return fail(args.command, exc)
    # anything else is a bug: its traceback is what the report needs


def under_systemd() -> bool:
    """Started by systemd (a service's stdout/stderr go to the journal): log as a service."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


if __name__ == "__main__":
    sys.exit(main())
