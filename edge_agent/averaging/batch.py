"""Batch mode: aggregate stored arrays into clock-aligned windows, and roll records up.

The array-level API (``aggregate``, ``rollup_arrays``) is what the centre uses to re-judge
months of data; ``to_records`` and ``rollup`` wrap it for the edge agent, which speaks
``protocol.model.Record``. Streaming mode (``streaming.py``) calls the same functions on the
samples of one window, so there is one set of kernels for both modes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.averaging.cache import kernels
from edge_agent.averaging.errors import InputError, UnsortedTimesError
from edge_agent.averaging.rules import COVERAGE_75, ValidityRule
from edge_agent.averaging.windows import ceil_end, check_width, floor_start, n_expected
from protocol.model import Record, RecordFlag, Status

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_NO_OK = np.zeros(0, np.bool_)


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Per-window arrays (one element per window, ``start[k] = start0 + k*width_s``)."""

    start0: int
    width_s: int
    n_expected: int
    n_samples: I64
    n_valid: I64
    mean: F64
    min: F64
    max: F64
    std: F64
    valid: npt.NDArray[np.bool_]
    status: npt.NDArray[np.int8]

    @property
    def start(self) -> I64:
        return self.start0 + self.width_s * np.arange(len(self.n_valid), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.n_valid)


def _as_f64(name: str, channel: str, a: npt.ArrayLike) -> F64:
    arr = np.ascontiguousarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"channel {channel!r}: {name} must be one-dimensional, got {arr.shape}")
    return arr


def _span(
    t: F64, start: float | None, end: float | None, width_s: int, utc_offset_s: int
) -> tuple[int, int]:
    """First window start and number of windows covering [start, end) (default: the data)."""
    if start is None:
        if len(t) == 0:
            return 0, 0
        start = float(t[0])
    if end is None:
        if len(t) == 0:
            return floor_start(start, width_s, utc_offset_s), 0
        end = float(np.nextafter(t[-1], np.inf))  # include the last sample
    start0 = floor_start(start, width_s, utc_offset_s)
    stop = ceil_end(end, width_s, utc_offset_s)
    return start0, max(0, (stop - start0) // width_s)


def _run(
    channel: str,
    t: F64,
    value: F64,
    lo: F64,
    hi: F64,
    status: npt.NDArray[np.int8],
    ok: npt.NDArray[np.bool_] | None,
    expected: int,
    width_s: int,
    utc_offset_s: int,
    rule: ValidityRule,
    start: float | None,
    end: float | None,
) -> WindowStats:
    check_width(width_s)
    rule.check_width(width_s)
    if not (len(t) == len(value) == len(status)):
        raise InputError(
            f"channel {channel!r}: t, value and status differ in length "
            f"({len(t)}, {len(value)}, {len(status)})"
        )
    k = kernels()
    err, index = k.check_inputs(t, status)
    if err == k.ERR_UNSORTED:
        raise UnsortedTimesError(channel, int(index), float(t[index - 1]), float(t[index]))
    if err == k.ERR_STATUS:
        raise InputError(
            f"channel {channel!r}: status[{index}]={int(status[index])} is not a Status"
        )
    start0, n_windows = _span(t, start, end, width_s, utc_offset_s)
    out = k.window_stats(
        t, value, lo, hi, status, _NO_OK if ok is None else ok, ok is not None,
        start0, width_s, n_windows, rule.parts, rule.min_valid(expected), rule.min_per_part,
    )  # fmt: skip
    return WindowStats(start0, width_s, expected, *out)


def aggregate(
    t: npt.ArrayLike,
    value: npt.ArrayLike,
    status: npt.ArrayLike,
    *,
    width_s: int,
    period_s: float,
    utc_offset_s: int = 0,
    rule: ValidityRule = COVERAGE_75,
    start: float | None = None,
    end: float | None = None,
    channel: str = "?",
) -> WindowStats:
    """Aggregate one channel's samples into windows of ``width_s`` covering [start, end).

    ``t`` ascending UTC epoch seconds, ``value`` float (NaN allowed), ``status`` codes of
    ``protocol.model.Status``; only MEASURING samples with a finite value are valid.
    ``start``/``end`` default to the span of the data and are widened to window boundaries;
    windows inside the span with no sample come back empty (n_valid 0, status OFFLINE).
    """
    tt = _as_f64("t", channel, t)
    vv = _as_f64("value", channel, value)
    ss = np.ascontiguousarray(status)
    if ss.size == 0:
        ss = np.zeros(0, np.int8)  # [] comes in as float64
    if ss.ndim != 1 or not np.issubdtype(ss.dtype, np.integer):
        raise InputError(f"channel {channel!r}: status must be a 1-D integer array, got {ss.dtype}")
    if ss.dtype != np.int8:
        if len(ss) and (ss.min() < 0 or ss.max() >= len(Status)):
            bad = int(np.flatnonzero((ss < 0) | (ss >= len(Status)))[0])
            raise InputError(f"channel {channel!r}: status[{bad}]={int(ss[bad])} is not a Status")
        ss = ss.astype(np.int8)
    check_width(width_s)
    expected = n_expected(width_s, period_s, channel)
    return _run(channel, tt, vv, vv, vv, ss, None, expected, width_s, utc_offset_s, rule,
                start, end)  # fmt: skip


def rollup_arrays(
    child_start: npt.ArrayLike,
    child_width_s: int,
    mean: npt.ArrayLike,
    vmin: npt.ArrayLike,
    vmax: npt.ArrayLike,
    valid: npt.ArrayLike,
    status: npt.ArrayLike,
    *,
    width_s: int,
    utc_offset_s: int = 0,
    rule: ValidityRule = COVERAGE_75,
    start: float | None = None,
    end: float | None = None,
    channel: str = "?",
) -> WindowStats:
    """Roll child windows (e.g. 5-min) up into parents (e.g. hourly) with their own rule.

    The parent's points are its valid children: n_valid counts valid children, n_expected is
    ``width_s / child_width_s``, mean and std are over the valid children's means (each
    sub-window weighs the same), min and max are the extremes of the valid children's min and
    max. The quadrant rule then asks for a valid child in each quadrant.
    """
    check_width(child_width_s, "child_width_s")
    check_width(width_s)
    if width_s % child_width_s != 0 or width_s <= child_width_s:
        raise InputError(
            f"channel {channel!r}: child windows of {child_width_s} s do not tile {width_s} s"
        )
    tt = _as_f64("child_start", channel, child_start)
    ok = np.ascontiguousarray(valid, dtype=np.bool_)
    ss = np.ascontiguousarray(status, dtype=np.int8)
    if len(tt) and np.any((tt + utc_offset_s) % child_width_s != 0):
        bad = int(np.flatnonzero((tt + utc_offset_s) % child_width_s != 0)[0])
        raise InputError(
            f"channel {channel!r}: child_start[{bad}]={tt[bad]!r} is not aligned to "
            f"{child_width_s} s windows"
        )
    return _run(
        channel, tt, _as_f64("mean", channel, mean), _as_f64("min", channel, vmin),
        _as_f64("max", channel, vmax), ss, ok, width_s // child_width_s, width_s,
        utc_offset_s, rule, start, end,
    )  # fmt: skip


def to_records(
    stats: WindowStats,
    channel: str,
    unit: str,
    flags: RecordFlag | Sequence[RecordFlag] = RecordFlag.NONE,
) -> list[Record]:
    """One ``Record`` per window; ``flags`` is one flag set for all or one per window."""
    starts = stats.start.tolist()
    per_window = list(flags) if isinstance(flags, Sequence) else [flags] * len(stats)
    return [
        Record(
            channel=channel,
            start=int(starts[k]),
            end=int(starts[k]) + stats.width_s,
            mean=float(stats.mean[k]),
            min=float(stats.min[k]),
            max=float(stats.max[k]),
            std=float(stats.std[k]),
            n_valid=int(stats.n_valid[k]),
            n_expected=stats.n_expected,
            valid=bool(stats.valid[k]),
            status=Status(int(stats.status[k])),
            unit=unit,
            flags=per_window[k],
        )
        for k in range(len(stats))
    ]


def rollup_channel(
    channel: str,
    unit: str,
    child_width_s: int,
    children: Sequence[Record],
    *,
    width_s: int,
    utc_offset_s: int = 0,
    rule: ValidityRule = COVERAGE_75,
    start: float | None = None,
    end: float | None = None,
) -> list[Record]:
    """Roll one channel's child records up (see ``rollup_arrays``); children may be empty.

    Children must share the width ``child_width_s`` and ``unit`` and not repeat a start. A
    parent carries the union of its children's flags (conversions applied, clock jumps, late
    drops) except PARTIAL, which says a child closed early, not that the parent did.
    """
    recs = sorted(children, key=lambda r: r.start)
    for r in recs:
        if r.end - r.start != child_width_s or r.unit != unit or r.channel != channel:
            raise InputError(
                f"channel {channel!r}: record {r.channel!r} [{r.start}, {r.end}) in "
                f"{r.unit!r} does not fit a roll-up of {child_width_s} s children in {unit!r}"
            )
    for a, b in itertools.pairwise(recs):
        if a.start == b.start:
            raise InputError(f"channel {channel!r}: two records start at {a.start}")
    stats = rollup_arrays(
        [r.start for r in recs], child_width_s, [r.mean for r in recs],
        [r.min for r in recs], [r.max for r in recs], [r.valid for r in recs],
        [int(r.status) for r in recs], width_s=width_s, utc_offset_s=utc_offset_s,
        rule=rule, start=start, end=end, channel=channel,
    )  # fmt: skip
    flags = [RecordFlag.NONE] * len(stats)
    for r in recs:
        k = (r.start - stats.start0) // width_s
        if 0 <= k < len(stats):
            flags[k] |= r.flags & ~RecordFlag.PARTIAL
    return to_records(stats, channel, unit, flags)


def rollup(
    records: Iterable[Record],
    *,
    width_s: int,
    utc_offset_s: int = 0,
    rule: ValidityRule = COVERAGE_75,
    start: float | None = None,
    end: float | None = None,
) -> list[Record]:
    """Roll records of any channels up into parent windows, grouped by channel (first-seen
    order), each in time order. Per channel the first record sets the child width and unit."""
    by_channel: dict[str, list[Record]] = {}
    for rec in records:
        by_channel.setdefault(rec.channel, []).append(rec)
    out: list[Record] = []
    for channel, recs in by_channel.items():
        out.extend(
            rollup_channel(
                channel, recs[0].unit, recs[0].end - recs[0].start, recs, width_s=width_s,
                utc_offset_s=utc_offset_s, rule=rule, start=start, end=end,
            )
        )
    return out
