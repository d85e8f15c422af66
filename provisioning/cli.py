"""`quantrac provision`: station identity, keys and enrolment."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("provision", help="station identity, keys and enrolment")
    parser.set_defaults(func=_not_yet)


def _not_yet(args: argparse.Namespace) -> int:
    print("quantrac provision: not implemented yet")
    return 2
