"""Extracted volume per day and per month from a flowmeter's totaliser, sans-IO.

A groundwater permit (Circular 17/2021/TT-BTNMT) caps the volume a well may extract per day and
per month. The volume is the totaliser's own count between the period's two boundaries, not the
mean flow times the hours: the meter integrates at its own sampling rate (many times a second),
the agent's mean flow only over the samples it polled, so a poll missed during a pump start or a
flow that changes between polls would make the integrated figure disagree with the meter a
licensing inspector reads off the display.

Why here and not in ``core/``: this is "what one period's value is" from a channel's samples,
like a window's mean; it knows no config, clock or store, only numbers and the station's UTC
offset, so it sits with the other window arithmetic and ``core/pipeline.py`` wires it in.

The counting rule, reading by reading (only MEASURING readings count; each is compared with
the one before it on the same channel):

* ``cur >= prev``: the meter counted ``cur - prev``.
* ``cur < prev`` is either a **roll-over** (the register wrapped at its modulus: a uint32 count
  of whole m3 wraps at 2**32, an 8-digit display register at 10**8) or a **meter replacement**
  (a new meter, starting near zero or from whatever its own register held). With ``on_drop =
  "auto"`` a drop is a roll-over when the channel has a modulus, ``prev`` was in the top tenth
  of it and ``cur`` is in the bottom tenth (a wrap passes through zero between two polls; a
  replacement rarely happens at the top tenth of the old register); the meter counted ``cur +
  modulus - prev``. Any other drop is a replacement: the pair counts 0, and counting goes on
  from the new meter's first reading. So the period's volume is (old meter's last reading -
  the reading the period started from) + (new meter's reading - its first reading); what
  flowed while the meters were swapped is unknown and not invented.
* The override: ``on_drop = "rollover"`` or ``"replacement"`` decides every drop that way, and
  ``replaced_at`` lists the times a meter was replaced (from the technician's work order). A
  pair of readings spanning such a time counts 0 whether the reading dropped or not: a new
  meter delivered with a count above the old one's would otherwise be counted as water.

Period boundaries: a reading belongs to the period its time falls in, and the increment from
the reading before it goes with it. The first increment of a period is therefore counted from
the last reading of the period before (the boundary reading), so consecutive days add up to
the month and no water falls between two periods. Days start at local midnight, months on the
1st at local midnight (``utc_offset_s``, the station's fixed offset, as for every window).

A period's record is valid when its count reaches both boundaries: its boundary reading is at
most ``edge_s`` before the period's start and its last reading at most ``edge_s`` before its
end. Otherwise (the agent started mid-day, the meter was silent at midnight, the agent stopped
early: ``PARTIAL``) the record still carries what the meter counted between the readings it
had, marked invalid, never dropped. A period without a single reading has no value (NaN,
OFFLINE), never a zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edge_agent.averaging.errors import AveragingError
from edge_agent.averaging.windows import DAY_S, floor_start
from protocol.model import Record, RecordFlag, Sample, Status

DROP_RULES = ("auto", "rollover", "replacement")
"""``on_drop``: how a reading lower than the one before it is taken (module docstring)."""
PERIODS = ("day", "month")
WRAP_SHARE = 0.1  # auto roll-over: prev in the top tenth of the modulus, cur in the bottom


@dataclass(frozen=True, slots=True)
class TotaliserSpec:
    """One totaliser channel and the volume records made of it."""

    source: str  # the totaliser's channel symbol (its readings, m3)
    channel: str  # the volume records' channel symbol
    unit: str = "m3"
    modulus: float | None = None  # where the register wraps; None: it never does
    on_drop: str = "auto"
    replaced_at: tuple[float, ...] = ()  # epoch seconds of declared meter replacements
    edge_s: float = 3600.0  # how far a boundary reading may be from its boundary (valid)
    period_s: float = 60.0  # the source's poll interval: n_expected of a record
    periods: tuple[str, ...] = PERIODS

    def __post_init__(self) -> None:
        if self.on_drop not in DROP_RULES:
            raise AveragingError(f"totaliser {self.source!r}: on_drop={self.on_drop!r}, "
                                 f"expected one of {', '.join(DROP_RULES)}")
        if self.modulus is not None and not (math.isfinite(self.modulus) and self.modulus > 0):
            raise AveragingError(f"totaliser {self.source!r}: modulus={self.modulus!r} must be "
                                 "a positive number")
        if self.on_drop == "rollover" and self.modulus is None:
            raise AveragingError(f"totaliser {self.source!r}: on_drop='rollover' needs the "
                                 "modulus the register wraps at")
        if not self.periods or any(p not in PERIODS for p in self.periods):
            raise AveragingError(f"totaliser {self.source!r}: periods={self.periods!r}, "
                                 f"expected some of {', '.join(PERIODS)}")


def increment(prev: float, cur: float, spec: TotaliserSpec,
              replaced: bool = False) -> tuple[float, str]:
    """What the meter counted from reading ``prev`` to ``cur``, and how it was read:
    ``"count"``, ``"rollover"`` or ``"replacement"`` (``replaced``: a declared replacement
    lies between the two readings)."""
    if replaced:
        return 0.0, "replacement"
    if cur >= prev:
        return cur - prev, "count"
    m = spec.modulus
    if m is not None and (spec.on_drop == "rollover" or (
            spec.on_drop == "auto" and prev >= (1 - WRAP_SHARE) * m and cur < WRAP_SHARE * m)):
        return cur + m - prev, "rollover"
    return 0.0, "replacement"


def period_bounds(kind: str, t: float, utc_offset_s: int) -> tuple[int, int]:
    """``[start, end)`` in UTC epoch seconds of the local day or month containing ``t``."""
    if kind == "day":
        start = floor_start(t, DAY_S, utc_offset_s)
        return start, start + DAY_S
    if kind != "month":
        raise AveragingError(f"period {kind!r}: expected one of {', '.join(PERIODS)}")
    local = datetime.fromtimestamp(math.floor(t) + utc_offset_s, UTC)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return int(first.timestamp()) - utc_offset_s, int(nxt.timestamp()) - utc_offset_s


@dataclass(slots=True)
class _Open:
    """The period being counted."""

    start: int
    end: int
    base_t: float | None  # time of the reading the count starts from (the boundary reading)
    volume: float = 0.0
    n: int = 0
    last_t: float | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A roll-over or a replacement, for the log: where the count did not simply go up."""

    source: str
    kind: str  # "rollover" | "replacement"
    t: float
    prev: float
    cur: float


class TotaliserVolumes:
    """Streaming: readings of one totaliser in, a volume record per closed day/month out.

    ``feed`` takes the source channel's samples in time order (an older one than the last is
    ignored: the meter's count is read once); ``advance(now)`` returns the records of periods
    over by ``grace_s``; ``close_all(now)`` ends the open ones (``PARTIAL``)."""

    def __init__(self, spec: TotaliserSpec, utc_offset_s: int, grace_s: float = 30.0) -> None:
        self.spec = spec
        self.utc_offset_s = utc_offset_s
        self.grace_s = grace_s
        self._last: tuple[float, float] | None = None  # (t, value) of the newest reading
        self._open: dict[str, _Open] = {}
        self._replaced = sorted(spec.replaced_at)
        self._done: list[Record] = []  # closed by a reading after them, not yet returned
        self.emit_after = -math.inf  # periods ending by then are counted through, not sent
        self.events: list[Event] = []  # the caller logs and clears them

    def feed(self, s: Sample) -> None:
        if s.channel != self.spec.source or s.status is not Status.MEASURING \
                or not math.isfinite(s.value):
            return
        if self._last is not None and s.t <= self._last[0]:
            return
        self._done.extend(self._roll(s.t))
        prev = self._last
        dv, how = 0.0, "first"
        if prev is not None:
            dv, how = increment(prev[1], s.value, self.spec, self._declared(prev[0], s.t))
            if how in ("rollover", "replacement"):
                self.events.append(Event(self.spec.source, how, s.t, prev[1], s.value))
        for kind in self.spec.periods:
            p = self._open.get(kind)
            if p is None:
                start, end = period_bounds(kind, s.t, self.utc_offset_s)
                # the very first reading: counting starts from it
                p = self._open[kind] = _Open(start, end, s.t if prev is None else prev[0])
            p.volume += dv
            p.n += 1
            p.last_t = s.t
        self._last = (s.t, s.value)

    def advance(self, now: float) -> list[Record]:
        out = [*self._done, *self._roll(now - self.grace_s)]
        self._done = []
        return out

    def close_all(self, now: float) -> list[Record]:
        """Shutdown: every open period as a record, ``PARTIAL`` where not over."""
        out = self.advance(now)
        for kind in list(self._open):
            p = self._open.pop(kind)
            out.append(self._record(p, partial=now < p.end))
        return out

    def _declared(self, t0: float, t1: float) -> bool:
        return any(t0 < r <= t1 for r in self._replaced)

    def _roll(self, t: float) -> list[Record]:
        """Close the open periods that end at or before ``t``; the next one starts from the
        last reading (its boundary reading)."""
        out: list[Record] = []
        for kind in list(self._open):
            p = self._open[kind]
            while p.end <= t:
                if p.end > self.emit_after:
                    out.append(self._record(p))
                base = None if self._last is None else self._last[0]
                start, end = period_bounds(kind, p.end, self.utc_offset_s)
                p = self._open[kind] = _Open(start, end, base)
        # a period without a reading is emitted as NaN; the water of the gap goes with the
        # first reading after it, in a record marked invalid (its boundary reading is too old)
        return out

    def _record(self, p: _Open, partial: bool = False) -> Record:
        e = self.spec.edge_s
        complete = (p.n > 0 and p.base_t is not None and p.start - e <= p.base_t <= p.start
                    and p.last_t is not None and p.last_t >= p.end - e and not partial)
        value = p.volume if p.n > 0 else math.nan
        expected = max(1, math.floor((p.end - p.start) / self.spec.period_s + 1e-9))
        return Record(
            channel=self.spec.channel, start=p.start, end=p.end, mean=value, min=value,
            max=value, std=0.0 if p.n > 0 else math.nan, n_valid=p.n, n_expected=expected,
            valid=complete, status=Status.MEASURING if p.n > 0 else Status.OFFLINE,
            unit=self.spec.unit, flags=RecordFlag.PARTIAL if partial else RecordFlag.NONE)


def volumes(readings: Sequence[tuple[float, float]], spec: TotaliserSpec, utc_offset_s: int,
            now: float) -> list[Record]:
    """Batch: the volume records of time-ordered ``(t, reading)`` pairs, every period closed
    by ``now`` (the open ones ``PARTIAL``). The hand-worked tests and ``docs/stations.md`` use
    it; the agent streams."""
    tv = TotaliserVolumes(spec, utc_offset_s, grace_s=0.0)
    for t, v in readings:
        tv.feed(Sample(spec.source, t, v, Status.MEASURING))
    return tv.close_all(now)
