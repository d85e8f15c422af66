"""8-hour rolling averages: the numba kernel against the plain-Python reference, and a day of
hourly CO worked by hand."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.averaging import reference as ref
from edge_agent.averaging.errors import InputError
from edge_agent.averaging.rolling import ROLLING_8H, Rolling, rolling_arrays, rolling_channel
from protocol.model import Record, RecordFlag, Status

H = 3600
LOCAL_MIDNIGHT = 1_700_006_400 - 7 * H  # 2023-11-15 00:00 in UTC+7
OFFSET = 7 * H


def same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b  # same summation order: the kernel and the reference agree to the bit


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-10, 40), st.one_of(st.floats(-1e6, 1e6),
                                                       st.just(math.nan)),
                       st.booleans(), st.sampled_from([0, 0, 1, 2, 3, 4])),
             max_size=40, unique_by=lambda c: c[0]),
    st.sampled_from([ROLLING_8H, Rolling("3h", span=3, min_valid=2),
                     Rolling("24h", span=24, min_valid=18)]),
    st.integers(-12, 12), st.integers(0, 50),
)
def test_rolling_kernel_matches_reference(children: list[tuple[int, float, bool, int]],
                                          rolling: Rolling, first: int, n: int) -> None:
    children.sort()
    start = [float(LOCAL_MIDNIGHT + H * c[0]) for c in children]
    mean, ok, status = [c[1] for c in children], [c[2] for c in children], [c[3] for c in children]
    first_end = LOCAL_MIDNIGHT + H * first
    stats = rolling_arrays(start, mean, ok, status, rolling=rolling, utc_offset_s=OFFSET,
                           first_end=first_end, last_end=first_end + H * (n - 1), channel="O3")
    want = ref.rolling_stats(start, mean, ok, status, H, first_end, n, rolling.span,
                             rolling.min_valid)
    assert len(stats) == n
    assert stats.n_present.tolist() == want.n_samples
    assert stats.n_valid.tolist() == want.n_valid
    assert stats.valid.tolist() == want.valid
    assert stats.status.tolist() == want.dominant
    for name, theirs in (("mean", want.mean), ("min", want.vmin), ("max", want.vmax),
                         ("std", want.std)):
        for k, (a, b) in enumerate(zip(getattr(stats, name).tolist(), theirs, strict=True)):
            assert same(a, b), f"{name}[{k}]: numba {a!r} != reference {b!r}"


def hourly_co_day() -> list[Record]:
    """Hour h (local) of the day: CO = 1000 + 100 h ug/m3; hour 10 was a calibration and
    hour 11 maintenance, so those two records are invalid (their means must not count)."""
    out = []
    for h in range(24):
        bad = {10: Status.CALIBRATING, 11: Status.MAINTENANCE}.get(h)
        out.append(Record("CO", LOCAL_MIDNIGHT + h * H, LOCAL_MIDNIGHT + (h + 1) * H,
                          mean=9999.0 if bad else 1000.0 + 100 * h, min=0.0, max=0.0, std=0.0,
                          n_valid=12 if not bad else 0, n_expected=12, valid=bad is None,
                          status=bad or Status.MEASURING, unit="ug/m3",
                          flags=RecordFlag.PARTIAL if h == 3 else RecordFlag.NONE))
    return out


def test_8_hour_rolling_co_over_a_day_with_two_invalid_hours() -> None:
    recs = rolling_channel("CO", "ug/m3", hourly_co_day(), utc_offset_s=OFFSET)
    # one 8-hour average at the end of every hour of the day: 01:00 .. 24:00
    assert len(recs) == 24
    at = {(r.end - LOCAL_MIDNIGHT) // H: r for r in recs}
    assert sorted(at) == list(range(1, 25))
    for r in recs:
        assert r.start == r.end - 8 * H and r.n_expected == 8
    # ending 05:00: hours 00..04 only (the previous day was not given): 5 of 8 -> invalid;
    # the mean is still (1000 + 1100 + 1200 + 1300 + 1400) / 5 = 1200
    assert (at[5].n_valid, at[5].valid, at[5].mean) == (5, False, 1200.0)
    # ending 06:00: hours 00..05, 6 of 8 -> valid, (1000 + ... + 1500) / 6 = 1250
    assert (at[6].n_valid, at[6].valid, at[6].mean) == (6, True, 1250.0)
    # ending 08:00: hours 00..07, all 8: (1000 + ... + 1700) / 8 = 10800 / 8 = 1350
    assert (at[8].n_valid, at[8].valid, at[8].mean) == (8, True, 1350.0)
    assert (at[8].min, at[8].max) == (1000.0, 1700.0)
    # ending 11:00: hours 03..10, hour 10 invalid: (1300 + ... + 1900) / 7 = 11200 / 7 = 1600
    assert (at[11].n_valid, at[11].valid, at[11].mean) == (7, True, 1600.0)
    # ending 12:00: hours 04..11, 10 and 11 invalid: (1400 + ... + 1900) / 6 = 9900 / 6 = 1650
    assert (at[12].n_valid, at[12].valid, at[12].mean) == (6, True, 1650.0)
    # ending 13:00: hours 05..12 less 10, 11: (1500+1600+1700+1800+1900+2200) / 6 = 10700 / 6
    assert at[13].n_valid == 6 and at[13].mean == pytest.approx(10700 / 6)
    # ending 24:00: hours 16..23: (2600 + ... + 3300) / 8 = 23600 / 8 = 2950, the day's largest
    assert (at[24].n_valid, at[24].mean) == (8, 2950.0)
    assert max(r.mean for r in recs if r.valid) == 2950.0
    # the 9999 of the invalid hours never reaches a mean or a maximum
    assert all(r.max < 9999.0 for r in recs)
    # the hour cut short (PARTIAL, hour 03) does not make the 8-hour records partial
    assert all(r.flags == RecordFlag.NONE for r in recs)
    # hours 10 and 11 present but not measuring: the status of an 8-hour record is still the
    # most common one of its hours (measuring)
    assert at[12].status is Status.MEASURING


def test_three_invalid_hours_in_eight_make_the_average_invalid() -> None:
    day = hourly_co_day()
    day[9] = replace(day[9], valid=False)
    recs = {(r.end - LOCAL_MIDNIGHT) // H: r for r in
            rolling_channel("CO", "ug/m3", day, utc_offset_s=OFFSET)}
    # ending 12:00: hours 04..11 less 09, 10, 11 -> 5 of 8
    assert (recs[12].n_valid, recs[12].valid) == (5, False)
    assert (recs[13].n_valid, recs[13].valid) == (5, False)
    assert (recs[11].n_valid, recs[11].valid) == (6, True)  # 03..10 less 09, 10


def test_a_missing_hour_counts_as_not_valid() -> None:
    day = [r for r in hourly_co_day() if r.start != LOCAL_MIDNIGHT + 20 * H]
    recs = {(r.end - LOCAL_MIDNIGHT) // H: r for r in
            rolling_channel("CO", "ug/m3", day, utc_offset_s=OFFSET)}
    assert recs[24].n_valid == 7 and recs[24].mean == pytest.approx((23600 - 3000) / 7)


def test_bad_children_are_named() -> None:
    with pytest.raises(InputError, match="not aligned to 3600 s"):
        rolling_arrays([LOCAL_MIDNIGHT + 60.0], [1.0], [True], [0], utc_offset_s=OFFSET,
                       channel="CO")
    with pytest.raises(InputError, match="ascending, none repeated"):
        rolling_arrays([LOCAL_MIDNIGHT + H, LOCAL_MIDNIGHT], [1.0, 2.0], [True, True], [0, 0],
                       utc_offset_s=OFFSET, channel="CO")
    with pytest.raises(InputError, match="min_valid=9"):
        Rolling("bad", span=8, min_valid=9)
    five_min: Any = Record("CO", LOCAL_MIDNIGHT, LOCAL_MIDNIGHT + 300, 1.0, 1.0, 1.0, 0.0, 1, 1,
                           True, Status.MEASURING, "ug/m3")
    with pytest.raises(InputError, match="does not fit rolling '8h'"):
        rolling_channel("CO", "ug/m3", [five_min])


def test_no_children_give_no_averages() -> None:
    stats = rolling_arrays(np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros(0, int))
    assert len(stats) == 0
