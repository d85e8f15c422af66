"""Streaming mode: samples arrive one by one, records leave when their window closes.

A window ``[start, end)`` closes when the clock passed in to ``advance(now)`` reaches
``end + grace_s``; samples that arrive late but inside the grace still count. A sample for a
window already closed is logged (``averaging_late_sample_dropped``) and dropped, and the next
record of that channel carries ``RecordFlag.LATE_DROPPED`` (its own record has already left).
Windows in which nothing arrived still close, as empty records with status OFFLINE, so a dead
analyser shows as a gap the centre can see rather than as silence. ``close_all(now)`` at
shutdown closes everything still open; a window not yet over at ``now`` is flagged PARTIAL.

The clock is never read here: ``now`` is always passed in. Each closed window is aggregated by
``batch.aggregate`` / ``batch.rollup_arrays``, i.e. by the same kernels as batch mode.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from edge_agent.averaging.batch import aggregate, rollup_channel, to_records
from edge_agent.averaging.errors import InputError
from edge_agent.averaging.rules import COVERAGE_75, ValidityRule
from edge_agent.averaging.windows import check_width, floor_start, n_expected
from protocol.model import Record, RecordFlag, Sample

log = logging.getLogger("quantrac.averaging.streaming")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StreamChannel:
    """What the averager must know about a channel: its unit and sampling period.

    Not :class:`drivers.profile.ChannelSpec`, which is where a channel sits in an analyser's
    registers; this one is the Circular 10 symbol the pipeline averages under.
    """

    name: str
    unit: str
    period_s: float


@dataclass
class _Open(Generic[T]):
    """Open windows of one channel: items by window start, and the first window not closed."""

    next_start: int | None = None
    closed_any: bool = False
    late_dropped: bool = False
    items: dict[int, list[T]] = field(default_factory=dict)


class _Windowed(Generic[T]):
    """The window bookkeeping shared by sample averaging and record roll-ups; a subclass says
    how to turn one window's items into a record (``_close``)."""

    def __init__(self, width_s: int, grace_s: float, utc_offset_s: int, rule: ValidityRule) -> None:
        check_width(width_s)
        rule.check_width(width_s)
        if not (math.isfinite(grace_s) and grace_s >= 0):
            raise InputError(f"grace_s={grace_s!r} must be finite and >= 0")
        self.width_s = width_s
        self.grace_s = grace_s
        self.utc_offset_s = utc_offset_s
        self.rule = rule
        self._open: dict[str, _Open[T]] = {}

    def _close(self, channel: str, ws: int, items: list[T], flags: RecordFlag) -> Record:
        raise NotImplementedError

    def _add_channel(self, channel: str) -> None:
        self._open.setdefault(channel, _Open())

    def _put(self, channel: str, t: float, item: T) -> None:
        if not math.isfinite(t):
            raise InputError(f"channel {channel!r}: time t={t!r} is not finite")
        state = self._open[channel]
        ws = floor_start(t, self.width_s, self.utc_offset_s)
        if state.next_start is None or (not state.closed_any and ws < state.next_start):
            state.next_start = ws
        if ws < state.next_start:
            state.late_dropped = True
            log.warning(
                "averaging_late_sample_dropped",
                extra={"channel": channel, "t": t, "window_start": ws,
                       "closed_before": state.next_start},
            )  # fmt: skip
            return
        state.items.setdefault(ws, []).append(item)

    def _emit(self, channel: str, state: _Open[T], ws: int, extra: RecordFlag) -> Record:
        flags = extra
        if state.late_dropped:
            flags |= RecordFlag.LATE_DROPPED
            state.late_dropped = False
        state.closed_any = True
        return self._close(channel, ws, state.items.pop(ws, []), flags)

    def advance(self, now: float) -> list[Record]:
        """Close every window whose end + grace is at or before ``now``; oldest first."""
        out: list[Record] = []
        for channel, state in self._open.items():
            if state.next_start is None:
                state.next_start = floor_start(now, self.width_s, self.utc_offset_s)
            while state.next_start + self.width_s + self.grace_s <= now:
                out.append(self._emit(channel, state, state.next_start, RecordFlag.NONE))
                state.next_start += self.width_s
        out.sort(key=lambda r: r.start)
        return out

    def close_all(self, now: float) -> list[Record]:
        """Shutdown: close everything; windows not over at ``now`` are flagged PARTIAL."""
        out = self.advance(now)
        for channel, state in self._open.items():
            assert state.next_start is not None  # advance() set it
            last = max([floor_start(now, self.width_s, self.utc_offset_s), *state.items])
            while state.next_start <= last:
                ws = state.next_start
                partial = RecordFlag.PARTIAL if ws + self.width_s > now else RecordFlag.NONE
                out.append(self._emit(channel, state, ws, partial))
                state.next_start += self.width_s
        out.sort(key=lambda r: r.start)
        return out


class StreamingAverager(_Windowed[Sample]):
    """Averages samples of several channels into ``width_s`` windows as they arrive."""

    def __init__(
        self,
        channels: Iterable[StreamChannel],
        *,
        width_s: int,
        grace_s: float = 30.0,
        rule: ValidityRule = COVERAGE_75,
        utc_offset_s: int = 0,
    ) -> None:
        super().__init__(width_s, grace_s, utc_offset_s, rule)
        self._specs = {spec.name: spec for spec in channels}
        for name, spec in self._specs.items():
            n_expected(width_s, spec.period_s, name)  # a bad period fails here, not at close
            self._add_channel(name)

    def feed(self, sample: Sample) -> None:
        """Buffer one sample (or drop it, logged, if its window has already closed)."""
        if sample.channel not in self._specs:
            raise InputError(f"channel {sample.channel!r} is not configured for averaging")
        self._put(sample.channel, sample.t, sample)

    def _close(self, channel: str, ws: int, samples: list[Sample], flags: RecordFlag) -> Record:
        spec = self._specs[channel]
        samples.sort(key=lambda s: s.t)  # late arrivals inside the grace come out of order
        stats = aggregate(
            [s.t for s in samples], [s.value for s in samples], [int(s.status) for s in samples],
            width_s=self.width_s, period_s=spec.period_s, utc_offset_s=self.utc_offset_s,
            rule=self.rule, start=ws, end=ws + self.width_s, channel=channel,
        )  # fmt: skip
        return to_records(stats, channel, spec.unit, flags)[0]


class StreamingRollup(_Windowed[Record]):
    """Rolls closed records (e.g. 5-min) up into parents (e.g. hourly) as they arrive.

    ``grace_s`` should exceed the children's grace, since a child only exists after its own
    window plus grace. Channels are learnt from the records fed.
    """

    def __init__(
        self,
        *,
        width_s: int,
        child_width_s: int,
        grace_s: float = 120.0,
        rule: ValidityRule = COVERAGE_75,
        utc_offset_s: int = 0,
    ) -> None:
        super().__init__(width_s, grace_s, utc_offset_s, rule)
        check_width(child_width_s, "child_width_s")
        if width_s % child_width_s != 0 or width_s <= child_width_s:
            raise InputError(f"child windows of {child_width_s} s do not tile {width_s} s")
        self.child_width_s = child_width_s
        self._units: dict[str, str] = {}

    def feed(self, record: Record) -> None:
        """Buffer one child record (or drop it, logged, if its parent has already closed)."""
        if record.end - record.start != self.child_width_s:
            raise InputError(
                f"channel {record.channel!r}: record of {record.end - record.start} s fed to a "
                f"roll-up of {self.child_width_s} s children"
            )
        unit = self._units.setdefault(record.channel, record.unit)
        if unit != record.unit:
            raise InputError(f"channel {record.channel!r}: unit {record.unit!r} after {unit!r}")
        self._add_channel(record.channel)
        self._put(record.channel, record.start, record)

    def _close(self, channel: str, ws: int, children: list[Record], flags: RecordFlag) -> Record:
        (parent,) = rollup_channel(
            channel, self._units[channel], self.child_width_s, children,
            width_s=self.width_s, utc_offset_s=self.utc_offset_s, rule=self.rule, start=ws,
            end=ws + self.width_s,
        )  # fmt: skip
        return replace(parent, flags=parent.flags | flags)
