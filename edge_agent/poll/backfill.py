"""Field-node backfill, the I/O step: after each good poll of a field node, on its bus thread,
set the node's clock when needed and read its log from the cursor (issue 14, item 8).

It runs inside :class:`edge_agent.poll.poller.BusWorker`, right after the device's live poll
(``BusWorker.after_poll``), so the bus still carries one transaction at a time and no other
thread ever touches the port. One step reads at most ``max_windows`` history windows (15
records each, two transactions per window), so a long catch-up after a cut is spread over
several polls and the other units of the bus keep their turn in between.

Per step, when the live poll answered:

1. ``read_node`` (status word, boot, uptime, clock, log head and oldest seq);
2. ``set_clock`` to the gateway's clock when the node says it is unsynced, when its clock is
   more than :data:`CLOCK_TOLERANCE_S` off the gateway's, or every ``resync_s``; the gateway
   sets it even when its own clock is not NTP-synchronised, so that the node's times are in
   the time line the gateway's records are made in (those records carry CLOCK_UNSYNCED);
3. ``read_history`` from the cursor up to the head read in 1; ``map_times`` with the running
   boot's live offset (uptime vs the gateway clock) for records of a boot never synced;
4. ``deliver(device, samples, next_cursor, covered)``: ``covered`` is the time up to which the
   node's log has now been read (the gateway clock at step 1 minus :data:`CLOCK_MARGIN_S`
   when the read reached the head; else the time of the last record read).

The cursor lives in the outbox (``meta``), written in the same transaction as the raw samples
the records became (``Store.append_samples(..., meta=...)``), so after a crash or a restart
the log is read again exactly from the first record whose samples were not stored. A cursor
the node no longer holds (trimmed) starts at the oldest kept (``backfill_records_lost``); a
head behind the cursor (node flash replaced) starts at the oldest. A node with no cursor yet
starts at its head: a new gateway does not pull days of history that its windows, already
closed or never open, could not use.

Live samples of the channels the log carries are dropped before the sink (the log is their
source, :mod:`edge_agent.core.backfill`); other channels pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from drivers import field_node
from drivers.modbus import ModbusError
from drivers.transport import Transport
from edge_agent.core.backfill import CLOCK_MARGIN_S, is_field_node, log_channels, to_samples
from edge_agent.poll.poller import DevicePoller, Poller
from protocol.clock import Clock
from protocol.model import Sample

log = logging.getLogger("quantrac.edge_agent.backfill")

#: deliver(device, samples, next cursor, covered up to)
Deliver = Callable[[str, list[Sample], int, float], None]
CLOCK_TOLERANCE_S = 2.0


@dataclass
class FieldNodeStep:
    device: str
    unit: int
    cursor: int | None
    deliver: Deliver
    clock: Clock
    timeout: float = 1.0
    resync_s: float = 3600.0
    max_windows: int = 20
    _next_sync: float = field(default=-math.inf)

    def __call__(self, poller: DevicePoller, transport: Transport) -> None:
        if poller.failing:
            return  # unreachable: the next good poll catches up
        try:
            self._step(poller, transport)
        except (ModbusError, ValueError) as exc:
            log.warning("backfill_failed", extra={"device": self.device, "unit": self.unit,
                                                  "cursor": self.cursor, "reason": str(exc)})

    def _step(self, poller: DevicePoller, t: Transport) -> None:
        if not isinstance(t, field_node.WritableTransport):
            raise ValueError(f"transport {t.name} cannot write registers (FC16): no clock "
                             "set, no history cursor; put the node on a serial bus")
        wt: field_node.WritableTransport = t
        info = field_node.read_node(wt, self.unit, self.timeout)
        now = self.clock()
        if not info.synced or abs(info.clock - now) > CLOCK_TOLERANCE_S \
                or now >= self._next_sync:
            field_node.set_clock(wt, self.unit, round(now), self.timeout)
            log.info("field_node_clock_set", extra={
                "device": self.device, "unit": self.unit, "was_synced": info.synced,
                "node_clock": info.clock, "utc": round(now)})
            self._next_sync = now + self.resync_s
        cursor = self.cursor
        if cursor is None or cursor > info.head:
            if cursor is not None:
                log.warning("backfill_cursor_ahead_of_node", extra={
                    "device": self.device, "cursor": cursor, "head": info.head})
            cursor = info.head if cursor is None else info.oldest
            log.info("backfill_cursor_initialised", extra={"device": self.device,
                                                           "cursor": cursor})
        if cursor < info.oldest:
            log.error("backfill_records_lost", extra={
                "device": self.device, "from": cursor, "to": info.oldest,
                "records": info.oldest - cursor, "reason": "trimmed from the node's log"})
            cursor = info.oldest
        stop = min(info.head, cursor + self.max_windows * field_node.HIST_MAX)
        records = list(field_node.read_history(wt, self.unit, cursor, timeout=self.timeout,
                                               stop=stop))
        boot, offset = field_node.live_offset(_live_words(info), now)
        timed = field_node.map_times(records, {boot: offset})
        samples, untimed = to_samples(poller.device, timed)
        nxt = records[-1].seq + 1 if records else cursor
        if nxt >= info.head:
            covered = now - CLOCK_MARGIN_S
        else:
            covered = max((s.t for s in samples), default=-math.inf)
        if untimed:
            log.warning("backfill_untimed_records", extra={
                "device": self.device, "records": untimed,
                "reason": "unsynced boot with no clock set: no UTC known"})
        if len(records) > field_node.HIST_MAX:
            log.info("backfill_read", extra={
                "device": self.device, "records": len(records), "from": cursor, "to": nxt,
                "first_t": min((s.t for s in samples), default=None),
                "last_t": max((s.t for s in samples), default=None),
                "behind": info.head - nxt})
        self.cursor = nxt
        self.deliver(self.device, samples, nxt, covered)


def _live_words(info: field_node.NodeInfo) -> list[int]:
    """The words live_offset reads (boot, uptime), rebuilt from a NodeInfo."""
    w = [0] * (field_node.IR_UPTIME + 2)
    w[field_node.IR_BOOT] = info.boot
    w[field_node.IR_UPTIME] = (info.uptime >> 16) & 0xFFFF
    w[field_node.IR_UPTIME + 1] = info.uptime & 0xFFFF
    return w


def attach(poller: Poller, cursors: Mapping[str, int], deliver: Deliver, clock: Clock,
           timeout: float = 1.0, resync_s: float = 3600.0) -> list[str]:
    """Give every bus worker with a field node its step; the names of the field nodes.

    Call before ``poller.start()``. The worker's sink is wrapped so that live samples of the
    logged channels of a field node do not reach the averaging (their source is the log)."""
    nodes: list[str] = []
    for worker in poller.workers:
        steps: dict[str, FieldNodeStep] = {}
        logged: dict[str, set[str]] = {}
        for p in worker.pollers:
            d = p.device
            if not is_field_node(d.profile):
                continue
            steps[d.name] = FieldNodeStep(d.name, d.unit, cursors.get(d.name), deliver, clock,
                                          timeout, resync_s)
            logged[d.name] = set(log_channels(d).values())
            nodes.append(d.name)
        if not steps:
            continue
        sink = worker.sink

        def filtered(device: str, samples: list[Sample], sink: Callable[
                [str, list[Sample]], None] = sink, logged: dict[str, set[str]] = logged
                     ) -> None:
            skip = logged.get(device)
            sink(device, samples if not skip else [s for s in samples
                                                   if s.channel not in skip])

        def after(p: DevicePoller, t: Transport,
                  steps: dict[str, FieldNodeStep] = steps) -> None:
            step = steps.get(p.device.name)
            if step is not None:
                step(p, t)

        worker.sink = filtered
        worker.after_poll = after
    return nodes
