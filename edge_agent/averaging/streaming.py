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

Wind direction (a channel with ``average="direction"``) is aggregated by
``wind.aggregate_wind`` instead: the vector mean, NaN and not valid (the reason logged,
``wind_direction_undefined``) when there is no direction: calm or cancelled. With ``speed``
naming the anemometer's channel, each direction sample is paired with the speed sample of the
same poll (same device, same time stamp) and weighted by it; a direction without its speed
does not count. Such a record's ``min`` and ``max`` are the extreme directions as signed
deviations from the mean, not folded into [0, 360) (350 and 10 deg: mean 0, min -10, max
10), so ``min <= mean <= max`` holds and the sector the wind came from is kept; its ``std`` is
Yamartino's estimate of the direction's standard deviation from the resultant's length.

Rolling averages (``StreamingRolling``, the 8-hour CO/O3 average) take closed child records
and give one record per child: the window of ``span`` children ending with it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import numpy as np

from edge_agent.averaging.batch import aggregate, rollup_channel, to_records
from edge_agent.averaging.errors import InputError
from edge_agent.averaging.rolling import Rolling, rolling_channel
from edge_agent.averaging.rules import COVERAGE_75, ValidityRule
from edge_agent.averaging.wind import WindStats, aggregate_wind
from edge_agent.averaging.windows import check_width, floor_start, n_expected
from protocol.model import Record, RecordFlag, Sample, Status

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
    #: "mean" (arithmetic) or "direction" (a wind vane: the vector mean, ``wind``)
    average: str = "mean"
    #: a direction weighted by this channel's speed (same device); None: unit vectors
    speed: str | None = None
    #: with ``speed``: also make a record of the vector mean speed under this name
    vector_speed: str | None = None


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
        # speed channel -> the direction channels it weighs, and their copies of its samples
        self._weighs: dict[str, list[str]] = {}
        self._speeds: dict[str, dict[int, list[Sample]]] = {}
        self._derived: list[Record] = []  # vector mean speeds, handed out with their window
        for name, spec in self._specs.items():
            n_expected(width_s, spec.period_s, name)  # a bad period fails here, not at close
            self._add_channel(name)
            if spec.average not in ("mean", "direction"):
                raise InputError(f"channel {name!r}: average={spec.average!r} is not 'mean' "
                                 "or 'direction'")
            if spec.speed is not None:
                if spec.average != "direction" or spec.speed not in self._specs \
                        or spec.speed == name:
                    raise InputError(f"channel {name!r}: speed={spec.speed!r} must be another "
                                     "configured channel, for a direction")
                self._weighs.setdefault(spec.speed, []).append(name)
                self._speeds[name] = {}
            if spec.vector_speed is not None and (spec.speed is None or spec.vector_speed
                                                  in self._specs):
                raise InputError(f"channel {name!r}: vector_speed={spec.vector_speed!r} "
                                 "needs a speed and a name no channel has")
            if spec.average == "direction" and rule.parts != 1:
                raise InputError(f"channel {name!r}: rule {rule.name!r} cuts windows into "
                                 "parts; wind averages take a coverage rule")

    def feed(self, sample: Sample) -> None:
        """Buffer one sample (or drop it, logged, if its window has already closed)."""
        if sample.channel not in self._specs:
            raise InputError(f"channel {sample.channel!r} is not configured for averaging")
        for direction in self._weighs.get(sample.channel, ()):
            ws = floor_start(sample.t, self.width_s, self.utc_offset_s)
            first = self._open[direction].next_start
            if first is None or ws >= first or not self._open[direction].closed_any:
                self._speeds[direction].setdefault(ws, []).append(sample)
        self._put(sample.channel, sample.t, sample)

    def _close(self, channel: str, ws: int, samples: list[Sample], flags: RecordFlag) -> Record:
        spec = self._specs[channel]
        samples.sort(key=lambda s: s.t)  # late arrivals inside the grace come out of order
        if spec.average == "direction":
            return self._close_direction(spec, ws, samples, flags)
        stats = aggregate(
            [s.t for s in samples], [s.value for s in samples], [int(s.status) for s in samples],
            width_s=self.width_s, period_s=spec.period_s, utc_offset_s=self.utc_offset_s,
            rule=self.rule, start=ws, end=ws + self.width_s, channel=channel,
        )  # fmt: skip
        return to_records(stats, channel, spec.unit, flags)[0]

    def _close_direction(self, spec: StreamChannel, ws: int, samples: list[Sample],
                         flags: RecordFlag) -> Record:
        channel = spec.name
        t = [s.t for s in samples]
        speed = speed_status = None
        if spec.speed is not None:
            kept = self._speeds[channel]
            by_t = {s.t: s for s in kept.pop(ws, [])}
            for old in [k for k in kept if k < ws]:
                del kept[old]  # windows that closed without a direction sample
            paired = [by_t.get(s.t) for s in samples]
            speed = [math.nan if p is None else p.value for p in paired]
            speed_status = [int(Status.OFFLINE) if p is None else int(p.status) for p in paired]
        stats = aggregate_wind(
            t, [s.value for s in samples], [int(s.status) for s in samples],
            width_s=self.width_s, period_s=spec.period_s, speed=speed, speed_status=speed_status,
            utc_offset_s=self.utc_offset_s, rule=self.rule, start=ws, end=ws + self.width_s,
            channel=channel,
        )  # fmt: skip
        if spec.vector_speed is not None and spec.speed is not None:
            self._derived.append(_vector_speed_record(
                stats, spec.vector_speed, self._specs[spec.speed].unit, flags,
                self.rule.min_valid(stats.n_expected)))
        return _direction_record(stats, samples, speed_status, channel, spec.unit, flags)

    def advance(self, now: float) -> list[Record]:
        return self._with_derived(super().advance(now))

    def close_all(self, now: float) -> list[Record]:
        return self._with_derived(super().close_all(now))

    def _with_derived(self, out: list[Record]) -> list[Record]:
        if self._derived:
            out = sorted([*out, *self._derived], key=lambda r: r.start)
            self._derived = []
        return out


def _vector_speed_record(stats: WindStats, name: str, unit: str, flags: RecordFlag,
                         min_valid: int) -> Record:
    """The vector mean speed of a window: the length of the mean wind vector over the valid
    pairs (never more than the scalar mean speed, equal for a steady direction). It exists
    when the direction does not: a calm gives 0, cancelling winds nearly 0, both real
    answers, so it is valid on coverage alone. One figure per window: min and max are it,
    std 0 (the centre refuses a valid record with a NaN std)."""
    v = float(stats.vector_speed[0])
    has = math.isfinite(v)
    ok = has and int(stats.n_valid[0]) >= min_valid
    return Record(
        channel=name, start=int(stats.start0), end=int(stats.start0) + stats.width_s,
        mean=v, min=v if has else math.nan, max=v if has else math.nan,
        std=0.0 if has else math.nan, n_valid=int(stats.n_valid[0]),
        n_expected=stats.n_expected, valid=ok, status=Status(int(stats.status[0])),
        unit=unit, flags=flags,
    )  # fmt: skip


def _direction_record(stats: WindStats, samples: list[Sample], speed_status: list[int] | None,
                      channel: str, unit: str, flags: RecordFlag) -> Record:
    """The record of one wind-direction window (see the module docstring for min/max/std)."""
    mean = float(stats.direction[0])
    lo = hi = std = math.nan
    if math.isfinite(mean):
        d = np.array([s.value for s in samples], dtype=np.float64)
        ok = np.array([s.status == Status.MEASURING for s in samples], dtype=np.bool_)
        if speed_status is not None:
            ok &= np.array(speed_status, dtype=np.int64) == int(Status.MEASURING)
        d = d[ok & np.isfinite(d) & (d >= 0) & (d <= 360)]
        dev = (d - mean + 180.0) % 360.0 - 180.0
        lo, hi = mean + float(dev.min()), mean + float(dev.max())
        eps = math.sqrt(max(0.0, 1.0 - float(stats.ratio[0]) ** 2))
        std = math.degrees(math.asin(min(1.0, eps)) * (1.0 + 0.1547 * eps**3))
    elif stats.n_valid[0] > 0:
        log.info("wind_direction_undefined", extra={
            "channel": channel, "start": int(stats.start0), "reason": stats.why(0)})
    return Record(
        channel=channel, start=int(stats.start0), end=int(stats.start0) + stats.width_s,
        mean=mean, min=lo, max=hi, std=std, n_valid=int(stats.n_valid[0]),
        n_expected=stats.n_expected, valid=bool(stats.valid[0]),
        status=Status(int(stats.status[0])), unit=unit, flags=flags,
    )  # fmt: skip


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


class StreamingRolling:
    """Rolling averages (``rolling.Rolling``, e.g. the 8-hour CO/O3 one) of closed records.

    Each child record (hourly) fed makes the rolling record of the window ending with it,
    ``[child.end - span*child_s, child.end)``: rolling windows overlap, one per child, so a
    record is known by its end (``end`` is the hour it is "at"). The children come from a
    streaming averager or roll-up, which closes every window in order (an empty one too), so
    no hour is skipped; a child older than the newest one seen is late, logged and dropped
    (its windows are out already). Records are handed out by ``advance`` and ``close_all``,
    the interface of :class:`StreamingRollup`, so the pipeline runs both alike. A rolling
    record whose newest child was cut short (``PARTIAL``, at shutdown) is ``PARTIAL`` too.
    """

    def __init__(self, rolling: Rolling, channels: Iterable[str], *,
                 utc_offset_s: int = 0) -> None:
        self.rolling = rolling
        self.width_s = rolling.width_s
        self.child_width_s = rolling.child_s
        self.utc_offset_s = utc_offset_s
        self.channels = frozenset(channels)
        self._children: dict[str, dict[int, Record]] = {}
        self._ready: list[Record] = []

    def feed(self, record: Record) -> None:
        """Take one closed child; channels not configured for this rolling are ignored."""
        if record.channel not in self.channels:
            return
        if record.end - record.start != self.child_width_s:
            raise InputError(
                f"channel {record.channel!r}: record of {record.end - record.start} s fed to "
                f"rolling {self.rolling.name!r} of {self.child_width_s} s children")
        kids = self._children.setdefault(record.channel, {})
        if kids and record.start <= max(kids):
            log.warning("rolling_late_child_dropped", extra={
                "channel": record.channel, "start": record.start, "newest": max(kids)})
            return
        kids[record.start] = record
        end = record.end
        for old in [s for s in kids if s < end - self.width_s]:
            del kids[old]
        (out,) = rolling_channel(record.channel, record.unit, list(kids.values()),
                                 rolling=self.rolling, utc_offset_s=self.utc_offset_s,
                                 first_end=end, last_end=end)
        if record.flags & RecordFlag.PARTIAL:
            out = replace(out, flags=out.flags | RecordFlag.PARTIAL)
        self._ready.append(out)

    def advance(self, now: float) -> list[Record]:
        """The rolling records made since the last call (they are complete when made)."""
        out, self._ready = self._ready, []
        return out

    def close_all(self, now: float) -> list[Record]:
        return self.advance(now)
