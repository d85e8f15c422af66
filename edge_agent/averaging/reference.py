"""Plain-Python reference of every kernel in ``kernels.py``; for tests and the benchmark only.

Written for obviousness, not speed: points are grouped into windows with a dictionary and each
statistic is computed from its own list. Same definitions as the kernels (see there): window
membership by comparison with integer boundaries, population std, dominant status by count with
ties to the lower code, OFFLINE for an empty window, no window valid without a valid point.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

N_STATUS = 5
OFFLINE = 4

ERR_NONE = 0
ERR_UNSORTED = 1
ERR_STATUS = 2


def check_inputs(t: Sequence[float], status: Sequence[int]) -> tuple[int, int]:
    """(error kind, index) of the first bad time or status code, or (ERR_NONE, -1)."""
    for i, ti in enumerate(t):
        if not math.isfinite(ti) or (i > 0 and ti < t[i - 1]):
            return ERR_UNSORTED, i
        if not 0 <= int(status[i]) < N_STATUS:
            return ERR_STATUS, i
    return ERR_NONE, -1


def window_of(ti: float, start0: int, width: int) -> int:
    """The k with ``start0 + k*width <= ti < start0 + (k+1)*width``."""
    k = math.floor((ti - start0) / width)
    while ti < start0 + k * width:
        k -= 1
    while ti >= start0 + (k + 1) * width:
        k += 1
    return k


@dataclass
class RefWindows:
    n_samples: list[int]
    n_valid: list[int]
    mean: list[float]
    vmin: list[float]
    vmax: list[float]
    std: list[float]
    valid: list[bool]
    dominant: list[int]


def window_stats(
    t: Sequence[float],
    value: Sequence[float],
    lo: Sequence[float],
    hi: Sequence[float],
    status: Sequence[int],
    ok: Sequence[bool] | None,
    start0: int,
    width: int,
    n_windows: int,
    parts: int,
    min_valid: int,
    min_per_part: int,
) -> RefWindows:
    """Reference of ``kernels.window_stats`` (``ok=None`` means: valid iff MEASURING)."""
    members: dict[int, list[int]] = {}
    for i, ti in enumerate(t):
        k = window_of(ti, start0, width)
        if 0 <= k < n_windows:
            members.setdefault(k, []).append(i)
    nan = math.nan
    out = RefWindows(
        [0] * n_windows, [0] * n_windows, [nan] * n_windows, [nan] * n_windows,
        [nan] * n_windows, [nan] * n_windows, [False] * n_windows, [OFFLINE] * n_windows,
    )  # fmt: skip
    part_width = width // parts
    for k, idx in members.items():
        out.n_samples[k] = len(idx)
        counts = [0] * N_STATUS
        for i in idx:
            counts[int(status[i])] += 1
        out.dominant[k] = max(range(N_STATUS), key=lambda s: (counts[s], -s))
        good = [
            i
            for i in idx
            if (ok[i] if ok is not None else int(status[i]) == 0) and math.isfinite(value[i])
        ]
        out.n_valid[k] = len(good)
        if not good:
            continue
        total = 0.0
        for i in good:
            total += value[i]
        m = total / len(good)
        ss = 0.0
        for i in good:
            ss += (value[i] - m) ** 2
        out.mean[k] = m
        out.std[k] = math.sqrt(ss / len(good))
        out.vmin[k] = min(lo[i] for i in good)
        out.vmax[k] = max(hi[i] for i in good)
        ws = start0 + k * width
        per_part = [0] * parts
        for i in good:
            per_part[int((t[i] - ws) // part_width)] += 1
        out.valid[k] = len(good) >= min_valid and all(n >= min_per_part for n in per_part)
    return out


WIND_OK = 0
WIND_NO_DATA = 1
WIND_CALM = 2
WIND_CANCELLED = 3
CANCEL_RATIO = 1e-9
DEG = math.pi / 180.0


@dataclass
class RefWind:
    n_samples: list[int]
    n_valid: list[int]
    direction: list[float]
    ratio: list[float]
    scalar_speed: list[float]
    vector_speed: list[float]
    valid: list[bool]
    dominant: list[int]
    reason: list[int]


def wind_stats(
    t: Sequence[float],
    direction: Sequence[float],
    speed: Sequence[float] | None,
    status: Sequence[int],
    start0: int,
    width: int,
    n_windows: int,
    min_valid: int,
) -> RefWind:
    """Reference of ``kernels.wind_stats`` (``speed=None``: the unit-vector mean)."""
    members: dict[int, list[int]] = {}
    for i, ti in enumerate(t):
        k = window_of(ti, start0, width)
        if 0 <= k < n_windows:
            members.setdefault(k, []).append(i)
    nan = math.nan
    out = RefWind(
        [0] * n_windows, [0] * n_windows, [nan] * n_windows, [nan] * n_windows,
        [nan] * n_windows, [nan] * n_windows, [False] * n_windows, [OFFLINE] * n_windows,
        [WIND_NO_DATA] * n_windows,
    )  # fmt: skip
    for k, idx in members.items():
        out.n_samples[k] = len(idx)
        counts = [0] * N_STATUS
        for i in idx:
            counts[int(status[i])] += 1
        out.dominant[k] = max(range(N_STATUS), key=lambda s: (counts[s], -s))

        def weight_of(i: int) -> float:
            return 1.0 if speed is None else float(speed[i])

        good = [
            i for i in idx
            if int(status[i]) == 0 and math.isfinite(direction[i]) and 0 <= direction[i] <= 360
            and math.isfinite(weight_of(i)) and weight_of(i) >= 0
        ]  # fmt: skip
        out.n_valid[k] = len(good)
        if not good:
            continue
        east = north = weight = 0.0
        for i in good:
            east += weight_of(i) * math.sin(direction[i] * DEG)
            north += weight_of(i) * math.cos(direction[i] * DEG)
            weight += weight_of(i)
        length = math.sqrt(east * east + north * north)  # as the kernel: not hypot's rounding
        if speed is not None:
            out.scalar_speed[k] = weight / len(good)
            out.vector_speed[k] = length / len(good)
        if weight == 0.0:
            out.reason[k] = WIND_CALM
            continue
        out.ratio[k] = length / weight
        if length <= CANCEL_RATIO * weight:
            out.reason[k] = WIND_CANCELLED
            continue
        angle = math.atan2(east, north) / DEG
        if angle < 0.0:
            angle += 360.0
        out.direction[k] = 0.0 if angle >= 360.0 or angle == 0.0 else angle
        out.reason[k] = WIND_OK
        out.valid[k] = len(good) >= min_valid
    return out


def rolling_stats(
    child_start: Sequence[float],
    mean: Sequence[float],
    ok: Sequence[bool],
    status: Sequence[int],
    child_width: int,
    end0: int,
    n_out: int,
    span: int,
    min_valid: int,
) -> RefWindows:
    """Reference of ``kernels.rolling_stats``: each output from its own list of children
    (``n_samples`` holds the children present)."""
    nan = math.nan
    out = RefWindows(
        [0] * n_out, [0] * n_out, [nan] * n_out, [nan] * n_out, [nan] * n_out, [nan] * n_out,
        [False] * n_out, [OFFLINE] * n_out,
    )  # fmt: skip
    for k in range(n_out):
        end = end0 + k * child_width
        begin = end - span * child_width
        # the children are sorted: bisect finds the span, so the reference stays linear and
        # the benchmark's pure-Python rate is not a quadratic scan's
        present = range(bisect.bisect_left(child_start, begin),
                        bisect.bisect_left(child_start, end))
        out.n_samples[k] = len(present)
        if present:
            counts = [0] * N_STATUS
            for i in present:
                counts[int(status[i])] += 1
            out.dominant[k] = max(range(N_STATUS), key=lambda s: (counts[s], -s))
        good = [mean[i] for i in present if ok[i] and math.isfinite(mean[i])]
        out.n_valid[k] = len(good)
        if not good:
            continue
        total = 0.0
        for v in good:
            total += v
        m = total / len(good)
        ss = 0.0
        for v in good:
            ss += (v - m) * (v - m)
        out.mean[k] = m
        out.std[k] = math.sqrt(ss / len(good))
        out.vmin[k] = min(good)
        out.vmax[k] = max(good)
        out.valid[k] = len(good) >= min_valid
    return out
