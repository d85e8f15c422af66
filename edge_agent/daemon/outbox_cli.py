"""`quantrac outbox recover FILE`: send what can be read from a moved-aside outbox file.

A corrupt outbox is moved aside at start (``outbox.sqlite.corrupt-<UTC>``), and an operator may
move one aside by hand; ``quantrac status`` names such a file while it holds unacknowledged
records. This imports the readable ones into the live outbox of the station config's state
directory, under their own sequence numbers, so the uplink sends them (oldest first) and the
centre, which de-duplicates on (station, seq), stores each exactly once (``Store.recover``
explains the choice). The file itself is only read, never changed or deleted: it is evidence.
Safe while the agent runs (SQLite locks the live outbox for each write).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from edge_agent.daemon.agent_cli import DEFAULT_CONFIG
from protocol.cli_error import CommandError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("outbox", help="outbox tools (recover a moved-aside outbox file)")
    actions = p.add_subparsers(dest="outbox_command", metavar="ACTION")
    actions.required = True
    r = actions.add_parser("recover", help="import the readable unacknowledged records of a "
                                           "moved-aside outbox file into the live outbox")
    r.add_argument("file", type=Path)
    r.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help=f"station config (default $QUANTRAC_CONFIG or {DEFAULT_CONFIG})")
    r.set_defaults(func=_recover)


def _recover(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from buffer import OUTBOX_NAME, Store
    from buffer.store import ForeignDatabaseError
    from edge_agent.config.reader import load_config

    cfg = load_config(args.config, station_required=False)
    a = cfg.agent
    try:
        with Store(a.state_dir / OUTBOX_NAME, retention_s=a.record_retention_days * 86400.0,
                   sample_retention_s=a.sample_retention_days * 86400.0) as store:
            got = store.recover(args.file)
    except (ForeignDatabaseError, ValueError) as exc:  # the file is named in the message
        raise CommandError(f"recover: {exc}") from exc
    spans = ", ".join(f"{a}-{b}" for a, b in got.seq_ranges[:10]) or "-"
    print(f"{args.file}: {got.imported} record(s) imported into {a.state_dir / OUTBOX_NAME} "
          f"(seqs {spans}{', ...' if len(got.seq_ranges) > 10 else ''}), "
          f"{got.renumbered} renumbered, {got.already_held} already held, "
          f"{got.acked_skipped} acknowledged (not imported), {got.quarantined} quarantined "
          f"(checksum failed)", file=out)
    for first, last in got.unreadable:
        print(f"{args.file}: seq {first}..{last} unreadable", file=out)
    return 0
