"""`quantrac centre`: the reference centre receiver."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("centre", help="the reference centre receiver")
    parser.set_defaults(func=_not_yet)


def _not_yet(args: argparse.Namespace) -> int:
    print("quantrac centre: not implemented yet")
    return 2
