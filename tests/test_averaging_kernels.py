"""The numba kernels against the plain-Python reference, and the batch API's edge cases."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.averaging import (
    CFR_60_13_H,
    COVERAGE_75,
    DEFAULT_UTC_OFFSET_S,
    InputError,
    UnsortedTimesError,
    ValidityRule,
    WindowError,
    aggregate,
    rollup_arrays,
)
from edge_agent.averaging import reference as ref
from edge_agent.averaging.cache import kernels
from protocol.model import Status

BASE = 1_700_006_400  # 2023-11-15 00:00 UTC: a multiple of 86400
WIDTHS = [60, 300, 900, 3600, 86400]


def close(a: float, b: float) -> bool:
    """Floats within 1e-9 relative; NaN equals NaN (both say 'no valid point')."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def assert_same(stats: Any, want: ref.RefWindows) -> None:
    assert stats.n_samples.tolist() == want.n_samples
    assert stats.n_valid.tolist() == want.n_valid
    assert stats.valid.tolist() == want.valid
    assert stats.status.tolist() == want.dominant
    for name, ours, theirs in [
        ("mean", stats.mean, want.mean),
        ("min", stats.min, want.vmin),
        ("max", stats.max, want.vmax),
        ("std", stats.std, want.std),
    ]:
        for k, (a, b) in enumerate(zip(ours.tolist(), theirs, strict=True)):
            assert close(a, b), f"{name}[{k}]: numba {a!r} != reference {b!r}"


@st.composite
def channel_data(draw: st.DrawFn) -> dict[str, Any]:
    """Sorted times with many on window and quadrant edges, NaN/inf values, mixed statuses."""
    width = draw(st.sampled_from(WIDTHS))
    offset = draw(st.sampled_from([0, DEFAULT_UTC_OFFSET_S, -5 * 3600]))
    rule = draw(
        st.sampled_from([COVERAGE_75, CFR_60_13_H, ValidityRule("half_in_thirds", 0.5, 3, 2)])
    )
    n_windows = draw(st.integers(1, 4))
    step = width // 12  # edges of windows, quadrants and thirds all fall on this grid
    on_edge = st.integers(-12, 12 * n_windows + 12).map(lambda j: float(j * step))
    anywhere = st.floats(-width, width * (n_windows + 1), allow_nan=False)
    offsets = draw(st.lists(st.one_of(on_edge, anywhere), max_size=60))
    t = sorted(BASE + x for x in offsets)
    n = len(t)
    value = draw(
        st.lists(
            st.one_of(
                st.floats(-1e6, 1e6, allow_nan=False),
                st.sampled_from([math.nan, math.inf, -math.inf, 0.0]),
            ),
            min_size=n,
            max_size=n,
        )
    )
    status = draw(
        st.lists(
            st.sampled_from([0, 0, 0, 0, 1, 2, 3, 4]),
            min_size=n,
            max_size=n,
        )
    )
    n_exp = draw(st.integers(1, 16))
    return {
        "t": t, "value": value, "status": status, "width": width, "offset": offset,
        "rule": rule, "period": width / n_exp, "n_exp": n_exp,
        "start": BASE + draw(st.integers(-1, 1)) * width, "end": BASE + n_windows * width,
    }  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(channel_data())
def test_numba_kernel_matches_reference(d: dict[str, Any]) -> None:
    stats = aggregate(
        np.array(d["t"]), np.array(d["value"]), np.array(d["status"], np.int8),
        width_s=d["width"], period_s=d["period"], utc_offset_s=d["offset"], rule=d["rule"],
        start=d["start"], end=d["end"], channel="SO2",
    )  # fmt: skip
    assert stats.n_expected == d["n_exp"]
    assert (stats.start0 + d["offset"]) % d["width"] == 0
    assert stats.start0 <= d["start"] < stats.start0 + d["width"]
    want = ref.window_stats(
        d["t"], d["value"], d["value"], d["value"], d["status"], None, stats.start0,
        d["width"], len(stats), d["rule"].parts, d["rule"].min_valid(d["n_exp"]),
        d["rule"].min_per_part,
    )  # fmt: skip
    assert_same(stats, want)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-3, 30), st.floats(-100, 100), st.booleans(), st.integers(0, 4)),
        max_size=30,
        unique_by=lambda c: c[0],
    ),
    st.sampled_from([COVERAGE_75, CFR_60_13_H]),
)
def test_rollup_kernel_matches_reference(
    children: list[tuple[int, float, bool, int]], rule: ValidityRule
) -> None:
    children.sort()
    start = [float(BASE + 300 * c[0]) for c in children]
    mean = [c[1] for c in children]
    lo = [c[1] - 1.0 for c in children]
    hi = [c[1] + 2.0 for c in children]
    ok = [c[2] for c in children]
    status = [c[3] for c in children]
    stats = rollup_arrays(
        start, 300, mean, lo, hi, ok, status, width_s=3600, rule=rule,
        start=BASE, end=BASE + 7200, channel="NOx",
    )  # fmt: skip
    assert stats.n_expected == 12
    want = ref.window_stats(
        start, mean, lo, hi, status, ok, stats.start0, 3600, len(stats), rule.parts,
        rule.min_valid(12), rule.min_per_part,
    )  # fmt: skip
    assert_same(stats, want)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1e6), max_size=40), st.lists(st.integers(-2, 6), max_size=40))
def test_check_inputs_matches_reference(raw: list[float], codes: list[int]) -> None:
    n = min(len(raw), len(codes))
    t = np.array(raw[:n], dtype=np.float64)
    s = np.array(codes[:n], dtype=np.int8)
    err, index = kernels().check_inputs(t, s)
    assert (int(err), int(index)) == ref.check_inputs(t.tolist(), s.tolist())


def test_large_windows_match_reference() -> None:
    # 4 Hz for 3 hours into hourly windows: 14 400 samples a window, more than the kernel's
    # initial scratch buffer, so its growth path is exercised too.
    rng = np.random.default_rng(7)
    t = BASE + np.sort(rng.uniform(0, 3 * 3600, 43_200))
    value = rng.normal(1e3, 1.0, len(t))
    value[rng.random(len(t)) < 0.05] = np.nan
    status = rng.choice(np.array([0, 0, 0, 1, 2], np.int8), len(t))
    stats = aggregate(t, value, status, width_s=3600, period_s=0.25, channel="PM")
    want = ref.window_stats(
        t.tolist(), value.tolist(), value.tolist(), value.tolist(), status.tolist(), None,
        stats.start0, 3600, len(stats), 1, COVERAGE_75.min_valid(14_400), 0,
    )  # fmt: skip
    assert_same(stats, want)
    assert stats.n_samples.min() > 4096


def _one(t: list[float], value: list[float], status: list[int], **kw: Any) -> Any:
    kw.setdefault("width_s", 300)
    kw.setdefault("period_s", 1.0)
    return aggregate(np.array(t, np.float64), np.array(value, np.float64),
                     np.array(status, np.int64), channel="TSS", **kw)  # fmt: skip


def test_sample_exactly_on_an_edge_opens_the_later_window() -> None:
    stats = _one([BASE + 299.0, BASE + 300.0], [1.0, 2.0], [0, 0])
    assert stats.start.tolist() == [BASE, BASE + 300]
    assert stats.n_valid.tolist() == [1, 1]
    assert stats.mean.tolist() == [1.0, 2.0]


def test_empty_window_inside_the_span_is_offline_and_invalid() -> None:
    stats = _one([BASE + 1.0, BASE + 601.0], [1.0, 2.0], [0, 0])
    assert stats.n_samples.tolist() == [1, 0, 1]
    assert stats.status[1] == Status.OFFLINE
    assert not stats.valid[1]
    assert math.isnan(stats.mean[1]) and math.isnan(stats.std[1])


def test_one_sample_has_zero_std_and_is_its_own_extremes() -> None:
    stats = _one([BASE + 5.0], [7.5], [0], period_s=300.0)
    assert (stats.mean[0], stats.min[0], stats.max[0], stats.std[0]) == (7.5, 7.5, 7.5, 0.0)
    assert stats.valid[0] and stats.n_expected == 1


def test_nan_and_non_measuring_samples_do_not_count() -> None:
    # 4 samples: one NaN while MEASURING, one CALIBRATING, two good (2 and 4) -> mean 3, std 1
    stats = _one([BASE, BASE + 1, BASE + 2, BASE + 3], [math.nan, 100.0, 2.0, 4.0],
                 [0, int(Status.CALIBRATING), 0, 0], period_s=75.0)  # fmt: skip
    assert stats.n_samples[0] == 4 and stats.n_valid[0] == 2
    assert (stats.mean[0], stats.std[0], stats.min[0], stats.max[0]) == (3.0, 1.0, 2.0, 4.0)
    assert not stats.valid[0]  # 2 of 4 expected < 75 %
    assert stats.status[0] == Status.MEASURING  # 3 of 4 samples said MEASURING


def test_dominant_status_ties_go_to_the_lower_code() -> None:
    stats = _one([BASE, BASE + 1], [1.0, 1.0], [int(Status.MAINTENANCE), int(Status.FAULT)])
    assert stats.status[0] == Status.FAULT


def test_daily_windows_align_to_local_midnight_not_utc() -> None:
    # UTC+7: local midnight is 17:00 UTC. 16:59:59 UTC and 17:00:00 UTC on the same UTC day
    # are in different local days; 23:00 UTC and 01:00 UTC the next UTC day are in the same one.
    t = [BASE + 61199.0, BASE + 61200.0, BASE + 82800.0, BASE + 86400.0 + 3600.0]
    stats = _one(t, [1.0, 2.0, 3.0, 4.0], [0, 0, 0, 0], width_s=86400, period_s=3600.0,
                 utc_offset_s=DEFAULT_UTC_OFFSET_S)  # fmt: skip
    assert stats.start.tolist() == [BASE - 25200, BASE + 61200]
    assert stats.n_valid.tolist() == [1, 3]
    assert stats.mean.tolist() == [1.0, 3.0]
    utc = _one(t, [1.0, 2.0, 3.0, 4.0], [0, 0, 0, 0], width_s=86400, period_s=3600.0)
    assert utc.start.tolist() == [BASE, BASE + 86400]
    assert utc.n_valid.tolist() == [3, 1]


def test_unsorted_times_are_an_error_naming_the_channel_and_index() -> None:
    with pytest.raises(UnsortedTimesError, match=r"'TSS'.*t\[2\]=.*t\[1\]"):
        _one([BASE, BASE + 2, BASE + 1], [1.0, 1.0, 1.0], [0, 0, 0])
    with pytest.raises(UnsortedTimesError, match=r"t\[1\]=nan"):
        _one([BASE, math.nan], [1.0, 1.0], [0, 0])


@pytest.mark.parametrize("width", [0, -300, 7, 300.0])
def test_bad_window_length_is_an_error(width: Any) -> None:
    with pytest.raises(WindowError, match="width_s"):
        _one([BASE], [1.0], [0], width_s=width)


@pytest.mark.parametrize("period", [0.0, -1.0, math.nan, 301.0])
def test_bad_period_is_an_error(period: float) -> None:
    with pytest.raises(WindowError, match="period_s"):
        _one([BASE], [1.0], [0], period_s=period)


def test_bad_status_and_mismatched_lengths_are_errors() -> None:
    with pytest.raises(InputError, match=r"status\[1\]=7"):
        _one([BASE, BASE + 1], [1.0, 1.0], [0, 7])
    with pytest.raises(InputError, match=r"status\[0\]=-1"):
        aggregate([BASE], [1.0], np.array([-1], np.int8), width_s=300, period_s=1.0)
    with pytest.raises(InputError, match="differ in length"):
        _one([BASE, BASE + 1], [1.0], [0, 0])


def test_no_samples_and_no_span_gives_no_windows() -> None:
    stats = _one([], [], [])
    assert len(stats) == 0
    stats = _one([], [], [], start=BASE, end=BASE + 600)
    assert stats.n_valid.tolist() == [0, 0]
    assert stats.status.tolist() == [Status.OFFLINE, Status.OFFLINE]
