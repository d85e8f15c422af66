"""The one command-line entry point, ``quantrac``.

Subcommands are contributed by the packages through the ``quantrac.commands`` entry-point
group (see pyproject.toml): each entry is a ``register(subparsers)`` function that adds its
parser and sets ``func`` to a handler returning an exit code. Heavy imports (numba, pymodbus)
belong inside the handlers, so ``quantrac --help`` stays fast on a Raspberry Pi.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from edge_agent.daemon import logs

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
    except BrokenPipeError:
        return 0
    except Exception as exc:  # last resort: one clear line, not a traceback, for an operator
        logging.getLogger("quantrac").debug("unhandled", exc_info=True)
        print(f"quantrac: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
