"""Numba kernels: one pass over sorted samples into clock-aligned windows.

Import this module only through ``edge_agent.averaging.cache.kernels()`` so that the numba
cache directory is set first. ``reference.py`` holds a plain-Python twin of every function
here; the tests hold them to each other.

Window membership is decided by comparison, not by division alone: sample ``t`` belongs to
window ``k`` iff ``start0 + k*width <= t < start0 + (k+1)*width`` (boundaries are integers, so
exact in float64). A division guesses ``k`` and the comparisons correct it, so a sample exactly
on an edge always opens the later window, in both implementations.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

N_STATUS = 5  # protocol.model.Status: MEASURING .. OFFLINE
OFFLINE = 4  # the dominant status of a window with no sample at all

ERR_NONE = 0
ERR_UNSORTED = 1
ERR_STATUS = 2


@njit(cache=True)
def check_inputs(t, status):  # type: ignore[no-untyped-def]
    """(error kind, index): times finite and ascending, status codes known."""
    n = t.shape[0]
    for i in range(n):
        ti = t[i]
        if not math.isfinite(ti):
            return ERR_UNSORTED, i
        if i > 0 and ti < t[i - 1]:
            return ERR_UNSORTED, i
        s = status[i]
        if s < 0 or s >= N_STATUS:
            return ERR_STATUS, i
    return ERR_NONE, -1


@njit(cache=True)
def _window_of(ti, start0, width):  # type: ignore[no-untyped-def]
    k = math.floor((ti - start0) / width)
    while ti < start0 + k * width:
        k -= 1
    while ti >= start0 + (k + 1) * width:
        k += 1
    return k


@njit(cache=True)
def window_stats(  # type: ignore[no-untyped-def]
    t, value, lo, hi, status, ok, use_ok, start0, width, n_windows, parts, min_valid, min_per_part
):
    """Aggregate sorted points into ``n_windows`` windows of ``width`` s from ``start0``.

    A point is valid when ``ok[i]`` (if ``use_ok``) or its status is MEASURING, and its
    ``value`` is finite. Per window: mean and population std of valid values (the std takes a
    second pass over the window's valid values, copied to a scratch buffer, for accuracy), min
    of ``lo`` and max of ``hi`` over valid points (samples pass ``value`` for both; roll-ups
    pass their children's extremes), counts, the verdict of the validity rule, and the
    dominant status (most frequent; ties go to the lower code; OFFLINE when the window holds no
    point). Points outside the windows are ignored.
    """
    n_samples = np.zeros(n_windows, np.int64)
    n_valid = np.zeros(n_windows, np.int64)
    mean = np.full(n_windows, np.nan)
    vmin = np.full(n_windows, np.nan)
    vmax = np.full(n_windows, np.nan)
    std = np.full(n_windows, np.nan)
    valid = np.zeros(n_windows, np.bool_)
    dominant = np.full(n_windows, OFFLINE, np.int8)
    counts = np.zeros(N_STATUS, np.int64)
    part_valid = np.zeros(parts, np.int64)
    part_width = width // parts
    scratch = np.empty(4096, np.float64)  # a window's valid values, for the second pass
    end_all = start0 + n_windows * width
    n = t.shape[0]
    i = 0
    while i < n and t[i] < start0:
        i += 1
    while i < n and t[i] < end_all:
        k = _window_of(t[i], start0, width)
        ws = start0 + k * width
        we = ws + width
        counts[:] = 0
        part_valid[:] = 0
        c = 0
        total = 0.0
        mn = np.inf
        mx = -np.inf
        q = 0
        end = i
        while end < n and t[end] < we:
            end += 1
        if end - i > scratch.shape[0]:
            scratch = np.empty(end - i, np.float64)
        j = i
        while j < end:
            s = status[j]
            counts[s] += 1
            v = value[j]
            good = ok[j] if use_ok else s == 0
            if good and math.isfinite(v):
                scratch[c] = v
                c += 1
                total += v
                if lo[j] < mn:
                    mn = lo[j]
                if hi[j] > mx:
                    mx = hi[j]
                if parts > 1:
                    while t[j] >= ws + (q + 1) * part_width:
                        q += 1
                    part_valid[q] += 1
            j += 1
        n_samples[k] = j - i
        n_valid[k] = c
        best = 0
        for s in range(1, N_STATUS):
            if counts[s] > counts[best]:
                best = s
        dominant[k] = best
        if c > 0:
            m = total / c
            ss = 0.0
            for p in range(c):
                d = scratch[p] - m
                ss += d * d
            mean[k] = m
            vmin[k] = mn
            vmax[k] = mx
            std[k] = math.sqrt(ss / c)
            verdict = c >= min_valid
            if parts > 1:
                for p in range(parts):
                    if part_valid[p] < min_per_part:
                        verdict = False
            else:
                verdict = verdict and c >= min_per_part
            valid[k] = verdict
        i = j
    return n_samples, n_valid, mean, vmin, vmax, std, valid, dominant


# Why a direction window has no direction (``wind.py`` names them; ``reference.py`` mirrors).
WIND_OK = 0
WIND_NO_DATA = 1  # no valid point in the window
WIND_CALM = 2  # speed-weighted, and every valid speed was 0: no direction exists
WIND_CANCELLED = 3  # the vectors cancel (90 and 270 deg): any angle would be noise
CANCEL_RATIO = 1e-9  # resultant length / total weight below this counts as cancelled
DEG = math.pi / 180.0

# Taylor coefficients of sin (x, x^3, .. x^17) and cos (1, x^2, .. x^16): on |x| <= pi/4 the
# first term left out is below 1e-19, so the polynomial is as good as libm's (<= 6e-16 apart)
_S = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(9))
_C = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(9))
S1, S3, S5, S7, S9, S11, S13, S15, S17 = _S
C0, C2, C4, C6, C8, C10, C12, C14, C16 = _C


WIND_BLOCK = 2048  # points per wind_vectors call: the scratch stays in the L1/L2 cache


@njit(cache=True)
def wind_vectors(direction, speed, use_speed, lo, hi, east, north, weight, good):  # type: ignore[no-untyped-def]
    """Each point's vector ``w * (sin d, cos d)``, its weight ``w`` and whether its
    direction and speed are usable, for points ``lo..hi`` into ``east[0..]`` and so on; an
    unusable point's are 0. (Its status is the caller's to check.)

    Why a pass of its own: sin and cos per sample were most of ``wind_stats``'s time (two
    libm calls, each reducing its radian argument again). In degrees the reduction to
    [-45, 45] is exact (``d - 90 q`` loses nothing, Sterbenz), so one Taylor pair (first term
    left out below 1e-19) and a quadrant swap give both, within 6e-16 of
    ``math.sin(d * DEG)`` (the reference's) and exact at the quadrant angles (sin 180 = 0,
    where ``sin(pi)`` is 1.2e-16). Written with float selects only (no int conversion, no
    branch: a gusty vane's quadrant is random), so LLVM vectorises the loop: a few ns a point
    instead of ~30. The window loop then only adds. Blocks of ``WIND_BLOCK`` points into a
    scratch buffer allocated once: arrays of every point would cost a page fault each 512.
    """
    for i in range(hi - lo):
        d = direction[lo + i]
        w = speed[lo + i] if use_speed else 1.0
        ok = (d >= 0.0) & (d <= 360.0) & (w >= 0.0) & (w < np.inf)
        q = np.floor(d * (1.0 / 90.0) + 0.5)
        x = (d - 90.0 * q) * DEG
        z = x * x
        sx = x * (S1 + z * (S3 + z * (S5 + z * (S7 + z * (S9 + z * (S11 + z * (S13 + z * (
            S15 + z * S17))))))))
        cx = C0 + z * (C2 + z * (C4 + z * (C6 + z * (C8 + z * (C10 + z * (C12 + z * (
            C14 + z * C16)))))))
        m = q - 4.0 * np.floor(q * 0.25)  # the quadrant, 0..3
        odd = (m == 1.0) | (m == 3.0)
        sd = (cx if odd else sx) * (-1.0 if m >= 2.0 else 1.0)
        cd = (sx if odd else cx) * (-1.0 if (m == 1.0) | (m == 2.0) else 1.0)
        good[i] = ok
        east[i] = w * sd if ok else 0.0
        north[i] = w * cd if ok else 0.0
        weight[i] = w if ok else 0.0


@njit(cache=True)
def wind_stats(  # type: ignore[no-untyped-def]
    t, direction, speed, status, use_speed, start0, width, n_windows, min_valid
):
    """Vector mean of wind directions (degrees) into ``n_windows`` windows of ``width`` s.

    A point is valid when its status is MEASURING, its direction is finite and in [0, 360]
    and, with ``use_speed``, its speed is finite and >= 0. Each valid point adds the vector
    ``w * (sin d, cos d)`` (east, north), ``w`` its speed with ``use_speed``, else 1 (the
    unit-vector mean). Per window: the direction of the summed vector in [0, 360) (atan2 of
    the sums; -0.0 and 360 fold to 0), the resultant ratio ``|sum| / sum w`` (1: steady, 0:
    no prevailing direction), with speeds the scalar mean speed and the vector mean speed
    ``|sum of speed vectors| / n``, counts, validity (``n_valid >= min_valid`` and a
    direction exists), the dominant status as ``window_stats`` counts it, and the reason code
    when there is no direction (NaN): no data, calm, or cancelled.
    """
    n_samples = np.zeros(n_windows, np.int64)
    n_valid = np.zeros(n_windows, np.int64)
    mean_dir = np.full(n_windows, np.nan)
    ratio = np.full(n_windows, np.nan)
    scalar_speed = np.full(n_windows, np.nan)
    vector_speed = np.full(n_windows, np.nan)
    valid = np.zeros(n_windows, np.bool_)
    dominant = np.full(n_windows, OFFLINE, np.int8)
    reason = np.full(n_windows, WIND_NO_DATA, np.int8)
    counts = np.zeros(N_STATUS, np.int64)
    end_all = start0 + n_windows * width
    n = t.shape[0]
    i = 0
    while i < n and t[i] < start0:
        i += 1
    vx = np.empty(WIND_BLOCK, np.float64)
    vy = np.empty(WIND_BLOCK, np.float64)
    vw = np.empty(WIND_BLOCK, np.float64)
    vok = np.zeros(WIND_BLOCK, np.bool_)
    first = 0  # the block in the scratch: points first .. first + WIND_BLOCK - 1
    filled = 0
    while i < n and t[i] < end_all:
        k = _window_of(t[i], start0, width)
        we = start0 + k * width + width
        counts[:] = 0
        c = 0
        measuring_unusable = 0
        east = 0.0
        north = 0.0
        weight = 0.0
        j = i
        while j < n and t[j] < we:
            if j >= filled:
                first = j
                filled = min(j + WIND_BLOCK, n)
                wind_vectors(direction, speed, use_speed, first, filled, vx, vy, vw, vok)
            s = status[j]
            b = j - first
            if s != 0:
                counts[s] += 1
            elif vok[b]:
                c += 1
                east += vx[b]
                north += vy[b]
                weight += vw[b]
            else:
                measuring_unusable += 1
            j += 1
        # MEASURING kept in registers: counts[0] += 1 per point waited on its own store
        counts[0] = c + measuring_unusable
        n_samples[k] = j - i
        n_valid[k] = c
        best = 0
        for s in range(1, N_STATUS):
            if counts[s] > counts[best]:
                best = s
        dominant[k] = best
        if c > 0:
            length = math.sqrt(east * east + north * north)
            if use_speed:
                scalar_speed[k] = weight / c
                vector_speed[k] = length / c
            if weight == 0.0:
                reason[k] = WIND_CALM
            elif length <= CANCEL_RATIO * weight:
                reason[k] = WIND_CANCELLED
                ratio[k] = length / weight
            else:
                a = math.atan2(east, north) / DEG
                if a < 0.0:
                    a += 360.0
                if a >= 360.0 or a == 0.0:
                    a = 0.0
                mean_dir[k] = a
                ratio[k] = length / weight
                reason[k] = WIND_OK
                valid[k] = c >= min_valid
        i = j
    return (n_samples, n_valid, mean_dir, ratio, scalar_speed, vector_speed, valid, dominant,
            reason)


@njit(cache=True)
def rolling_stats(  # type: ignore[no-untyped-def]
    child_start, mean, ok, status, child_width, end0, n_out, span, min_valid
):
    """Rolling means of ``span`` consecutive child windows (hourly means -> 8-hour means).

    Output ``k`` covers ``[end0 + k*child_width - span*child_width, end0 + k*child_width)``,
    i.e. the ``span`` children ending at ``end_k``; children are sorted by start with no start
    repeated. Its points are the valid children (``ok`` and a finite mean): their mean
    (summed oldest first), min, max and population std of the children's means, the count,
    validity ``n_valid >= min_valid``, and the dominant status of the children present
    (OFFLINE when none is). Each output loops over its own children, so the sums are the
    reference's to the last bit; ``span`` is small (8), so that costs little. What is per
    child (is it a valid point?) is worked out once, and the status counts slide.
    """
    n_valid = np.zeros(n_out, np.int64)
    n_present = np.zeros(n_out, np.int64)
    out_mean = np.full(n_out, np.nan)
    vmin = np.full(n_out, np.nan)
    vmax = np.full(n_out, np.nan)
    std = np.full(n_out, np.nan)
    valid = np.zeros(n_out, np.bool_)
    dominant = np.full(n_out, OFFLINE, np.int8)
    counts = np.zeros(N_STATUS, np.int64)
    n = child_start.shape[0]
    # a child's value, or 0.0 when it is not a valid point, and whether it is one: computed
    # once per child, not once per output it falls in (span times). Adding 0.0 leaves a sum
    # unchanged to the bit, so the sums below are still the reference's, oldest first.
    val = np.zeros(n, np.float64)
    good = np.zeros(n, np.bool_)
    for j in range(n):
        v = mean[j]
        if ok[j] and math.isfinite(v):
            val[j] = v
            good[j] = True
    lo = 0
    hi = 0
    for k in range(n_out):
        we = end0 + k * child_width
        ws = we - span * child_width
        # the status counts slide with the window (integers: exact) instead of being
        # recounted per output
        while lo < n and child_start[lo] < ws:
            if lo < hi:
                counts[status[lo]] -= 1
            lo += 1
        if hi < lo:
            hi = lo
        while hi < n and child_start[hi] < we:
            counts[status[hi]] += 1
            hi += 1
        c = 0
        total = 0.0
        mn = np.inf
        mx = -np.inf
        for j in range(lo, hi):
            if good[j]:
                c += 1
                v = val[j]
                total += v
                mn = min(mn, v)
                mx = max(mx, v)
        n_present[k] = hi - lo
        n_valid[k] = c
        if hi > lo:
            best = 0
            for s in range(1, N_STATUS):
                if counts[s] > counts[best]:
                    best = s
            dominant[k] = best
        if c > 0:
            m = total / c
            ss = 0.0
            for j in range(lo, hi):
                if good[j]:
                    ss += (val[j] - m) * (val[j] - m)
            out_mean[k] = m
            vmin[k] = mn
            vmax[k] = mx
            std[k] = math.sqrt(ss / c)
            valid[k] = c >= min_valid
    return n_present, n_valid, out_mean, vmin, vmax, std, valid, dominant
