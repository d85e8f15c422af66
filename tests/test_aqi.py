"""VN_AQI (centre/aqi.py) against figures worked by hand and the guide's own worked example
(Decision 1459/QĐ-TCMT, section 2.3)."""

from __future__ import annotations

import math

import pytest

from centre import aqi
from protocol.model import Record, Status

T = aqi.load()
H = 1_764_561_600  # 2025-12-01 04:00 UTC, an hour start
DAY0 = 1_764_522_000  # 2025-12-01 00:00 +07:00


def one(key: str, c: float) -> int:
    return aqi.round_half_up(aqi.sub_index(T.pollutants[key].hourly, T.index, c))


def test_sub_index_of_each_pollutant_worked_by_hand() -> None:
    # SO2 200: between 125 (50) and 350 (100): 50 + 50/225 * 75 = 66.67
    assert one("SO2", 200.0) == 67
    # CO 20 000: between 10 000 (50) and 30 000 (100): 50 + 50 * 10 000 / 20 000 = 75
    assert one("CO", 20_000.0) == 75
    # NO2 800: between 700 (150) and 1200 (200): 150 + 50 * 100 / 500 = 160
    assert one("NO2", 800.0) == 160
    # O3 1-hour 136.1: 50/160 * 136.1 = 42.53 (the guide: 43)
    assert one("O3", 136.1) == 43
    # PM10 100: between 50 (50) and 150 (100): 75
    assert one("PM10", 100.0) == 75
    # PM2.5 200: between 150 (200) and 250 (300): 250
    assert one("PM2,5", 200.0) == 250
    # at or above the top row ("≥" in Table 2): 500
    assert one("PM2,5", 500.0) == 500 and one("PM2,5", 900.0) == 500
    # exactly on a breakpoint: its index
    assert one("SO2", 350.0) == 100


def test_nowcast_the_guides_example() -> None:
    # PM2.5 09:00 .. 20:00; c1 is 20:00. w* = 16.5 / 26.9 = 0.61 > 1/2 -> w = w*
    day = [26.9, 24.7, 20.5, 23.5, 19.5, 16.5, 19.0, 16.5, 20.3, 22.4, 19.6, 20.6]
    value = aqi.nowcast(list(reversed(day)))
    assert value is not None and round(value, 1) == 20.3
    assert one("PM2,5", value) == 41


def test_nowcast_weight_floor_and_missing_hours() -> None:
    # c1 = 10, c2 = 40, c3..c12 missing: w* = 0.25 -> w = 1/2; (10 + 0.5 * 40) / 1.5 = 20
    assert aqi.nowcast([10.0, 40.0] + [None] * 10) == pytest.approx(20.0)
    # fewer than 2 of c1..c3: no NowCast, however many older hours there are
    assert aqi.nowcast([None, None, 30.0] + [30.0] * 9) is None
    assert aqi.nowcast([30.0, None, None] + [30.0] * 9) is None
    # a steady 100 everywhere: w = 1, NowCast 100
    assert aqi.nowcast([100.0] * 12) == pytest.approx(100.0)


def test_hourly_aqi_the_guides_example_and_the_no2_misprint() -> None:
    pm = [26.9, 24.7, 20.5, 23.5, 19.5, 16.5, 19.0, 16.5, 20.3, 22.4, 19.6, 20.6]
    hourly = {
        "O3": {H: 136.1},
        "NO2": {H: 118.7},
        "PM2,5": {H - i * 3600: v for i, v in enumerate(reversed(pm))},
    }
    idx = aqi.hourly_aqi(T, hourly, H)
    assert idx.sub["O3"] == 43 and idx.sub["PM2,5"] == 41
    # 50 + 50 * 18.7 / 100 = 59.35: 59 by the formula; the guide prints 60
    assert idx.sub["NO2"] == 59
    assert idx.value == 59 and idx.dominant == "NO2"
    assert idx.band is not None and idx.band.vi == "Trung bình"


def test_daily_aqi_the_guides_example() -> None:
    # the guide's inputs: O3 max 8 h 89.3, max 1 h 114.6; NO2 max 1 h 130.8; PM2.5 24 h 55.7.
    # Built as hourly means: O3 114.6 once then 89.3 flat (8-hour max 89.3 only if the 114.6
    # hour is alone in a run of lower values: put it where every 8 h window is <= 89.3+).
    hours = [DAY0 + i * 3600 for i in range(24)]
    o3 = {h: 86.0 for h in hours}
    o3[hours[12]] = 114.6  # one 8-hour window holding it: (7 * 86.0 + 114.6) / 8 = 89.575
    hourly = {"O3": o3, "NO2": {h: 100.0 for h in hours} | {hours[5]: 130.8},
              "PM2,5": {h: 55.7 for h in hours}}
    idx = aqi.daily_aqi(T, hourly, DAY0)
    # O3: 8 h max 89.575 -> 50 * 0.89575 = 44.79 -> 45; 1 h max 114.6 -> 35.8 -> 36
    assert idx.inputs["O3_8h"] == pytest.approx(89.575)
    assert idx.sub["O3"] == 45
    assert idx.sub["NO2"] == 65  # 50 + 50 * 30.8 / 100 = 65.4
    assert idx.sub["PM2,5"] == 110  # 100 + 50 / 30 * 5.7 = 109.5 -> 110 (half up)
    assert idx.value == 110 and idx.dominant == "PM2,5"
    assert idx.band is not None and (idx.band.vi, idx.band.rgb) == ("Kém", (255, 126, 0))


def test_daily_pm_needs_18_hours_and_o3_8h_above_400_is_left_out() -> None:
    hours = [DAY0 + i * 3600 for i in range(24)]
    few = {"PM10": {h: 80.0 for h in hours[:17]}}
    assert aqi.daily_aqi(T, few, DAY0).value is None
    enough = {"PM10": {h: 80.0 for h in hours[:18]},
              "O3": {h: 450.0 for h in hours}}
    idx = aqi.daily_aqi(T, enough, DAY0)
    # O3 1 h 450: 200 + 100 * 50 / 400 = 212.5 -> 213; its 8 h 450 > 400 is not used
    assert "O3_8h" not in idx.inputs and idx.sub["O3"] == 213
    assert idx.value == 213 and idx.band is not None and idx.band.en == "Very bad"


def test_no_pm_no_index() -> None:
    idx = aqi.hourly_aqi(T, {"SO2": {H: 200.0}}, H)
    assert idx.value is None and "PM10 or PM2,5" in idx.why
    assert idx.sub == {"SO2": 67}


def test_bands_at_their_edges() -> None:
    assert [T.band(v).vi for v in (0, 50, 51, 100, 101, 150, 151, 200, 201, 300, 301, 500)] == [
        "Tốt", "Tốt", "Trung bình", "Trung bình", "Kém", "Kém", "Xấu", "Xấu",
        "Rất xấu", "Rất xấu", "Nguy hại", "Nguy hại"]
    assert T.band(75).hex == "#ffff00"


def rec(channel: str, start: int, mean: float, unit: str = "ug/m3", valid: bool = True,
        width: int = 3600) -> Record:
    return Record(channel, start, start + width, mean, mean, mean, 0.0, 60, 60, valid,
                  Status.MEASURING, unit)


def test_hourly_means_from_records() -> None:
    records = [
        rec("CO", H, 20.0, unit="mg/m3"),           # 20 mg/m3 = 20 000 ug/m3
        rec("PM-2-5", H, 30.0),                      # a receiver's spelling
        rec("PM10", H, 70.0, valid=False),           # invalid: not used
        rec("PM10", H, 70.0, width=300),             # a 5-minute record: not an hourly mean
        rec("SO2", H, 10.0, unit="ppb"),             # a unit we cannot convert: not used
        rec("NO2", H, math.nan, valid=False),
    ]
    assert aqi.hourly_means(T, records) == {"CO": {H: 20_000.0}, "PM2,5": {H: 30.0}}
