"""Can this station's state directory hold the records the law says it must keep?

``quantrac config check`` asks this after the config has been read: it measures a filesystem
(``shutil.disk_usage``, the outbox's files), so it is an edge of the daemon, not a part of the
pure config (:mod:`edge_agent.config.model` only counts ``records_per_day``).
"""

from __future__ import annotations

import shutil

from buffer.store import BYTES_PER_RECORD, OUTBOX_NAME
from edge_agent.config.model import StationConfig, records_per_day
from edge_agent.config.reader import Problem
from edge_agent.daemon.agent import RESERVE_BYTES


def retention_capacity(cfg: StationConfig) -> tuple[Problem | None, str]:
    """Whether ``agent.state_dir``'s filesystem can hold ``record_retention_days`` (at least the
    legal 60) of this station's records, plus the outbox's reserve; and a one-line summary.

    On a full disk the outbox gives up acknowledged records *inside* the retention only to keep
    unacknowledged ones, and that breaks the station's own 60-day storage duty; this is where
    an installer learns it before it happens. The need is records/day x days x
    ``buffer.store.BYTES_PER_RECORD`` (measured on a real file) + the reserve; the room is the
    filesystem's free space plus what the outbox already occupies. A state dir not made yet
    is judged by its nearest existing parent. Raw samples are not counted: they are the first
    thing a full disk gives up.
    """
    a = cfg.agent
    days = a.record_retention_days
    need = records_per_day(cfg) * days * BYTES_PER_RECORD + RESERVE_BYTES
    where = a.state_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return Problem(str(cfg.source), "agent.state_dir", str(a.state_dir),
                       f"a directory whose filesystem can be checked ({exc.strerror})"), ""
    held = sum(p.stat().st_size for p in a.state_dir.glob(OUTBOX_NAME + "*") if p.is_file()) \
        if a.state_dir.exists() else 0
    room = free + held
    mb = 1024 * 1024
    summary = (f"{days:g} days of records need {need / mb:.1f} MB "
               f"({records_per_day(cfg):.0f} records/day), {room / mb:.1f} MB available")
    if room < need:
        return Problem(
            str(cfg.source), "agent.state_dir", str(a.state_dir),
            f"a filesystem that holds {days:g} days of this station's records, the station's "
            f"own storage duty (Decree 08/2022/NĐ-CP art. 97): {summary} on {where}"), summary
    return None, summary
