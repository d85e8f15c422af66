"""Wind direction as a vector: the numba kernel against the plain-Python reference, and
hand-worked examples with their arithmetic written out."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.averaging import reference as ref
from edge_agent.averaging.errors import InputError, WindowError
from edge_agent.averaging.rules import CFR_60_13_H, COVERAGE_75
from edge_agent.averaging.wind import CALM, CANCELLED, NO_DATA, OK, aggregate_wind

BASE = 1_700_006_400  # 2023-11-15 00:00 UTC


def same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def angle_apart(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


@st.composite
def wind_data(draw: st.DrawFn) -> dict[str, Any]:
    """Sorted times on and off 60 s window edges; directions across north, exact opposites,
    out-of-range codes and NaN; speeds with zeros (calm) and NaN; mixed statuses."""
    n_windows = draw(st.integers(1, 4))
    offsets = draw(st.lists(st.one_of(st.integers(-2, 4 * n_windows + 2).map(lambda j: j * 15.0),
                                      st.floats(-60, 60.0 * (n_windows + 1), allow_nan=False)),
                            max_size=40))
    t = sorted(BASE + x for x in offsets)
    n = len(t)
    direction = draw(st.lists(st.one_of(
        st.floats(0, 360), st.sampled_from([0.0, 90.0, 180.0, 270.0, 350.0, 10.0, 360.0]),
        st.sampled_from([math.nan, -1.0, 999.0])), min_size=n, max_size=n))
    speed = draw(st.lists(st.one_of(st.floats(0, 60), st.sampled_from([0.0, 0.0, 2.0, math.nan])),
                          min_size=n, max_size=n))
    status = draw(st.lists(st.sampled_from([0, 0, 0, 0, 1, 2, 4]), min_size=n, max_size=n))
    return {"t": t, "direction": direction, "speed": speed, "status": status,
            "n_windows": n_windows, "weighted": draw(st.booleans()),
            "period": draw(st.sampled_from([1.0, 10.0, 30.0]))}


@settings(max_examples=300, deadline=None)
@given(wind_data())
def test_wind_kernel_matches_reference(d: dict[str, Any]) -> None:
    speed = d["speed"] if d["weighted"] else None
    stats = aggregate_wind(np.array(d["t"]), np.array(d["direction"]), np.array(d["status"]),
                           speed=None if speed is None else np.array(speed), width_s=60,
                           period_s=d["period"], start=BASE, end=BASE + 60 * d["n_windows"],
                           channel="WD")
    want = ref.wind_stats(d["t"], d["direction"], speed, d["status"], stats.start0, 60,
                          len(stats), COVERAGE_75.min_valid(stats.n_expected))
    assert stats.n_samples.tolist() == want.n_samples
    assert stats.n_valid.tolist() == want.n_valid
    assert stats.valid.tolist() == want.valid
    assert stats.status.tolist() == want.dominant
    assert stats.reason.tolist() == want.reason
    for name in ("direction", "ratio", "scalar_speed", "vector_speed"):
        for k, (a, b) in enumerate(zip(getattr(stats, name).tolist(), getattr(want, name),
                                       strict=True)):
            assert same(a, b), f"{name}[{k}]: numba {a!r} != reference {b!r}"
    for k, a in enumerate(stats.direction.tolist()):
        assert math.isnan(a) or 0.0 <= a < 360.0, f"direction[{k}]={a!r} outside [0, 360)"
        assert math.isnan(a) == (stats.reason[k] != OK)


def _wind(direction: list[float], speed: list[float] | None = None, **kw: Any) -> Any:
    n = len(direction)
    return aggregate_wind([BASE + i for i in range(n)], direction, [0] * n, speed=speed,
                          width_s=300, period_s=300 / n, channel="WD", **kw)


def test_350_and_10_degrees_average_to_north_not_south() -> None:
    # east  = sin 350 + sin 10 = -0.173648 + 0.173648 = 0
    # north = cos 350 + cos 10 =  0.984808 + 0.984808 = 1.969616
    # atan2(0, 1.969616) = 0 deg (an arithmetic mean would say (350 + 10) / 2 = 180: south)
    stats = _wind([350.0, 10.0])
    assert angle_apart(float(stats.direction[0]), 0.0) < 1e-9
    assert 0.0 <= stats.direction[0] < 360.0
    assert stats.reason[0] == OK and stats.valid[0]
    # |(0, 1.969616)| / 2 = cos 10 = 0.984808: a steady north wind, slightly spread
    assert stats.ratio[0] == pytest.approx(math.cos(math.radians(10.0)))


def test_90_and_180_at_2_m_s_is_135_degrees_and_1_414_m_s() -> None:
    # east  = 2 sin 90 + 2 sin 180 = 2 + 0 = 2
    # north = 2 cos 90 + 2 cos 180 = 0 - 2 = -2
    # direction = atan2(2, -2) = 135 deg (south-east)
    # scalar speed = (2 + 2) / 2 = 2 m/s; vector speed = |(2, -2)| / 2 = sqrt(8) / 2 = 1.414 m/s
    stats = _wind([90.0, 180.0], speed=[2.0, 2.0])
    assert stats.direction[0] == pytest.approx(135.0, abs=1e-9)
    assert stats.scalar_speed[0] == pytest.approx(2.0)
    assert stats.vector_speed[0] == pytest.approx(math.sqrt(8) / 2)
    assert stats.vector_speed[0] == pytest.approx(1.414, abs=5e-4)


def test_weighting_by_speed_moves_the_direction_toward_the_strong_wind() -> None:
    # unit vectors: 0 deg and 90 deg -> 45 deg; speeds 1 and 3: east 3, north 1 ->
    # atan2(3, 1) = 71.565 deg
    assert _wind([0.0, 90.0]).direction[0] == pytest.approx(45.0)
    assert _wind([0.0, 90.0], speed=[1.0, 3.0]).direction[0] == pytest.approx(
        math.degrees(math.atan2(3.0, 1.0)))


def test_calm_and_cancelling_winds_have_no_direction_and_say_why() -> None:
    calm = _wind([120.0, 300.0], speed=[0.0, 0.0])
    assert math.isnan(calm.direction[0]) and calm.reason[0] == CALM and not calm.valid[0]
    assert calm.scalar_speed[0] == 0.0 and calm.vector_speed[0] == 0.0
    assert "calm" in calm.why(0)
    opposite = _wind([90.0, 270.0])  # east 1 - 1 = 0, north 0: no prevailing direction
    assert math.isnan(opposite.direction[0]) and opposite.reason[0] == CANCELLED
    assert not opposite.valid[0] and "cancel" in opposite.why(0)
    nothing = aggregate_wind([BASE], [90.0], [4], width_s=300, period_s=60, channel="WD")
    assert math.isnan(nothing.direction[0]) and nothing.reason[0] == NO_DATA


def test_error_codes_outside_0_360_and_non_measuring_samples_do_not_count() -> None:
    stats = aggregate_wind([BASE, BASE + 1, BASE + 2, BASE + 3], [999.0, -1.0, 200.0, 360.0],
                           [0, 0, 1, 0], width_s=300, period_s=300, channel="WD")
    assert stats.n_valid[0] == 1 and stats.direction[0] == 0.0  # only the 360 (north)


def test_a_pair_counts_only_when_the_speed_reading_is_measuring_too() -> None:
    stats = aggregate_wind([BASE, BASE + 1], [90.0, 0.0], [0, 0], speed=[1.0, 1.0],
                           speed_status=[0, 4], width_s=300, period_s=150, channel="WD")
    assert stats.n_valid[0] == 1 and stats.direction[0] == pytest.approx(90.0)
    assert stats.status[0] == 0  # tie 1:1 goes to the lower code, as in every window


def test_coverage_counts_like_any_window() -> None:
    # 10 s polls: 30 expected in 5 minutes, 23 needed for 75 %; 22 valid is not enough
    t = [BASE + 10 * i for i in range(30)]
    status = [0] * 22 + [4] * 8
    stats = aggregate_wind(t, [45.0] * 30, status, width_s=300, period_s=10, channel="WD")
    assert stats.n_valid[0] == 22 and not stats.valid[0] and stats.reason[0] == OK


def test_bad_input_is_named() -> None:
    with pytest.raises(WindowError, match="cfr_60_13_h"):
        aggregate_wind([BASE], [1.0], [0], width_s=3600, period_s=60, rule=CFR_60_13_H)
    with pytest.raises(InputError, match="speed has 1 values for 2"):
        aggregate_wind([BASE, BASE + 1], [1.0, 2.0], [0, 0], speed=[1.0], width_s=300,
                       period_s=60, channel="WD")
    with pytest.raises(InputError, match=r"status\[0\]=7"):
        aggregate_wind([BASE], [1.0], [7], width_s=300, period_s=60, channel="WD")
