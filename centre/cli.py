"""`quantrac centre`: the reference centre receiver.

A thin ``register()``: each group of actions lives in its own small module with its own
``register(actions)``; add new ones to ``_MODULES``.
"""

from __future__ import annotations

import argparse
from typing import Any

from centre import broker_cli, provision_cli, serve_cli
from centre.web import cli as web_cli

_MODULES = (provision_cli, serve_cli, broker_cli, web_cli)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("centre", help="the reference centre receiver")
    actions = parser.add_subparsers(dest="centre_command", metavar="ACTION")
    actions.required = True
    for module in _MODULES:
        module.register(actions)
