"""Rolling averages of hourly records: the 8-hour average of ambient CO and O3.

What QCVN 05:2023/BTNMT (ambient air quality, issued with Circular 01/2023/TT-BTNMT, in force
12 Sep 2023, replacing QCVN 05:2013 and QCVN 06:2009) asks: limits on 1-hour, 8-hour (CO, O3),
24-hour and annual averages. A 1-hour average is the arithmetic mean of the values measured in
one hour; an 8-hour average the arithmetic mean of the values measured over 8 consecutive
hours; a 24-hour average over 24 consecutive hours; the largest average of a day is the one
compared with the limit. It states no minimum number of valid hours and no hour at which an
8-hour average is stamped, so this module takes both from the practice ambient networks
follow elsewhere:

* an 8-hour average is formed every hour, from the 8 hourly means that end at that hour (a
  rolling, not a block, average: a day has 24 of them, so the day's largest one is found
  whatever hour the peak falls in);
* it is valid with at least 6 of its 8 hours valid (75 %, as US EPA's 8-hour O3/CO data
  handling and EU Directive 2008/50/EC require); its mean is over the valid hours only;
* it is stamped by the window it covers, ``[end - 8 h, end)``: the record of 10:00-18:00 is
  the 8-hour average "at 18:00", known when its last hour closes (the EU convention, and the
  same end-of-window stamp Circular 10 files use; US EPA names it by its first hour instead,
  which the record's ``start`` also gives).

The points are the hourly records (each hour weighs the same, as in ``batch.rollup``); an hour
is valid when its record is. Min and max are the extremes of the hourly means (the 8-hour
figure is about sustained exposure, not the seconds inside an hour).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.averaging.batch import _as_f64
from edge_agent.averaging.cache import kernels
from edge_agent.averaging.errors import InputError
from edge_agent.averaging.windows import check_width
from protocol.model import Record, RecordFlag, Status

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Rolling:
    """A rolling average: ``span`` child windows of ``child_s`` each, valid with ``min_valid``
    of them valid; one result at the end of every child window."""

    name: str
    span: int = 8
    min_valid: int = 6
    child_s: int = 3600

    def __post_init__(self) -> None:
        check_width(self.child_s, f"rolling {self.name!r}: child_s")
        if not (isinstance(self.span, int) and self.span >= 2):
            raise InputError(f"rolling {self.name!r}: span={self.span!r} must be an integer >= 2")
        if not (isinstance(self.min_valid, int) and 1 <= self.min_valid <= self.span):
            raise InputError(f"rolling {self.name!r}: min_valid={self.min_valid!r} must be in "
                             f"1..span ({self.span})")

    @property
    def width_s(self) -> int:
        return self.span * self.child_s


ROLLING_8H = Rolling("8h")
"""QCVN 05:2023's 8-hour average (CO, O3): 8 hourly means, valid with 6 of them."""


@dataclass(frozen=True, slots=True)
class RollingStats:
    """One element per result ``k``, covering ``[end[k] - width_s, end[k])``."""

    end0: int
    rolling: Rolling
    n_present: I64
    n_valid: I64
    mean: F64
    min: F64
    max: F64
    std: F64
    valid: npt.NDArray[np.bool_]
    status: npt.NDArray[np.int8]

    @property
    def end(self) -> I64:
        step = self.rolling.child_s
        return self.end0 + step * np.arange(len(self.n_valid), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.n_valid)


def rolling_arrays(
    child_start: npt.ArrayLike,
    mean: npt.ArrayLike,
    valid: npt.ArrayLike,
    status: npt.ArrayLike,
    *,
    rolling: Rolling = ROLLING_8H,
    utc_offset_s: int = 0,
    first_end: int | None = None,
    last_end: int | None = None,
    channel: str = "?",
) -> RollingStats:
    """Rolling averages ending at every child boundary from ``first_end`` to ``last_end``.

    Children (e.g. hourly windows) are given by start, ascending, none repeated, aligned to
    the station's clock. The ends default to the first and last child's end; a missing hour
    is simply absent (it counts as not valid).
    """
    step = rolling.child_s
    tt = _as_f64("child_start", channel, child_start)
    mm = _as_f64("mean", channel, mean)
    ok = np.ascontiguousarray(valid, dtype=np.bool_)
    ss = np.ascontiguousarray(status, dtype=np.int64)
    if not (len(tt) == len(mm) == len(ok) == len(ss)):
        raise InputError(f"channel {channel!r}: child_start, mean, valid and status differ in "
                         f"length ({len(tt)}, {len(mm)}, {len(ok)}, {len(ss)})")
    if len(ss) and (ss.min() < 0 or ss.max() >= len(Status)):
        i = int(np.flatnonzero((ss < 0) | (ss >= len(Status)))[0])
        raise InputError(f"channel {channel!r}: status[{i}]={int(ss[i])} is not a Status")
    misaligned = _misaligned(tt, step, utc_offset_s)
    if len(misaligned):
        i = int(misaligned[0])
        raise InputError(f"channel {channel!r}: child_start[{i}]={tt[i]!r} is not aligned to "
                         f"{step} s windows")
    repeats = np.flatnonzero(np.diff(tt) <= 0)
    if len(repeats):
        i = int(repeats[0]) + 1
        raise InputError(f"channel {channel!r}: child_start[{i}]={tt[i]!r} does not follow "
                         f"child_start[{i - 1}]={tt[i - 1]!r} (ascending, none repeated)")
    for name, e in (("first_end", first_end), ("last_end", last_end)):
        if e is not None and (e + utc_offset_s) % step != 0:
            raise InputError(f"channel {channel!r}: {name}={e!r} is not a {step} s boundary")
    if first_end is None:
        first_end = int(tt[0]) + step if len(tt) else 0
    if last_end is None:
        last_end = int(tt[-1]) + step if len(tt) else first_end - step
    n_out = max(0, (last_end - first_end) // step + 1)
    out = kernels().rolling_stats(tt, mm, ok, ss.astype(np.int8), step, first_end, n_out,
                                  rolling.span, rolling.min_valid)
    return RollingStats(first_end, rolling, *out)


def _misaligned(tt: F64, step: int, utc_offset_s: int) -> I64:
    """Indexes of child starts that are not on a ``step`` boundary of the station's clock.

    The first start is checked by a modulo, the others by their distance ``d`` from it being
    a whole number of steps: ``q = rint(d / step)``, ``q * step == d``, exact for whole
    seconds below 2**53. A multiply per child instead of a floating-point modulo, which was
    most of the time ``rolling_arrays`` spent outside its kernel."""
    if len(tt) == 0:
        return np.zeros(0, np.int64)
    with np.errstate(invalid="ignore"):
        d = tt - tt[0]
        bad = ~np.isfinite(tt) | (np.rint(d * (1.0 / step)) * step != d)
    first = float(tt[0])
    if not (math.isfinite(first) and (first + utc_offset_s) % step == 0):
        bad[0] = True
    return np.flatnonzero(bad)


def rolling_channel(
    channel: str,
    unit: str,
    children: Sequence[Record],
    *,
    rolling: Rolling = ROLLING_8H,
    utc_offset_s: int = 0,
    first_end: int | None = None,
    last_end: int | None = None,
) -> list[Record]:
    """Rolling records of one channel from its child records (hourly for the 8-hour one).

    Each record is ``[end - span*child, end)`` with ``n_expected = span``; it carries the
    union of its children's flags except PARTIAL (a child cut short is not this record).
    """
    recs = sorted(children, key=lambda r: r.start)
    for r in recs:
        if r.end - r.start != rolling.child_s or r.unit != unit or r.channel != channel:
            raise InputError(
                f"channel {channel!r}: record {r.channel!r} [{r.start}, {r.end}) in "
                f"{r.unit!r} does not fit rolling {rolling.name!r} of {rolling.child_s} s "
                f"children in {unit!r}"
            )
    for a, b in itertools.pairwise(recs):
        if a.start == b.start:
            raise InputError(f"channel {channel!r}: two records start at {a.start}")
    stats = rolling_arrays(
        [r.start for r in recs], [r.mean for r in recs], [r.valid for r in recs],
        [int(r.status) for r in recs], rolling=rolling, utc_offset_s=utc_offset_s,
        first_end=first_end, last_end=last_end, channel=channel,
    )  # fmt: skip
    starts = [r.start for r in recs]
    out: list[Record] = []
    for k, end in enumerate(stats.end.tolist()):
        begin = end - rolling.width_s
        flags = RecordFlag.NONE
        for r in recs[bisect.bisect_left(starts, begin) : bisect.bisect_left(starts, end)]:
            flags |= r.flags & ~RecordFlag.PARTIAL
        out.append(Record(
            channel=channel, start=begin, end=end, mean=float(stats.mean[k]),
            min=float(stats.min[k]), max=float(stats.max[k]), std=float(stats.std[k]),
            n_valid=int(stats.n_valid[k]), n_expected=rolling.span, valid=bool(stats.valid[k]),
            status=Status(int(stats.status[k])), unit=unit, flags=flags,
        ))  # fmt: skip
    return out
