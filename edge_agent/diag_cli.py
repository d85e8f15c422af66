"""`quantrac diag`: technician diagnostics on a Modbus bus."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("diag", help="technician diagnostics on a Modbus bus")
    parser.set_defaults(func=_not_yet)


def _not_yet(args: argparse.Namespace) -> int:
    print("quantrac diag: not implemented yet")
    return 2
