"""Field-node backfill, the pure part: the node's logged records as samples at their own time,
and how long the averaging waits for them (issue 14, item 8).

The field node (firmware/, :mod:`drivers.field_node`) logs every input once per log slot with
a sequence number and its UTC time. For such a device the averaging is fed from that log,
*instead of* from the live registers: the live poll still runs like any analyser's (health,
``device_recovered``, the node's status word, the clock), but the samples of the channels the
log carries come from the history read that follows each good poll. Both reads see the same
scans; the log has them at the slot times, with no gap when the trunk or the agent was down.
Using one source for a slot means there is nothing to de-duplicate between the live read and
the log: a slot is ``(channel, UTC)`` once, whatever path it came by, and after a cut the
windows are made of exactly the samples an uncut run would have had.

Which log channel is which profile channel goes by register address, not by name, so a copy of
the profile with the channels renamed (AI1 -> Level, firmware/README.md) maps the same:
analog input ``i`` is the float32 at input register ``4 i`` (log channel ``i``), pulse total
``j`` the uint32 at ``16 + 4 j`` (log channel ``8 + j``).

Holding windows back (:func:`hold_now`). A window closes ``grace_s`` after its end
(:mod:`edge_agent.averaging.streaming`); one that got nothing closes as an empty OFFLINE record
and cannot be made again valid (issue 10's one-record-per-window rule). While a field node is
unreachable its samples are not lost, only late, so the pipeline's ticks are given the time up
to which every field node's log has been read (``covered``) plus the grace, instead of the wall
clock, but never less than ``now - horizon`` (``[agent] backfill_horizon_s``). So:

* a cut shorter than the horizon: the windows of the cut wait, the backfill arrives, and they
  close with the node's samples at their original times: averages equal an uncut run's;
* a cut longer than the horizon: the windows older than ``now - horizon`` close as usual, i.e.
  as OFFLINE records (never a silent hole); the backfilled samples of those windows are then
  *not applied*: the averaging drops them as late (``averaging_late_sample_dropped``, the next
  record carries ``LATE_DROPPED``), the raw-sample table still keeps them as evidence, and the
  step logs ``backfill_read`` with the span it read. No second record is made of a window.

The hold is for the whole pipeline, not per channel: while a field node is unreachable every
channel's records leave up to ``backfill_horizon_s`` late (their content is unchanged). That
keeps the pipeline and the averager as they are; the cost is latency of the live uplink during
a field-node outage, which the horizon bounds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from drivers import field_node
from drivers.profile import Profile
from edge_agent.config.model import Device
from protocol.model import Sample, Status

FIELD_NODE_PROFILE = "field_node"
FIELD_NODE_MODEL = "quantrac field node"
#: the node's clock may lag the gateway's by up to this much (whole-second clock set, scan)
CLOCK_MARGIN_S = 2.0
CURSOR_PREFIX = "backfill_cursor:"


def is_field_node(profile: Profile) -> bool:
    """The built-in profile, or a copy of it (renamed channels keep the model line)."""
    return profile.name == FIELD_NODE_PROFILE or profile.model.startswith(FIELD_NODE_MODEL)


def log_channels(device: Device) -> dict[int, str]:
    """{log channel number: profile channel name} for the device's configured channels."""
    out: dict[int, str] = {}
    for name in device.channel_names:
        ch = device.profile.channel(name)
        if ch.function != 4:
            continue
        if ch.dtype == "float32" and ch.address < 16 and ch.address % 4 == 0:
            out[ch.address // 4] = name
        elif ch.dtype == "uint32" and 16 <= ch.address < 24 and ch.address % 4 == 0:
            out[field_node.CH_PULSE0 + (ch.address - 16) // 4] = name
    return out


def to_samples(device: Device, timed: Sequence[field_node.TimedRecord]
               ) -> tuple[list[Sample], int]:
    """(samples of the device's logged channels at their UTC, records with no known time).

    A record's status nibble is the live status word (0 measuring, else fault: NE 43 or not
    configured); the profile's scale and offset apply as they do to the live value."""
    names = log_channels(device)
    out: list[Sample] = []
    untimed = 0
    for tr in timed:
        name = names.get(tr.record.channel)
        if name is None:
            continue
        if tr.utc is None:
            untimed += 1
            continue
        spec = device.profile.channel(name)
        value = tr.record.value * spec.scale + spec.offset
        status = Status.MEASURING if tr.record.status == 0 else Status.FAULT
        if status is Status.FAULT and spec.dtype == "float32":
            value = math.nan
        out.append(Sample(name, float(tr.utc), value, status))
    return out, untimed


def hold_now(now: float, covered: Iterable[float], grace_s: float, horizon_s: float) -> float:
    """The ``now`` to close windows by: not past what every field node's log covers (plus
    the grace), never further back than ``horizon_s`` (see the module docstring)."""
    c = min(covered, default=math.inf)
    return max(now - horizon_s, min(now, c + grace_s))


def cursor_key(device: str) -> str:
    return CURSOR_PREFIX + device


class BackfillState:
    """The daemon's side (on its event loop): where each field node's log was read up to, what
    is durable, and the ``now`` the pipeline's ticks may close windows by.

    ``cursors``: the next seq to read per node, as delivered (what a poller restarted by a
    reload continues from). ``pending``: delivered cursors not yet in the store; they are
    written with the raw samples they came with (``Store.append_samples(..., meta=...)``),
    so the durable cursor never runs ahead of the durable samples."""

    def __init__(self, grace_s: float, horizon_s: float) -> None:
        self.grace_s = grace_s
        self.horizon_s = horizon_s
        self.cursors: dict[str, int] = {}
        self.pending: dict[str, int] = {}
        self.covered: dict[str, float] = {}

    def restore(self, meta: dict[str, str]) -> None:
        """Cursors from the store's ``meta`` (keys :func:`cursor_key`)."""
        for key, value in meta.items():
            if key.startswith(CURSOR_PREFIX) and value.isdigit():
                self.cursors[key[len(CURSOR_PREFIX):]] = int(value)

    def watch(self, nodes: Iterable[str], now: float) -> None:
        """The field nodes of a (re)started poller: hold windows from ``now`` until each has
        been read once (a node already read keeps what it covered)."""
        for name in nodes:
            self.covered.setdefault(name, now)
        for name in set(self.covered) - set(nodes):
            del self.covered[name]

    def delivered(self, device: str, cursor: int, covered: float) -> None:
        self.cursors[device] = cursor
        self.pending[device] = cursor
        self.covered[device] = max(self.covered.get(device, covered), covered)

    def meta(self) -> dict[str, str]:
        return {cursor_key(d): str(c) for d, c in self.pending.items()}

    def stored(self, meta: dict[str, str]) -> None:
        for key, value in meta.items():
            d = key[len(CURSOR_PREFIX):]
            if self.pending.get(d) == int(value):
                del self.pending[d]

    def tick_now(self, now: float) -> float:
        if not self.covered:
            return now
        return hold_now(now, self.covered.values(), self.grace_s, self.horizon_s)
