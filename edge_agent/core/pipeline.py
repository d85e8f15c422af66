"""The agent's sans-IO core: polled samples in, finished records out.

It names each polled channel by its Circular 10 symbol, averages it into every configured
window, rolls closed records up (hourly, daily), normalises stack gases, flags what the
clock did and the valid records over their configured limit (``EXCEEDANCE``). No thread,
socket, file or clock here: the daemon (:mod:`edge_agent.daemon.agent`) passes ``now`` and
the clock observations in, and stores what comes out.

Clock rules:

* A sample stamped later than ``now`` (plus the jump tolerance) is dropped, logged: no record
  may be made of the future.
* While the clock is not synchronised (or nobody can tell), every record whose window overlaps
  that time carries ``CLOCK_UNSYNCED``.
* On a jump either way the open windows are closed at once (``PARTIAL`` where cut short) and
  fresh windows start in the new time line; the closed records and the first new window carry
  ``CLOCK_JUMP``. Samples stamped before the jump that arrive after it are dropped: their
  windows are closed. That way a backward jump never feeds the averaging out of order and a
  forward jump never produces a run of empty windows for time that did not pass.

Resuming after a crash: ``resume(last_end, samples, children)`` re-feeds what the store kept
(raw samples, child records) for windows not yet emitted, and fences off windows that were,
so a restart neither loses a window nor makes one twice.

One record per window, never a silent hole. A record is legal evidence for one window
``(channel, width, start)``; the rule is:

* The first record stored for a window is the one that counts. Once the clock is behind a
  window that is already stored (a backward step, a forward step and back, an RTC that was
  fast when the records were made and is right after a restart), the real measurements that
  fall into that window again still make a record, so nothing measured vanishes, but it is
  marked ``valid=False`` and ``CLOCK_JUMP`` (logged ``window_already_stored``): the centre
  holds the measurement and its counts and never counts the window twice. Such a record is
  not fed to the roll-ups (its window is in them already); a roll-up overlapping one carries
  ``CLOCK_JUMP``.
* The windows in between, which nothing stored yet, are produced as usual. Refusing to make
  records until the clock passes the newest stored window would drop real measuring without a
  trace (an hour fast RTC would lose an hour).
* The pipeline cannot read the store, so it is told which windows exist: ``resume(...,
  ahead=...)`` takes the stored windows that start after ``now`` (proof the clock was ahead
  of the one now running: the first record after the restart carries ``CLOCK_JUMP``), and
  ``jump(jump, stored)`` takes the stored (or not yet stored) records that end after the new
  clock reading; the windows ``jump`` closes itself count as well.
* Across a restart the continuity point of a channel and width is the end of the newest stored
  window that started by the restart's clock (``emitted_up_to``); the raw samples kept since
  are re-fed. Raw samples carry no time line, so when a restart cuts a step back short, the
  windows before that point keep their one valid record and the second time line's samples
  in them are not made into a (second, invalid) record again; every window after it is.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from edge_agent.averaging import (
    AveragingError,
    StreamChannel,
    StreamingAverager,
    StreamingRolling,
    StreamingRollup,
    normalise_record,
)
from edge_agent.averaging.totaliser import TotaliserSpec, TotaliserVolumes
from edge_agent.averaging.windows import DAY_S, floor_start
from edge_agent.config.limits import Limit
from edge_agent.config.model import StationConfig
from edge_agent.core.clock import ClockJump
from protocol.model import Record, RecordFlag, Sample

log = logging.getLogger("quantrac.edge_agent.pipeline")


@dataclass(frozen=True, slots=True)
class LastSample:
    """What ``quantrac status`` shows per channel."""

    symbol: str
    device: str
    value: float
    status: str
    t: float
    unit: str


class Pipeline:
    """Samples -> windows -> roll-ups -> normalised, flagged records, for one station config."""

    def __init__(self, cfg: StationConfig, utc_offset_s: int, tolerance_s: float = 2.0) -> None:
        self.cfg = cfg
        self.utc_offset_s = utc_offset_s
        self.tolerance_s = tolerance_s
        self.maps = {(c.device, c.channel): c for c in cfg.channels}
        self.units = {c.symbol: c.unit for c in cfg.channels}
        # a wind vane's vector mean speed: a record of its own, in the speed's unit
        self.units.update({c.vector_speed: self.units[c.speed] for c in cfg.channels
                           if c.vector_speed and c.speed})
        self._limits = {(lim.channel, lim.window): lim for lim in cfg.limits}
        self.last: dict[str, LastSample] = {}
        self._unsynced: list[list[float]] = []  # [from, to] (to = inf while still unsynced)
        self._jump_marks: list[float] = []  # wall times where a fresh time line began
        self._fence: dict[tuple[int, str], float] = {}  # (width, channel) -> emitted up to
        # (width, channel) -> starts of windows stored already that the clock may reach again
        self._taken: dict[tuple[int, str], set[int]] = {}
        self._flag_next: set[tuple[int, str]] = set()  # first record after resume: CLOCK_JUMP
        self._dropped_future = 0
        self._clashes = 0
        # extracted volume per day/month ([[totaliser]]): built once, not again on a clock
        # jump, because the meter's count does not jump with the clock; its last reading is
        # what the next period counts from
        self.volumes = [TotaliserVolumes(t, utc_offset_s, grace_s=cfg.averaging.grace_s)
                        for t in cfg.totalisers]
        self._build()

    # ---------------------------------------------------------------- windows

    def _build(self) -> None:
        avg = self.cfg.averaging
        specs = [StreamChannel(c.symbol, c.unit, c.period_s, c.average, c.speed,
                               c.vector_speed)
                 for c in self.cfg.channels]
        self.averagers = {
            w: StreamingAverager(specs, width_s=w, grace_s=avg.grace_s, rule=avg.rule,
                                 utc_offset_s=self.utc_offset_s)
            for w in avg.windows
        }
        self.rollups: list[tuple[int, StreamingRollup | StreamingRolling]] = []
        graces = dict.fromkeys(avg.windows, avg.grace_s)
        for ru in avg.rollups:
            grace = graces[ru.child] + max(avg.grace_s, 1.0) + 1.0
            graces[ru.width] = grace
            self.rollups.append((ru.child, StreamingRollup(
                width_s=ru.width, child_width_s=ru.child, grace_s=grace, rule=ru.rule,
                utc_offset_s=self.utc_offset_s)))
        # rolling averages last: their children (hourly) come from the windows and roll-ups
        # above, closed in the same tick; their windows overlap, so one is known by its end
        self._rolling_widths = {ro.rolling.width_s for ro in avg.rolling}
        for ro in avg.rolling:
            self.rollups.append((ro.rolling.child_s, StreamingRolling(
                ro.rolling, ro.channels, utc_offset_s=self.utc_offset_s)))

    @property
    def widths(self) -> list[int]:
        return [*self.averagers, *(r.width_s for _, r in self.rollups)]

    @property
    def volume_widths(self) -> list[int]:
        """Widths of the ``[[totaliser]]`` records (a day; a month of 28 to 31 days): a
        restart fences them off like any window, so no day or month is sent twice."""
        return [DAY_S * d for d in (1, 28, 29, 30, 31)] if self.volumes else []

    def volume_since(self, now: float,
                     specs: Iterable[TotaliserSpec] | None = None) -> float | None:
        """From when a restart must read the totaliser readings back: the day's boundary
        reading is the last one before local midnight (``edge_s`` before it at most), and
        without it the day's volume after a restart could not be valid. ``specs``: other
        tables than the running ones (a reload's)."""
        edges = [t.edge_s for t in specs] if specs is not None else \
            [v.spec.edge_s for v in self.volumes]
        if not edges:
            return None
        return floor_start(now, DAY_S, self.utc_offset_s) - max(edges)

    # ---------------------------------------------------------------- input

    def feed(self, device: str, samples: Iterable[Sample], now: float) -> list[Sample]:
        """Average a device's samples; returns them renamed to their symbols, for the raw
        store (samples of channels not reported, or from the future, are left out)."""
        out: list[Sample] = []
        for s in samples:
            m = self.maps.get((device, s.channel))
            if m is None:
                continue
            if s.t > now + self.tolerance_s:
                self._dropped_future += 1
                if self._dropped_future in (1, 10, 100) or self._dropped_future % 1000 == 0:
                    log.warning("sample_from_the_future_dropped", extra={
                        "device": device, "channel": m.symbol, "t": s.t, "now": now,
                        "dropped": self._dropped_future})
                continue
            if self._jump_marks and s.t < self._jump_marks[-1] - self.tolerance_s:
                continue  # stamped in the time line before the last jump: its window is closed
            named = Sample(m.symbol, s.t, s.value, s.status)
            out.append(named)
            self.last[m.symbol] = LastSample(m.symbol, device, s.value, s.status.name.lower(),
                                             s.t, m.unit)
            for width, averager in self.averagers.items():
                if s.t >= self._fence.get((width, m.symbol), -math.inf):
                    averager.feed(named)
            for volume in self.volumes:
                volume.feed(named)
        return out

    def clock_state(self, now: float, synced: bool | None) -> None:
        """Note whether the clock is synchronised (None: cannot tell, counts as not)."""
        open_span = self._unsynced[-1] if self._unsynced and self._unsynced[-1][1] == math.inf \
            else None
        if synced is not True and open_span is None:
            self._unsynced.append([now, math.inf])
        elif synced is True and open_span is not None:
            open_span[1] = now

    def jump(self, jump: ClockJump, stored: Iterable[Record] = ()) -> list[Record]:
        """The wall clock jumped: close everything at the old time, start afresh at the new.

        ``stored``: the records already stored (or held for the store) whose window ends after
        ``jump.at_wall``; with the windows closed here they are the windows the new time line
        must not make a second valid record of."""
        before = jump.at_wall - jump.offset  # what the clock would say without the jump
        log.warning("clock_jump", extra={"offset_s": round(jump.offset, 3), "at": jump.at_wall,
                                         "direction": "backward" if jump.backwards
                                         else "forward"})
        out = self._close_all(before, RecordFlag.CLOCK_JUMP)
        self._build()
        self._fence.clear()  # the windows it fenced off that the clock can reach are in stored
        self._take([*stored, *out], after=jump.at_wall)
        self._jump_marks.append(jump.at_wall)
        # the unsynced spans were measured in the old time line; keep only an open one
        self._unsynced = [[jump.at_wall, math.inf]] if self._unsynced and \
            self._unsynced[-1][1] == math.inf else []
        return out

    def resume(self, emitted_up_to: Mapping[tuple[int, str], int], samples: Sequence[Sample],
               children: Sequence[Record], *, ahead: Sequence[Record] = (),
               now: float | None = None, readings: Sequence[Sample] = ()) -> None:
        """After a restart: windows up to ``emitted_up_to[(width, symbol)]`` were stored; re-feed
        the raw samples and child records kept since then, fence off the rest.

        ``ahead``: stored records whose window starts after ``now`` (left out of
        ``emitted_up_to``): the clock that made them was ahead of this one. Their windows are
        taken (a record made of them again is marked invalid, CLOCK_JUMP); every other window
        is produced as usual, and the first record of each channel and width after the restart
        carries CLOCK_JUMP: the clock went back across it, which the centre must see.

        ``readings``: raw samples from ``volume_since`` up to the first of ``samples``, for the
        totaliser volumes only (the windows are fenced where ``samples`` begin)."""
        self._fence = {k: float(v) for k, v in emitted_up_to.items()}
        for s in sorted(readings, key=lambda s: s.t):
            for volume in self.volumes:
                volume.feed(s)
        if ahead:
            self._take(ahead, after=-math.inf)
            newest = max(r.end for r in ahead)
            log.warning("clock_behind_stored_records", extra={
                "now": now, "newest_stored_end": newest, "windows": len(ahead),
                "ahead_s": None if now is None else round(newest - now, 3)})
            self._flag_next = {(w, c) for w in self.widths for c in self.units}
        for s in sorted(samples, key=lambda s: s.t):
            if s.channel not in self.units:
                continue
            for volume in self.volumes:  # its stored periods are fenced off in _finish
                volume.feed(s)
            for width, averager in self.averagers.items():
                if s.t >= self._fence.get((width, s.channel), -math.inf):
                    averager.feed(s)
        for rec in sorted(children, key=lambda r: r.start):
            self._to_rollups([rec], resume=True)

    # ---------------------------------------------------------------- output

    def tick(self, now: float) -> list[Record]:
        """Close every window that is over (plus its grace) at ``now``."""
        out: list[Record] = []
        for averager in self.averagers.values():
            out += self._finish(averager.advance(now))
        self._to_rollups(out)
        for _, rollup in self.rollups:
            closed = self._finish(rollup.advance(now), normalise=False)
            out += closed
            self._to_rollups(closed)
        for volume in self.volumes:
            out += self._finish(self._volume_events(volume, volume.advance(now)),
                                normalise=False)
        return out

    def close(self, now: float) -> list[Record]:
        """Shutdown: close every open window (PARTIAL where not over)."""
        out = self._close_all(now, RecordFlag.NONE)
        for volume in self.volumes:  # not on a clock jump: a day's count goes on across it
            out += self._finish(self._volume_events(volume, volume.close_all(now)),
                                normalise=False)
        return out

    def _close_all(self, now: float, extra: RecordFlag) -> list[Record]:
        out: list[Record] = []
        for averager in self.averagers.values():
            out += self._finish(averager.close_all(now), extra)
        self._to_rollups(out)
        for _, rollup in self.rollups:
            closed = self._finish(rollup.close_all(now), extra, normalise=False)
            out += closed
            self._to_rollups(closed)
        return out

    def _volume_events(self, volume: TotaliserVolumes, records: list[Record]) -> list[Record]:
        """Log each roll-over and meter replacement the totaliser saw: the reading pair a
        volume was (or was not) counted across, for whoever checks a day's figure."""
        for e in volume.events:
            log.warning("totaliser_rollover" if e.kind == "rollover" else "meter_replaced",
                        extra={"channel": e.source, "t": e.t, "previous": e.prev,
                               "reading": e.cur})
        volume.events.clear()
        return records

    def _to_rollups(self, records: Sequence[Record], resume: bool = False) -> None:
        """Feed closed records to the roll-ups built on their width (parents close later).

        Children are fed already normalised, so a parent is never normalised twice. A record
        of a window stored already (a second one, or one from a clock that ran ahead) is not
        fed: the roll-up has, or had, the first one."""
        for rec in records:
            width = rec.end - rec.start
            if self._is_taken(rec):
                continue
            for child, rollup in self.rollups:
                if child != width:
                    continue
                if resume and rec.start < self._fence.get((rollup.width_s, rec.channel),
                                                          -math.inf) \
                        and not isinstance(rollup, StreamingRolling):
                    continue  # a rolling one needs its history: _fenced drops what it made
                try:
                    rollup.feed(rec)
                except AveragingError as exc:
                    log.error("rollup_rejected_record", extra={
                        "channel": rec.channel, "start": rec.start, "reason": str(exc)})

    def _finish(self, records: list[Record], extra: RecordFlag = RecordFlag.NONE,
                normalise: bool = True) -> list[Record]:
        """Normalise, flag; drop windows a restart fenced off as already stored."""
        kept = [r for r in records if not self._fenced(r)]
        by_window: dict[tuple[int, int, str], Record] = {(r.start, r.end, r.channel): r
                                                         for r in kept}
        out = []
        for r in kept:
            r = self._flag(self._normalise(r, by_window) if normalise else r, extra)
            out.append(self._clash(r) if self._is_taken(r) else self._judge(r))
        return out

    def recount_volumes(self, specs: Iterable[TotaliserSpec], readings: Sequence[Sample],
                        now: float) -> None:
        """A reloaded config's ``[[totaliser]]`` (a declared meter replacement, a modulus):
        today's volumes counted again from ``readings`` (the raw samples from
        :meth:`volume_since`) under the new tables, nothing closed or sent for it. The days
        before today are sent already, so they are only counted through; the month restarts
        from the readings (not valid: its 1st is further back than they reach)."""
        midnight = floor_start(now, DAY_S, self.utc_offset_s)
        self.volumes = [TotaliserVolumes(t, self.utc_offset_s, grace_s=self.cfg.averaging.grace_s)
                        for t in specs]
        for volume in self.volumes:
            volume.emit_after = midnight
            for s in sorted(readings, key=lambda s: s.t):
                volume.feed(s)

    def set_limits(self, limits: Iterable[Limit]) -> None:
        """A reloaded config's ``[[limit]]``: judged from the next record on (a limit is no
        reason to close the open windows, as a change of windows is)."""
        self._limits = {(lim.channel, lim.window): lim for lim in limits}

    def _judge(self, r: Record) -> Record:
        """Flag a valid record over its limit (``[[limit]]``: per channel and window width).

        After normalisation, because a permit's limit is in the normalised unit (mg/Nm3 at
        the reference O2); never a record of a window stored already (it does not count)."""
        limit = self._limits.get((r.channel, r.end - r.start))
        if limit is None or not r.valid or not limit.breached(r.mean):
            return r
        log.warning("limit_exceeded", extra={
            "channel": r.channel, "start": r.start, "end": r.end, "mean": r.mean,
            "limit": limit.text(), "source": limit.source})
        return replace(r, flags=r.flags | RecordFlag.EXCEEDANCE)

    def _fenced(self, r: Record) -> bool:
        """A window a restart found stored already (``emitted_up_to`` is the newest end).

        Tiled windows start at or after the newest stored end; rolling ones overlap (the
        8-hour one ending 18:00 starts before the one ending 17:00 ended), so theirs end
        after it."""
        fence = self._fence.get((r.end - r.start, r.channel), -math.inf)
        return r.end <= fence if r.end - r.start in self._rolling_widths else r.start < fence

    # ---------------------------------------------------------------- windows stored already

    def _take(self, records: Iterable[Record], after: float) -> None:
        """Note the windows of ``records`` that end after ``after`` as stored already."""
        for r in records:
            if r.end > after:
                self._taken.setdefault((r.end - r.start, r.channel), set()).add(r.start)

    def _is_taken(self, r: Record) -> bool:
        return bool(self._taken) and r.start in self._taken.get((r.end - r.start, r.channel),
                                                                ())

    def _overlaps_taken(self, r: Record) -> bool:
        """A window stored already, of this channel and no wider than ``r``, overlaps it."""
        width = r.end - r.start
        for (w, channel), starts in self._taken.items():
            if channel != r.channel or w > width or not starts:
                continue
            first = floor_start(r.start, w, self.utc_offset_s)
            if any(s in starts for s in range(first, r.end, w)):
                return True
        return False

    def _clash(self, r: Record) -> Record:
        """A second record of a stored window: kept as evidence, never counted again."""
        self._clashes += 1
        log.warning("window_already_stored", extra={
            "channel": r.channel, "start": r.start, "end": r.end, "n_valid": r.n_valid,
            "was_valid": r.valid, "clashes": self._clashes})
        return replace(r, valid=False, flags=r.flags | RecordFlag.CLOCK_JUMP)

    def _normalise(self, r: Record, by_window: Mapping[tuple[int, int, str], Record]) -> Record:
        for n in self.cfg.normalise:
            if r.channel not in n.channels:
                continue
            o2 = by_window.get((r.start, r.end, n.o2_channel)) if n.o2_channel else None
            h2o = by_window.get((r.start, r.end, n.h2o_channel)) if n.h2o_channel else None
            try:
                return normalise_record(r, n.how, o2, h2o)
            except AveragingError as exc:
                # e.g. O2 above o2_max while the stack is shut down, or no H2O record: the
                # window cannot be referred, so it is kept, marked invalid, never dropped
                log.warning("normalise_failed_record_invalid", extra={
                    "channel": r.channel, "start": r.start, "end": r.end,
                    "o2": None if o2 is None else o2.mean, "reason": str(exc)})
                return replace(r, valid=False, flags=r.flags | RecordFlag.O2_NORMALISED)
        return r

    def _flag(self, r: Record, extra: RecordFlag) -> Record:
        flags = r.flags | extra
        if any(a < r.end and r.start <= b for a, b in self._unsynced):
            flags |= RecordFlag.CLOCK_UNSYNCED
        if any(r.start <= m < r.end for m in self._jump_marks):
            flags |= RecordFlag.CLOCK_JUMP
        if self._taken and self._overlaps_taken(r):
            flags |= RecordFlag.CLOCK_JUMP
        if self._flag_next and (r.end - r.start, r.channel) in self._flag_next:
            self._flag_next.discard((r.end - r.start, r.channel))
            flags |= RecordFlag.CLOCK_JUMP
        return r if flags == r.flags else replace(r, flags=flags)

    def forget_before(self, t: float) -> None:
        """Drop clock history older than ``t`` (no open window reaches back that far)."""
        self._unsynced = [s for s in self._unsynced if s[1] >= t]
        self._jump_marks = [m for m in self._jump_marks if m >= t]
        for (width, channel), starts in list(self._taken.items()):
            starts.difference_update([s for s in starts if s + width < t])
            if not starts:
                del self._taken[(width, channel)]
