"""`quantrac sampler trigger`: start the automatic sampler now, through the running agent.

The agent owns the bus (a second master on an RS-485 line garbles both), so the command asks
it over the control socket (op ``sampler_trigger``) instead of writing the coil itself. The
agent's cooldown and daily cap apply to a person's start too (``[sampler]``): a refusal is
printed with its reason on stderr, exit 1. The start itself runs on the sampler's thread; its
outcome (acknowledged, or the sampler not answering) shows in ``quantrac status``. The centre
learns of it as of an automatic start: the record of the window it fell in is flagged
``sampler_triggered`` (without ``exceedance``) and sent ahead of the backlog
(edge_agent/daemon/exceedance.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from protocol.cli_error import CommandError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("sampler", help="the automatic sampler: start it now (trigger)")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    t = actions.add_parser("trigger", help="start the sampler now, through the running agent "
                                           "(its cooldown and daily cap apply)")
    where = t.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help="station config (its control socket)")
    where.add_argument("--socket", type=Path, help="the agent's control socket")
    t.set_defaults(func=_trigger)


def _trigger(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from edge_agent.console.control_client import request
    from edge_agent.daemon.agent_cli import _socket_of

    answer = request(_socket_of(args), {"op": "sampler_trigger"})
    if not answer.get("ok"):
        raise CommandError(str(answer.get("error")))
    out.write(f"sampler start queued ({answer.get('starts_today')} of "
              f"{answer.get('daily_cap')} today); quantrac status shows its answer\n")
    return 0
