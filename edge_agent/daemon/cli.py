"""The one command-line entry point, ``quantrac``.

Subcommands are contributed by the packages through the ``quantrac.commands`` entry-point
group (see pyproject.toml): each entry is a ``register(subparsers)`` function that adds its
parser and sets ``func`` to a handler returning an exit code. Heavy imports (numba, pymodbus)
belong inside the handlers, so ``quantrac --help`` stays fast on a Raspberry Pi. A handler's
expected failures rise to :func:`main`, which prints them the one way (``protocol.cli_error``).
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
        default=os.environ.get("QUANTRAC_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (default INFO)",
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
    logs.configure(args.log_level, timestamps=not os.environ.get("JOURNAL_STREAM"))
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


if __name__ == "__main__":
    sys.exit(main())
