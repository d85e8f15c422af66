"""`quantrac sim`: simulated analysers and stations."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("sim", help="simulated analysers and stations")
    parser.set_defaults(func=_not_yet)


def _not_yet(args: argparse.Namespace) -> int:
    print("quantrac sim: not implemented yet")
    return 2
