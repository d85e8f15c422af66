"""Where the station page reads what it shows: the same read paths as the commands.

No SQL of its own. Records come from ``buffer.outbox_read.OutboxReader.select`` with a
``protocol.record_filter.RecordFilter``, the read ``quantrac history`` makes (read-only, each
record checked against its checksum, quarantined ones left out and counted), so a window is
invalid for the same reason on the page as in the table. What the running agent knows (live
values, the outbox backlog, each uplink's state, the clock, exceedances) is its status over
the control socket, as ``quantrac status`` asks it; when the agent is not running the page
says so and still shows the records. The Circular 10 files last sent are the uplink's spool,
read as ``quantrac circular10 list`` reads it. The export download is
``edge_agent.evidence.export.export``, the function behind ``quantrac export``.
"""

from __future__ import annotations

import io
import math
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from buffer import OUTBOX_NAME
from buffer.outbox_read import OutboxReader, OutboxRecord, Selected
from edge_agent.config.coverage import thresholds
from edge_agent.config.model import StationConfig
from edge_agent.console.control_client import ControlError, request
from protocol.record_filter import RecordFilter

#: how many of the Circular 10 files last sent the page lists
SHOWN_SENT = 5
#: the span of windows kept before the end of the period asked for: the longest plot, so
#: moving between 24 h and 7 d rereads nothing (7 days of 30 channels is ~35 MB in memory)
KEPT_S = 7 * 86400


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """The running agent's status document, or why there is none."""

    status: dict[str, Any] | None
    problem: str = ""


@dataclass(frozen=True, slots=True)
class SentFile:
    name: str  # the name on the receiver's server (station-derived text: shown escaped)
    window_start: int
    sent_at: float


class _Kept:
    """The records of one window width read so far: windows starting at ``floor`` or later,
    in the reader's order, and the highest seq read (records or left-out ones)."""

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self.records: list[OutboxRecord] = []
        self.unsound: set[int] = set()
        self.last_seq = -1

    def add(self, selected: Selected) -> None:
        if selected.records:
            self.records += selected.records
            self.records.sort(key=_order)
        self.unsound.update(selected.unsound)
        seqs = [r.seq for r in selected.records] + selected.unsound
        self.last_seq = max([self.last_seq, *seqs])

    def prune(self, floor: float) -> None:
        """Forget windows before ``floor`` (time has moved on; a page never asks for them)."""
        if floor > self.floor:
            self.records = [r for r in self.records if r.record.start >= floor]
            self.floor = floor


def _order(r: OutboxRecord) -> tuple[int, int, str, int]:
    """``buffer.record_select.ORDER``: start, width, channel, seq."""
    return (r.record.start, r.record.end - r.record.start, r.record.channel, r.seq)


class StationSource:
    """One station config's outbox, control socket and spool."""

    def __init__(self, cfg: StationConfig) -> None:
        self.cfg = cfg
        self.tz = ZoneInfo(cfg.station.timezone)
        self.outbox = cfg.agent.state_dir / OUTBOX_NAME
        self.thresholds = thresholds(cfg)
        self._kept: dict[int, _Kept] = {}

    def status(self, timeout: float = 5.0) -> AgentStatus:
        try:
            answer = request(self.cfg.agent.control_socket, {"op": "status"}, timeout)
        except ControlError as exc:
            return AgentStatus(None, str(exc))
        if not answer.get("ok") or not isinstance(answer.get("status"), dict):
            return AgentStatus(None, str(answer.get("error") or "the agent refused"))
        return AgentStatus(answer["status"])

    def records(self, wanted: RecordFilter) -> Selected:
        """The records ``wanted`` asks for, as ``OutboxReader.select`` returns them.

        The page asks for the same windows every minute, and checking 60 000 checksums is most
        of a page's cost, so the records of a plotted width are kept (``_Kept``) and each
        later page reads only those stored since (``after_seq``), through the same reader and
        filter. A stored record never changes; what is not seen this way is a record the
        agent quarantines after the page read it (its checksum failed later on disk): the
        page keeps showing the value it checked, until it restarts. No outbox file yet (the
        agent has not run): no records, and the rest of the page still shows."""
        if not self.outbox.is_file():  # a new station: the agent has stored nothing yet
            return Selected([])
        w = wanted.window_s
        if w is None or wanted.t0 is None or wanted.channel is not None \
                or wanted.invalid_only or wanted.after_seq is not None:
            with OutboxReader(self.outbox) as outbox:
                return outbox.select(wanted)
        kept = self._kept.get(w)
        with OutboxReader(self.outbox) as outbox:
            if kept is None or wanted.t0 < kept.floor:
                kept = self._kept[w] = _Kept(wanted.t0)
                kept.add(outbox.select(RecordFilter(t0=wanted.t0, window_s=w)))
            else:
                kept.add(outbox.select(RecordFilter(t0=kept.floor, window_s=w,
                                                    after_seq=kept.last_seq)))
        t0, t1 = wanted.t0, math.inf if wanted.t1 is None else wanted.t1
        kept.prune(min(t0, t1 - KEPT_S))
        return Selected([r for r in kept.records if t0 <= r.record.start < t1],
                        sorted(kept.unsound))

    def circular10_sent(self) -> list[SentFile]:
        """The last files the Circular 10 uplink delivered (newest first); none without it."""
        from edge_agent.uplinks.circular10.uplink import SPOOL_NAME, Spool

        root = self.cfg.agent.state_dir / SPOOL_NAME
        if self.cfg.circular10 is None or not root.is_dir():
            return []
        spool = Spool(root, tidy=False)
        out = []
        for key in reversed(spool.sent_keys()[-SHOWN_SENT:]):
            try:
                sent_at = (spool.sent / key).stat().st_mtime
            except FileNotFoundError:  # pruned meanwhile
                continue
            out.append(SentFile(Spool.remote_name(key), Spool.start_of(key), sent_at))
        return out

    def export_zip(self, start: float, end: float, period: tuple[str, str]) -> tuple[bytes, int]:
        """``quantrac export`` of ``[start, end]`` as a zip (CSV, and the Circular 10 files
        when the station sends them; signed when the station is provisioned), with the number
        of records; ValueError names what is wrong (nothing in the period)."""
        from buffer import Store
        from buffer.chain import Signer
        from edge_agent.evidence.export import export
        from edge_agent.uplinks.circular10.settings import Circular10Settings
        from protocol.cli_error import UserError
        from provisioning import identity

        settings = None
        formats = ["csv"]
        if self.cfg.circular10 is not None:
            settings = Circular10Settings.from_config(self.cfg)
            formats.append("circular10")
        signer = None
        try:
            ident = identity.load(self.cfg.agent.state_dir)
            signer = Signer(ident.station_id, ident.signing_key)
        except UserError:
            pass  # not provisioned: an unsigned export is still the station's records
        if not self.outbox.is_file():
            raise UserError(f"{self.outbox}: no outbox there yet (agent.state_dir of "
                            f"{self.cfg.source})")
        with tempfile.TemporaryDirectory(prefix="quantrac-web-export-") as tmp:
            out = Path(tmp) / "export"
            with Store(self.outbox, signer=signer) as store:
                done = export(store, out, start, end, formats=formats, circular10=settings,
                              signer=signer, period=period, clock=time.time)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(out.rglob("*")):
                    if path.is_file():
                        zf.write(path, path.relative_to(out).as_posix())
        return buf.getvalue(), done.records
