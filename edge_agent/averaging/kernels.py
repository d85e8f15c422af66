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
