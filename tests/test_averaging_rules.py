"""Hand-worked examples of the validity rules and the hourly/daily roll-ups."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_agent.averaging import (
    CFR_60_13_H,
    COVERAGE_75,
    DEFAULT_UTC_OFFSET_S,
    InputError,
    ValidityRule,
    WindowError,
    aggregate,
    rollup,
    to_records,
)
from protocol.model import Record, RecordFlag, Status

BASE = 1_700_006_400  # 2023-11-15 00:00 UTC, a multiple of 86400


def five_minutes(n_good: int, n_calibrating: int = 0) -> tuple[bool, int, int]:
    """One 5-min window at 1 Hz: the first n_good samples MEASURING, the next n_calibrating
    CALIBRATING, the rest OFFLINE (NaN)."""
    t = BASE + np.arange(300, dtype=np.float64)
    value = np.where(np.arange(300) < n_good + n_calibrating, 10.0, np.nan)
    status = np.full(300, int(Status.OFFLINE), np.int8)
    status[:n_good] = Status.MEASURING
    status[n_good : n_good + n_calibrating] = Status.CALIBRATING
    stats = aggregate(t, value, status, width_s=300, period_s=1.0, channel="SO2")
    return bool(stats.valid[0]), int(stats.n_valid[0]), int(stats.n_expected)


def test_75_percent_rule_at_1_hz() -> None:
    # 5 min at 1 Hz: n_expected = 300 / 1 = 300; 75 % of 300 = 225 exactly.
    assert five_minutes(225) == (True, 225, 300)  # 225 >= 225
    assert five_minutes(224) == (False, 224, 300)  # 224 < 225
    # 300 samples arrive, but 76 while calibrating: 224 measuring -> invalid; 75 -> 225 -> valid.
    assert five_minutes(224, 76)[0] is False
    assert five_minutes(225, 75)[0] is True


def test_75_percent_rule_rounds_up_to_whole_samples() -> None:
    # 5 min at one sample per 10 s: n_expected = 300 / 10 = 30; 0.75 * 30 = 22.5, and half a
    # sample cannot be measured, so 23 are needed: 22 -> invalid, 23 -> valid.
    assert COVERAGE_75.min_valid(30) == 23
    t = BASE + 10.0 * np.arange(30)
    for n_good, want in [(22, False), (23, True)]:
        status = np.where(np.arange(30) < n_good, 0, int(Status.FAULT)).astype(np.int8)
        stats = aggregate(t, np.ones(30), status, width_s=300, period_s=10.0)
        assert (bool(stats.valid[0]), int(stats.n_expected)) == (want, 30)


def hour_with_points_at(minutes: list[float]) -> bool:
    """Is an hour valid under 40 CFR 60.13(h) with one valid point at each of ``minutes``?"""
    t = BASE + 60.0 * np.array(minutes)
    stats = aggregate(t, np.full(len(t), 5.0), np.zeros(len(t), np.int8), width_s=3600,
                      period_s=1.0, rule=CFR_60_13_H, start=BASE, end=BASE + 3600)  # fmt: skip
    return bool(stats.valid[0])


def test_quadrant_rule_needs_a_valid_point_in_each_15_minute_quadrant() -> None:
    # Quadrants of the hour: [0,15), [15,30), [30,45), [45,60) minutes.
    assert hour_with_points_at([1, 16, 31, 46])  # 4 points of 3600: 0.1 %, still valid
    assert hour_with_points_at([0, 15, 30, 45])  # points on the edges open the later quadrant
    assert not hour_with_points_at([1, 2, 31, 46])  # nothing in [15, 30)
    assert not hour_with_points_at([0, 14.99, 30, 45])  # 14.99 is still the first quadrant
    assert not hour_with_points_at([10, 20, 40])  # three quadrants only
    # Many valid points but all in the first 45 minutes (75 % coverage!) -> invalid under CFR.
    assert not hour_with_points_at([m / 60 for m in range(45 * 60)])
    assert COVERAGE_75.min_valid(3600) == 2700  # ... while the 75 % rule accepts 2700 of them
    assert not hour_with_points_at([])


def test_quadrant_rule_ignores_invalid_points() -> None:
    # A CALIBRATING point in the last quadrant does not count: the hour is invalid.
    t = BASE + 60.0 * np.array([1, 16, 31, 46])
    status = np.array([0, 0, 0, int(Status.CALIBRATING)], np.int8)
    stats = aggregate(t, np.ones(4), status, width_s=3600, period_s=1.0, rule=CFR_60_13_H)
    assert not stats.valid[0]


def test_rule_parts_must_tile_the_window() -> None:
    with pytest.raises(WindowError, match="cannot be cut into 7 parts"):
        aggregate([BASE], [1.0], [0], width_s=300, period_s=1.0,
                  rule=ValidityRule("sevenths", 0.0, 7, 1))  # fmt: skip
    with pytest.raises(WindowError, match="min_fraction"):
        ValidityRule("bad", 1.5)


def rec(channel: str, start: int, width: int, mean: float, valid: bool,
        flags: RecordFlag = RecordFlag.NONE) -> Record:  # fmt: skip
    return Record(channel, start, start + width, mean, mean - 1.0, mean + 1.0, 0.5,
                  300 if valid else 10, 300, valid, Status.MEASURING if valid else Status.FAULT,
                  "ppm", flags)  # fmt: skip


def test_hourly_rollup_75_percent_of_twelve_five_minute_records() -> None:
    # 12 children per hour; 75 % of 12 = 9 exactly.
    # Hour 1: children 0..8 valid with means 1..9, children 9..11 invalid (mean 1000, ignored).
    #   9 >= 9 -> valid; mean = (1+2+...+9)/9 = 45/9 = 5; min = 1-1 = 0; max = 9+1 = 10;
    #   std of the means 1..9 = sqrt(sum((k-5)^2)/9) = sqrt(60/9) = 2.5819888974716116.
    # Hour 2: only 8 valid children (means 1..8) -> 8 < 9 -> invalid; mean (1+..+8)/8 = 4.5.
    recs = [rec("SO2", BASE + 300 * k, 300, k + 1.0, k < 9) for k in range(9)]
    recs += [rec("SO2", BASE + 300 * k, 300, 1000.0, False) for k in range(9, 12)]
    recs += [rec("SO2", BASE + 3600 + 300 * k, 300, k + 1.0, True) for k in range(8)]
    h1, h2 = rollup(recs, width_s=3600)
    assert (h1.start, h1.end, h1.n_valid, h1.n_expected, h1.valid) == (BASE, BASE + 3600, 9, 12,
                                                                       True)  # fmt: skip
    assert (h1.mean, h1.min, h1.max) == (5.0, 0.0, 10.0)
    assert math.isclose(h1.std, math.sqrt(60 / 9), rel_tol=1e-12)
    assert h1.status == Status.MEASURING  # 9 MEASURING children against 3 FAULT
    assert (h2.n_valid, h2.valid, h2.mean) == (8, False, 4.5)
    assert h2.unit == "ppm" and h2.channel == "SO2"


def test_daily_rollup_from_hourly_at_local_midnight() -> None:
    # Local day (UTC+7) starting BASE - 7 h: 24 hourly children, 75 % -> 18 needed.
    day0 = BASE - DEFAULT_UTC_OFFSET_S
    hours = [rec("NOx", day0 + 3600 * h, 3600, 2.0, h < 18) for h in range(24)]
    (day,) = rollup(hours, width_s=86400, utc_offset_s=DEFAULT_UTC_OFFSET_S)
    assert (day.start, day.end, day.n_valid, day.n_expected, day.valid) == (
        day0, day0 + 86400, 18, 24, True)  # fmt: skip
    hours[0] = rec("NOx", day0, 3600, 2.0, False)
    (day,) = rollup(hours, width_s=86400, utc_offset_s=DEFAULT_UTC_OFFSET_S)
    assert (day.n_valid, day.valid) == (17, False)
    # The same hours aligned to UTC midnight straddle two days, neither of them valid: local
    # hours 0..6 fall on the earlier UTC day (valid ones: 1..6 -> 6), 7..23 on the later one
    # (valid ones: 7..17 -> 11).
    utc_days = rollup(hours, width_s=86400)
    assert [d.start for d in utc_days] == [BASE - 86400, BASE]
    assert [d.n_valid for d in utc_days] == [6, 11] and not any(d.valid for d in utc_days)


def test_hourly_rollup_under_the_quadrant_rule() -> None:
    # Valid 5-min children at :00, :20, :30, :55 -> one in each quadrant -> valid, though only
    # 4 of 12 children (33 %) are valid. Drop the :20 one -> the second quadrant is empty.
    minutes = [0, 20, 30, 55]
    recs = [rec("CO", BASE + 60 * m, 300, 1.0, True) for m in minutes]
    (hour,) = rollup(recs, width_s=3600, rule=CFR_60_13_H)
    assert (hour.valid, hour.n_valid, hour.n_expected) == (True, 4, 12)
    (hour,) = rollup([r for r in recs if r.start != BASE + 1200], width_s=3600, rule=CFR_60_13_H)
    assert not hour.valid
    (hour,) = rollup(recs, width_s=3600)  # ... and the default 75 % rule says invalid
    assert not hour.valid


def test_rollup_carries_children_flags_but_not_partial() -> None:
    flags = RecordFlag.MG_PER_NM3 | RecordFlag.O2_NORMALISED
    recs = [rec("SO2", BASE + 300 * k, 300, 1.0, True, flags) for k in range(12)]
    recs[3] = rec("SO2", BASE + 900, 300, 1.0, True, flags | RecordFlag.LATE_DROPPED)
    recs[11] = rec("SO2", BASE + 3300, 300, 1.0, True, flags | RecordFlag.PARTIAL)
    (hour,) = rollup(recs, width_s=3600)
    assert hour.flags == flags | RecordFlag.LATE_DROPPED


def test_rollup_refuses_mixed_children() -> None:
    with pytest.raises(InputError, match="does not fit"):
        rollup([rec("SO2", BASE, 300, 1.0, True), rec("SO2", BASE + 300, 600, 1.0, True)],
               width_s=3600)  # fmt: skip
    with pytest.raises(InputError, match="two records start"):
        rollup([rec("SO2", BASE, 300, 1.0, True), rec("SO2", BASE, 300, 2.0, True)], width_s=3600)
    with pytest.raises(InputError, match="do not tile"):
        rollup([rec("SO2", BASE, 3600, 1.0, True)], width_s=3600)


def test_records_from_stats() -> None:
    stats = aggregate([BASE + 1.0], [4.0], [0], width_s=60, period_s=60.0)
    (r,) = to_records(stats, "pH", "pH", RecordFlag.CLOCK_UNSYNCED)
    assert r == Record("pH", BASE, BASE + 60, 4.0, 4.0, 4.0, 0.0, 1, 1, True, Status.MEASURING,
                       "pH", RecordFlag.CLOCK_UNSYNCED)  # fmt: skip
