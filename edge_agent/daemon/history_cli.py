"""``quantrac history``: the station's own records, read from its outbox, as ``centre query`` shows
the centre's.

The station keeps its records for the legal 60 days and must be able to show them itself
(Circular 10/2021), with or without a link to the centre. Same options, same SQL, same columns
as ``centre query`` (``protocol.record_filter``, ``buffer.record_select``,
``protocol.record_view``), plus the outbox's own ``state`` column: ``pending`` (not sent yet),
``sent`` (waiting for the centre's acknowledgement), ``acked`` (the centre holds it).

The file comes from the station config (``--config``: ``[agent] state_dir``/outbox.sqlite, and
the station's zone and validity thresholds, so a reason names the station's own coverage rule)
or is given (``--store``: a copy on a stick, a moved-aside file). It is only read
(``buffer.outbox_read``): safe while the agent runs, and a file that is not an outbox is
refused by name. Records whose checksum fails are left out and counted on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from edge_agent.config.coverage import thresholds as thresholds  # the station page's too
from edge_agent.daemon.agent_cli import DEFAULT_CONFIG
from protocol import record_filter

EXTRA_COLUMNS = ("state",)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("history", help="the station's own records, from its outbox (text or CSV)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help=f"station config: its outbox, zone and "
                       f"validity rules (default $QUANTRAC_CONFIG or {DEFAULT_CONFIG})")
    where.add_argument("--store", type=Path, help="an outbox file (outbox.sqlite) to read")
    record_filter.add_arguments(p)
    p.set_defaults(func=_history)


def _history(args: argparse.Namespace) -> int:
    from buffer import OUTBOX_NAME
    from buffer.outbox_read import OutboxReader
    from edge_agent.config.reader import load_config
    from protocol import record_view

    zone_name, limits = args.zone, None
    if args.store is not None:
        path = args.store
    else:
        cfg = load_config(args.config or DEFAULT_CONFIG)
        path = cfg.agent.state_dir / OUTBOX_NAME
        zone_name, limits = zone_name or cfg.station.timezone, thresholds(cfg)
    tz = record_filter.zone(zone_name or record_filter.DEFAULT_ZONE)
    wanted = record_filter.from_args(args, tz, time.time())
    with OutboxReader(path) as outbox:
        selected = outbox.select(wanted)
        if not selected.records and not selected.unsound and wanted.channel is not None:
            record_filter.require_known("channel", wanted.channel, outbox.channels(), str(path))
    rows = [record_view.Held(r.seq, r.record, (r.state,)) for r in selected.records]
    if args.format == "csv":
        sys.stdout.write(record_view.render_csv(rows, tz, EXTRA_COLUMNS, limits))
    else:
        sys.stdout.write(record_view.render_text(rows, tz, wide=args.wide,
                                                 extra_columns=EXTRA_COLUMNS, thresholds=limits))
    if selected.unsound:
        seqs = ", ".join(str(s) for s in selected.unsound[:10])
        more = ", ..." if len(selected.unsound) > 10 else ""
        print(f"quantrac history: {len(selected.unsound)} record(s) left out: their checksum "
              f"fails or the agent quarantined them (seq {seqs}{more}); `quantrac status` "
              "lists them", file=sys.stderr)
    return 0
