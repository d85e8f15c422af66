"""Plain-Python reference of every kernel in ``kernels.py``; for tests and the benchmark only.

Written for obviousness, not speed: points are grouped into windows with a dictionary and each
statistic is computed from its own list. Same definitions as the kernels (see there): window
membership by comparison with integer boundaries, population std, dominant status by count with
ties to the lower code, OFFLINE for an empty window, no window valid without a valid point.
"""

from __future__ import annotations

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
