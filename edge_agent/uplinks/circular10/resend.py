"""Sending a period of Circular 10 files again, when the province says it lost them.

``quantrac circular10 resend`` makes each window's file again from the outbox, with the
uplink's own grouping (:func:`~edge_agent.uplinks.circular10.uplink.group_windows`) and renderer
(:func:`~edge_agent.uplinks.circular10.render.render_file`): the same name and, unless the
receiver profile changed since, the same bytes as the first time. The files go into the
spool's ``pending/`` marked as resends (:meth:`~edge_agent.uplinks.circular10.uplink.Spool.
requeue`), and the uplink, running or started later, sends them like any other: oldest first,
into their dated folders, paced by ``files_per_minute`` (a receiver that reads only the newest
file would lose a fast burst of old files as it loses a fast backlog).

What a resend must not disturb:

* **The cursor.** Only windows up to the spool's cursor (the newest window the uplink made)
  are made again; windows after it are the uplink's own next files. A resent file's start is
  never after the cursor, so the cursor (the later of its file and the spool's names) does
  not move: nothing else is made again, nothing skipped.
* **Pending files.** A window with a file already waiting is not queued twice; it goes anyway.
* **The server's copy.** A resent file is uploaded even when the server holds one of the same
  name and size (the module docstring of the uplink says why).

Windows the outbox holds whose file was pruned from ``sent/`` (older than ``retention_days``)
or never made (before the uplink's first start) are made too: the operator asked for the
period, and the outbox is the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from edge_agent.uplinks.circular10.render import Circular10File, render_file
from edge_agent.uplinks.circular10.settings import Circular10Settings
from edge_agent.uplinks.circular10.uplink import Spool, group_windows
from protocol.model import Record


@dataclass(frozen=True)
class Queued:
    """One file to send again: its window start and the file as rendered now."""

    start: int
    file: Circular10File


@dataclass
class ResendPlan:
    """What a resend of a period would do (nothing is written until :func:`queue`)."""

    files: list[Queued] = field(default_factory=list)
    already_pending: list[str] = field(default_factory=list)  # spool keys, not doubled
    after_cursor: int = 0  # windows the uplink has not made yet: its own next files
    empty: int = 0  # every line left out by the profile: the uplink sends no file either
    differ: list[str] = field(default_factory=list)  # names whose sent/ copy has other bytes


def plan(settings: Circular10Settings, held: Sequence[tuple[int, Record]],
         spool: Spool) -> ResendPlan:
    """The resend of the windows in ``held`` ((seq, record) of the uplink's window width, by
    start then seq): which files go again, which are pending already, which are not made yet."""
    tz = ZoneInfo(settings.timezone)
    cursor = spool.cursor()
    pending = {spool.start_of(k): k for k in spool.pending_keys()}
    out = ResendPlan()
    for start, records in group_windows(held):
        if cursor is None or start > cursor:
            out.after_cursor += 1
            continue
        if start in pending:
            out.already_pending.append(pending[start])
            continue
        f = render_file(settings.receiver, tz, start, settings.window_s, records)
        if f.lines == 0:
            out.empty += 1
            continue
        first = spool.sent / spool.key(start, f.name)
        if first.exists() and first.read_bytes() != f.data:
            out.differ.append(f.name)
        out.files.append(Queued(start, f))
    return out


def queue(spool: Spool, resend: ResendPlan) -> int:
    """Write the plan's files into ``pending/`` (temp file and rename, each with its resend
    marker); how many were queued (a window that became pending meanwhile is not doubled)."""
    return sum(spool.requeue(q.start, q.file.name, q.file.data) for q in resend.files)
