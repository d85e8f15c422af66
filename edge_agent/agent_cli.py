"""`quantrac run | status | config check`: the daemon, its status, and config validation."""

from __future__ import annotations

import argparse
from typing import Any


def register_run(sub: argparse._SubParsersAction[Any]) -> None:
    """Placeholder until the daemon lands."""


def register_status(sub: argparse._SubParsersAction[Any]) -> None:
    """Placeholder until the daemon lands."""


def register_config(sub: argparse._SubParsersAction[Any]) -> None:
    """Placeholder until the daemon lands."""
