"""Benchmark of the averaging core: numba kernels vs the best numpy vs the pure-Python reference.

Workload: 30 channels x 7 days at 1 Hz (18 144 000 samples) into 5-minute windows, with NaN,
calibration blocks and offline stretches. Prints samples/s for each implementation and the
ratios against the targets (numba >= 100x pure Python and >= 2x numpy), the first-call latency
with a cold and a warm numba cache (each in a fresh subprocess, the warm one reusing the cache
directory of the cold one; target warm < 0.5 s), and the peak RSS. The pure-Python reference is
timed on a subset (1 channel x 1 day) and its rate scaled; the output says so.

Two more cases hold the new averaging to the same two ratios: the wind vector mean (10 wind
vanes x 7 days at 1 Hz, speed-weighted, into 5-minute windows) and the 8-hour rolling average
(30 channels x 10 years of hourly records, a few hours missing or invalid). Their numpy
baselines are vectorised too (bincount sums of sin/cos; cumulative sums and sliding windows
over a dense hourly grid), not loops, and make the outputs the kernels make (the rolling one:
count, mean, min, max, std and dominant status), each checked against the kernel's.

Run: ``.venv/bin/python bench/averaging.py`` (about two minutes on two cores).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.averaging import (
    COVERAGE_75,
    ROLLING_8H,
    aggregate,
    aggregate_wind,
    configure_cache,
    rolling_arrays,
)
from edge_agent.averaging import reference as ref

CHANNELS = 30
DAYS = 7
WIDTH = 300
BASE = 1_700_006_400.0
N = DAYS * 86_400
MIN_VALID = COVERAGE_75.min_valid(WIDTH)  # 1 Hz, 5 min: 300 expected, 225 needed


def make_data(rng: np.random.Generator) -> tuple[Any, Any, Any]:
    """Shared 1 Hz time base (with +-0.2 s jitter), per-channel values and statuses."""
    t = BASE + np.arange(N, dtype=np.float64) + rng.uniform(-0.2, 0.2, N)
    t.sort()
    values = rng.normal(50.0, 5.0, (CHANNELS, N))
    values[rng.random((CHANNELS, N)) < 0.02] = np.nan
    status = np.zeros((CHANNELS, N), np.int8)
    for c in range(CHANNELS):
        for day in range(DAYS):  # a 10-minute calibration every day at a channel-specific hour
            s = day * 86_400 + (c % 24) * 3600
            status[c, s : s + 600] = 1
        gap = int(rng.integers(0, N - 7200))  # one offline stretch of up to 2 h
        status[c, gap : gap + int(rng.integers(0, 7200))] = 4
    return t, values, status


def numpy_aggregate(
    t: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    s: npt.NDArray[np.int8],
    start0: int,
    n_windows: int,
) -> dict[str, Any]:
    """The best vectorised numpy formulation found: bincount sums, reduceat extremes (t is
    sorted, so each window's valid samples are one contiguous run of the filtered arrays)."""
    k = np.floor((t - start0) / WIDTH).astype(np.int64)
    inside = (k >= 0) & (k < n_windows)
    good = inside & (s == 0) & np.isfinite(v)
    kg = k[good]
    vg = v[good]
    n_valid = np.bincount(kg, minlength=n_windows)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(kg, weights=vg, minlength=n_windows) / n_valid
        dev = vg - mean[kg]
        std = np.sqrt(np.bincount(kg, weights=dev * dev, minlength=n_windows) / n_valid)
    nz = np.flatnonzero(n_valid)
    run_starts = (np.cumsum(n_valid) - n_valid)[nz]
    vmin = np.full(n_windows, np.nan)
    vmax = np.full(n_windows, np.nan)
    if len(nz):
        vmin[nz] = np.minimum.reduceat(vg, run_starts)
        vmax[nz] = np.maximum.reduceat(vg, run_starts)
    counts = np.bincount(k[inside] * 5 + s[inside], minlength=n_windows * 5).reshape(-1, 5)
    dominant = np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), 4)
    valid = n_valid >= MIN_VALID
    return {"n_valid": n_valid, "mean": mean, "min": vmin, "max": vmax, "std": std,
            "valid": valid, "status": dominant}  # fmt: skip


def numpy_wind(
    t: npt.NDArray[np.float64],
    d: npt.NDArray[np.float64],
    w: npt.NDArray[np.float64],
    s: npt.NDArray[np.int8],
    start0: int,
    n_windows: int,
) -> dict[str, Any]:
    """The vectorised numpy wind mean: bincount sums of w*sin, w*cos and w per window."""
    k = np.floor((t - start0) / WIDTH).astype(np.int64)
    good = (k >= 0) & (k < n_windows) & (s == 0) & np.isfinite(d) & (d >= 0) & (d <= 360) \
        & np.isfinite(w) & (w >= 0)
    kg, rad, wg = k[good], np.radians(d[good]), w[good]
    n_valid = np.bincount(kg, minlength=n_windows)
    east = np.bincount(kg, weights=wg * np.sin(rad), minlength=n_windows)
    north = np.bincount(kg, weights=wg * np.cos(rad), minlength=n_windows)
    weight = np.bincount(kg, weights=wg, minlength=n_windows)
    length = np.sqrt(east * east + north * north)
    ok = (weight > 0) & (length > 1e-9 * weight)
    direction = np.where(ok, np.degrees(np.arctan2(east, north)) % 360.0, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"n_valid": n_valid, "direction": direction, "scalar": weight / n_valid,
                "vector": length / n_valid, "valid": ok & (n_valid >= MIN_VALID)}


def numpy_rolling(
    mean: npt.NDArray[np.float64], ok: npt.NDArray[np.bool_], status: npt.NDArray[np.int8],
    span: int, min_valid: int
) -> dict[str, Any]:
    """The vectorised numpy 8-hour mean over a dense hourly grid (a missing hour is NaN):
    counts, sums and sums of squares by cumulative sums, extremes by a sliding-window view,
    the dominant status by cumulative counts per status. The same outputs as the kernel's
    (before, min only, no max, std or status: less work than the kernel was timed doing)."""
    good = ok & np.isfinite(mean)
    v = np.where(good, mean, 0.0)
    pad = np.zeros(span, np.float64)

    def moving(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        c: npt.NDArray[np.float64] = np.cumsum(np.concatenate([pad, x]))
        return c[span:] - c[:-span]

    sums, counts, squares = moving(v), moving(good.astype(np.float64)), moving(v * v)
    padded = np.concatenate([np.full(span - 1, np.nan), np.where(good, mean, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, span)
    per_status = np.stack([moving((status == s).astype(np.float64)) for s in range(5)])
    with np.errstate(invalid="ignore", divide="ignore"):
        m = sums / counts
        return {"n_valid": counts.astype(np.int64), "mean": m,
                "min": np.nanmin(np.where(counts[:, None] > 0, windows, np.inf), axis=1),
                "max": np.nanmax(np.where(counts[:, None] > 0, windows, -np.inf), axis=1),
                "std": np.sqrt(np.maximum(squares / counts - m * m, 0.0)),
                "status": np.argmax(per_status, axis=0).astype(np.int8),
                "valid": counts >= min_valid}


def bench_wind(rng: np.random.Generator) -> tuple[float, float]:
    """Ratios (numba / pure Python, numba / numpy) of the speed-weighted wind mean."""
    vanes, n = 10, N
    t = BASE + np.arange(n, dtype=np.float64) + rng.uniform(-0.2, 0.2, n)
    t.sort()
    prevailing = rng.uniform(0, 360, (vanes, 1))
    d = (prevailing + rng.normal(0, 40, (vanes, n))) % 360.0
    w = np.abs(rng.normal(3, 2, (vanes, n)))
    d[rng.random((vanes, n)) < 0.02] = np.nan
    s = np.zeros((vanes, n), np.int8)
    s[rng.random((vanes, n)) < 0.01] = 4
    start0, n_windows = int(BASE), n // WIDTH + 1

    def run_numba() -> list[Any]:
        return [aggregate_wind(t, d[c], s[c], speed=w[c], width_s=WIDTH, period_s=1.0,
                               start=start0, end=start0 + n_windows * WIDTH)
                for c in range(vanes)]  # fmt: skip

    def run_numpy() -> list[dict[str, Any]]:
        return [numpy_wind(t, d[c], w[c], s[c], start0, n_windows) for c in range(vanes)]

    run_numba()
    t_numba, t_numpy = best_of(3, run_numba), best_of(3, run_numpy)
    ours, theirs = run_numba()[0], run_numpy()[0]
    assert (ours.n_valid == theirs["n_valid"]).all() and (ours.valid == theirs["valid"]).all()
    apart = np.abs((ours.direction - theirs["direction"] + 180.0) % 360.0 - 180.0)
    assert np.nanmax(apart) < 1e-6
    assert np.allclose(ours.vector_speed, theirs["vector"], rtol=1e-9, equal_nan=True)
    sub = 86_400
    tl, dl, wl, sl = t[:sub].tolist(), d[0, :sub].tolist(), w[0, :sub].tolist(), s[0, :sub].tolist()
    t_python = best_of(3, lambda: ref.wind_stats(tl, dl, wl, sl, start0, WIDTH, sub // WIDTH,
                                                 MIN_VALID))  # fmt: skip
    rate_numba, rate_numpy, rate_python = vanes * n / t_numba, vanes * n / t_numpy, sub / t_python
    print(f"wind vector mean, {vanes} vanes x {DAYS} days at 1 Hz ({vanes * n:,} samples, "
          f"speed-weighted): numba {rate_numba:,.0f}/s, numpy {rate_numpy:,.0f}/s, "
          f"pure Python {rate_python:,.0f}/s (1 vane x 1 day)")
    return rate_numba / rate_python, rate_numba / rate_numpy


def bench_rolling(rng: np.random.Generator) -> tuple[float, float]:
    """Ratios of the 8-hour rolling average over hourly records."""
    series, hours = 30, 10 * 8760
    start = BASE + 3600.0 * np.arange(hours)
    mean = rng.normal(1000.0, 300.0, (series, hours))
    ok = rng.random((series, hours)) >= 0.05
    status = np.where(ok, 0, 3).astype(np.int8)
    span, need = ROLLING_8H.span, ROLLING_8H.min_valid

    def run_numba() -> list[Any]:
        return [rolling_arrays(start, mean[c], ok[c], status[c]) for c in range(series)]

    def run_numpy() -> list[dict[str, Any]]:
        return [numpy_rolling(mean[c], ok[c], status[c], span, need) for c in range(series)]

    run_numba()
    t_numba, t_numpy = best_of(3, run_numba), best_of(3, run_numpy)
    ours, theirs = run_numba()[0], run_numpy()[0]
    assert (ours.n_valid == theirs["n_valid"]).all() and (ours.valid == theirs["valid"]).all()
    assert np.allclose(ours.mean, theirs["mean"], rtol=1e-9, equal_nan=True)
    assert np.allclose(ours.min, theirs["min"], equal_nan=True)
    assert np.allclose(ours.max, theirs["max"], equal_nan=True)
    assert np.allclose(ours.std, theirs["std"], rtol=1e-6, atol=1e-6, equal_nan=True)
    assert (ours.status[span - 1:] == theirs["status"][span - 1:]).all()
    sub = 2000
    sl, ml, ol, stl = start[:sub].tolist(), mean[0, :sub].tolist(), ok[0, :sub].tolist(), \
        status[0, :sub].tolist()
    t_python = best_of(3, lambda: ref.rolling_stats(sl, ml, ol, stl, 3600, int(start[0]) + 3600,
                                                    sub, span, need))  # fmt: skip
    total = series * hours
    rate_numba, rate_numpy, rate_python = total / t_numba, total / t_numpy, sub / t_python
    print(f"8-hour rolling, {series} series x 10 years hourly ({total:,} hours): numba "
          f"{rate_numba:,.0f}/s, numpy {rate_numpy:,.0f}/s, pure Python {rate_python:,.0f}/s "
          f"(1 series x {sub} hours)")
    return rate_numba / rate_python, rate_numba / rate_numpy


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


FIRST_CALL = """
import json, resource, sys, time
t0 = time.perf_counter()
from edge_agent.averaging import aggregate, configure_cache
configure_cache(sys.argv[1])
t1 = time.perf_counter()
aggregate([1.0, 2.0], [1.0, 2.0], [0, 0], width_s=300, period_s=1.0)
t2 = time.perf_counter()
import numba  # already imported by the call above; measure what that import cost separately
print(json.dumps({"import": t1 - t0, "first_call": t2 - t1,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def first_call(cache_root: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", FIRST_CALL, str(cache_root)], check=True,
                         capture_output=True, text=True)  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout)
    return result


def numba_import_time() -> float:
    code = "import time; t=time.perf_counter(); import numba; print(time.perf_counter()-t)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-averaging-") as tmp:
        root = Path(tmp)
        # Latency first, before this process competes for the CPU with its big arrays.
        cold = first_call(root / "latency")
        warm = min((first_call(root / "latency") for _ in range(3)), key=lambda r: r["first_call"])
        numba_import = min(numba_import_time() for _ in range(3))

        configure_cache(root / "main")
        rng = np.random.default_rng(20261123)
        t, values, status = make_data(rng)
        total = CHANNELS * N
        start0 = int(BASE)
        n_windows = N // WIDTH + 1

        def run_numba() -> list[Any]:
            return [aggregate(t, values[c], status[c], width_s=WIDTH, period_s=1.0,
                              start=start0, end=start0 + n_windows * WIDTH)
                    for c in range(CHANNELS)]  # fmt: skip

        def run_numpy() -> list[dict[str, Any]]:
            return [numpy_aggregate(t, values[c], status[c], start0, n_windows)
                    for c in range(CHANNELS)]  # fmt: skip

        run_numba()  # compile (cold cache) outside the timing
        t_numba = best_of(3, run_numba)
        t_numpy = best_of(3, run_numpy)

        # Same answers? (a benchmark of a wrong formulation would be worthless)
        ours, theirs = run_numba()[0], run_numpy()[0]
        assert (ours.n_valid == theirs["n_valid"]).all()
        assert (ours.valid == theirs["valid"]).all()
        assert (ours.status == theirs["status"]).all()
        for key in ("mean", "min", "max", "std"):
            assert np.allclose(getattr(ours, key), theirs[key], rtol=1e-9, equal_nan=True), key

        sub = 86_400  # pure Python: 1 channel x 1 day, scaled
        tl, vl, sl = t[:sub].tolist(), values[0, :sub].tolist(), status[0, :sub].tolist()
        t_python = best_of(1, lambda: ref.window_stats(
            tl, vl, vl, vl, sl, None, start0, WIDTH, sub // WIDTH, 1, MIN_VALID, 0))  # fmt: skip

    rate_numba = total / t_numba
    rate_numpy = total / t_numpy
    rate_python = sub / t_python
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"workload: {CHANNELS} channels x {DAYS} days at 1 Hz = {total:,} samples, "
          f"{WIDTH} s windows")  # fmt: skip
    print(f"numba kernels (aggregate, incl. input checks): {t_numba:8.3f} s  "
          f"{rate_numba:14,.0f} samples/s")  # fmt: skip
    print(f"numpy vectorised (bincount/reduceat):          {t_numpy:8.3f} s  "
          f"{rate_numpy:14,.0f} samples/s")  # fmt: skip
    print(f"pure-Python reference (timed on 1 channel x 1 day = {sub:,} samples, scaled): "
          f"{t_python * total / sub:8.1f} s  {rate_python:14,.0f} samples/s")  # fmt: skip
    ok = {True: "met", False: "MISSED"}
    r_py, r_np = rate_numba / rate_python, rate_numba / rate_numpy
    print(f"ratio numba / pure Python: {r_py:8.1f}x  (target >= 100x: {ok[r_py >= 100]})")
    print(f"ratio numba / numpy:       {r_np:8.1f}x  (target >= 2x: {ok[r_np >= 2]})")
    print(f"first call, cold cache (compile + write cache): {cold['first_call']:.3f} s")
    print(f"first call, warm cache (load from cache):       {warm['first_call']:.3f} s  "
          f"(target < 0.5 s: {ok[warm['first_call'] < 0.5]})")  # fmt: skip
    print(f"  of which importing numba alone, fresh process: {numba_import:.3f} s; "
          f"importing edge_agent.averaging: {warm['import']:.3f} s (numba not yet imported)")
    for name, (r_py, r_np) in (("wind vector mean", bench_wind(rng)),
                               ("8-hour rolling", bench_rolling(rng))):
        print(f"{name}: ratio numba / pure Python {r_py:8.1f}x (target >= 100x: "
              f"{ok[r_py >= 100]}), numba / numpy {r_np:6.1f}x (target >= 2x: {ok[r_np >= 2]})")
    print(f"peak RSS: this process {rss_mb:.0f} MB (holds the {total:,}-sample data set), "
          f"first-call subprocess {warm['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
