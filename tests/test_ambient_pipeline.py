"""The ambient air station through the agent's pipeline: wind direction as a vector, the
8-hour rolling CO average, and a restart between rolling records (issue 15 item 2).

Hand-worked figures, each derived in its test, through the real sans-IO pipeline built from
a config the real reader parsed (so the keys, their defaults and the wiring are all in the
path); no mocks. The kernel and its pure-Python reference are compared sample for sample in
test_averaging_wind.py / test_averaging_rolling.py; here the point is what the station sends.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from edge_agent.config.model import StationConfig
from edge_agent.config.reader import ConfigError, parse_config
from edge_agent.core.pipeline import Pipeline
from protocol.model import Record, Sample, Status

UTC7 = 7 * 3600
T0 = 1_789_948_800 - UTC7  # local midnight (Asia/Ho_Chi_Minh)
assert (T0 + UTC7) % 86400 == 0
M, OFF = Status.MEASURING, Status.OFFLINE

BASE = """
[station]
id = "HN-AQ-0001"
[agent]
state_dir = "/nonexistent"
[[bus]]
name = "rs485-1"
port = "/dev/ttyUSB0"
[[device]]
name = "weather"
bus = "rs485-1"
profile = "weather_station"
unit = 7
interval = 10.0
"""


def config(text: str) -> StationConfig:
    return parse_config(tomllib.loads(BASE + text), "<test>")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        config(text)
    return [str(p) for p in err.value.problems]


def wind(cfg: StationConfig, pairs: list[tuple[float, float]]) -> dict[str, Record]:
    """Feed one 60 s window of (direction, speed) polls 10 s apart; its records by symbol."""
    p = Pipeline(cfg, utc_offset_s=UTC7)
    p.clock_state(T0, synced=True)
    for i, (d, s) in enumerate(pairs):
        t = T0 + 10.0 * i
        p.feed("weather", [Sample("WD", t, d, M), Sample("WS", t, s, M)], now=t + 0.1)
    return {r.channel: r for r in p.tick(T0 + 60 + 5.0)}


WIND = """
[device.channels.WS]
[device.channels.WD]
speed = "WS"
[averaging]
windows = [60]
grace_s = 1.0
"""


def test_350_and_10_degrees_average_to_north_not_south() -> None:
    """Three polls at 350 deg and three at 10 deg, 3 m/s each: the east parts cancel
    (-sin 10 + sin 10), the north parts add (6 x cos 10), so the mean is 0 deg; as signed
    deviations from it the extremes are -10 and +10. The arithmetic mean would be 180."""
    recs = wind(config(WIND), [(350.0, 3.0), (10.0, 3.0)] * 3)
    wd, ws = recs["WD"], recs["WS"]
    assert wd.valid and wd.n_valid == 6 and wd.unit == "deg"
    assert min(wd.mean, 360 - wd.mean) < 1e-9
    assert (wd.min, wd.max) == pytest.approx((-10.0, 10.0), abs=1e-9)
    # Yamartino: R = cos 10, eps = sin 10, sigma = 10 deg * (1 + 0.1547 eps^3)
    eps = math.sin(math.radians(10))
    assert wd.std == pytest.approx(10.0 * (1 + 0.1547 * eps**3))
    assert ws.valid and ws.mean == pytest.approx(3.0)  # the speed stays a scalar mean


def test_speed_weighted_direction_follows_the_strong_wind() -> None:
    """From 90 deg at 1 m/s and from 180 deg at 3 m/s (three polls each). Unit vectors: the
    bisector, 135 deg. Weighted by speed: atan2(3 sin 90 + 9 sin 180, 3 cos 90 + 9 cos 180) =
    atan2(3, -9) = 161.565 deg. Without speed = the direction is the unit-vector one."""
    pairs = [(90.0, 1.0), (180.0, 3.0)] * 3
    weighted = wind(config(WIND), pairs)["WD"]
    assert weighted.mean == pytest.approx(math.degrees(math.atan2(3, -9)))
    assert weighted.mean == pytest.approx(161.565, abs=1e-3)
    unit = wind(config(WIND.replace('speed = "WS"', "")), pairs)["WD"]
    assert unit.mean == pytest.approx(135.0)
    assert weighted.valid and unit.valid


def test_calm_and_cancelled_winds_have_no_direction_not_a_random_angle() -> None:
    calm = wind(config(WIND), [(350.0, 0.0), (20.0, 0.0)] * 3)["WD"]
    assert math.isnan(calm.mean) and not calm.valid and calm.n_valid == 6
    opposite = wind(config(WIND.replace('speed = "WS"', "")), [(90.0, 2.0), (270.0, 2.0)] * 3)
    assert math.isnan(opposite["WD"].mean) and not opposite["WD"].valid
    assert opposite["WS"].valid and opposite["WS"].mean == pytest.approx(2.0)


def test_a_direction_whose_speed_is_offline_does_not_count() -> None:
    """Five of six polls lack a speed: one pair of six is below the 75 % coverage rule."""
    cfg = config(WIND)
    p = Pipeline(cfg, utc_offset_s=UTC7)
    p.clock_state(T0, synced=True)
    for i in range(6):
        t = T0 + 10.0 * i
        speed = Sample("WS", t, 2.0, M) if i == 0 else Sample.offline("WS", t)
        p.feed("weather", [Sample("WD", t, 45.0, M), speed], now=t + 0.1)
    wd = {r.channel: r for r in p.tick(T0 + 65.0)}["WD"]
    assert wd.n_valid == 1 and not wd.valid and wd.mean == pytest.approx(45.0)


def test_a_wd_channel_is_averaged_as_a_direction_by_default() -> None:
    cfg = config('channels = ["WS", "WD"]\n[averaging]\nwindows = [60]\n')
    wd = next(c for c in cfg.channels if c.symbol == "WD")
    ws = next(c for c in cfg.channels if c.symbol == "WS")
    assert (wd.average, wd.speed, ws.average) == ("direction", None, "mean")


def test_broken_wind_keys_are_named_with_their_value() -> None:
    at = "<test>: bus 'rs485-1' device 'weather': channels."
    assert problems('[device.channels.WD]\naverage = "mean"\n') == [
        f"{at}WD.average = 'mean': expected 'direction': an arithmetic mean of wind "
        "directions is wrong across north (350 and 10 deg give 180)"]
    assert problems('[device.channels.WD]\naverage = "vector"\n') == [
        f"{at}WD.average = 'vector': expected 'mean' or 'direction'"]
    assert problems('[device.channels.WD]\nspeed = "Temp"\n[device.channels.WS]\n') == [
        f"{at}WD.speed = 'Temp': expected a wind speed symbol reported by the same device "
        "'weather' (WS)"]
    assert problems('[device.channels.WS]\nspeed = "WS"\n[device.channels.WD]\n') == [
        f"{at}WS.speed = 'WS': expected no speed unless average = 'direction'"]


# --------------------------------------------------------------------------- 8-hour rolling

CO = """
[[device]]
name = "co"
bus = "rs485-1"
profile = "ambient_co"
unit = 3
interval = 600.0
[averaging]
windows = [3600]
grace_s = 1.0
[[averaging.rolling]]
channels = ["CO"]
"""


def feed_hours(p: Pipeline, values: dict[int, float], hours: range) -> list[Record]:
    """Hour h (from T0) measures ``values[h]`` in each of its six 10-minute polls, or nothing
    (OFFLINE) when h has no value; ticks after each hour; returns the rolling records."""
    out: list[Record] = []
    for h in hours:
        for k in range(6):
            t = T0 + h * 3600 + k * 600
            v = values.get(h)
            s = Sample("CO", t, v, M) if v is not None else Sample.offline("CO", t)
            p.feed("co", [s], now=t + 0.1)
        out += [r for r in p.tick(T0 + (h + 1) * 3600 + 2.0)
                if r.channel == "CO" and r.end - r.start == 8 * 3600]
    return out


def test_8_hour_rolling_co_by_hand() -> None:
    """Hourly CO means 1000, 1100, ..., 2100 ug/m3 (hour h: 1000 + 100 h) over 12 hours.

    * ending 08:00 (hours 0-7): (1000 + ... + 1700) / 8 = 1350, valid 8/8;
    * ending 09:00 (hours 1-8): 1450, and so on, one per hour;
    * the ones ending 01:00 .. 07:00 have fewer than 6 hours: the first valid one ends 06:00
      ((1000 + ... + 1500) / 6 = 1250 over 6 valid hours);
    * hours 9 and 10 offline: ending 12:00 (hours 4-11) averages the 6 valid hours
      4,5,6,7,8,11 -> (1400+1500+1600+1700+1800+2100)/6 = 1683.33, still valid (6 of 8).
    """
    cfg = config(CO)
    p = Pipeline(cfg, utc_offset_s=UTC7)
    p.clock_state(T0, synced=True)
    values = {h: 1000.0 + 100 * h for h in range(12) if h not in (9, 10)}
    out = feed_hours(p, values, range(12))
    by_end = {(r.end - T0) // 3600: r for r in out}
    assert sorted(by_end) == list(range(1, 13))
    for r in out:
        assert (r.end - r.start, r.n_expected, r.unit) == (28800, 8, "ug/m3")
    assert [by_end[h].valid for h in range(1, 13)] == [False] * 5 + [True] * 7
    assert by_end[6].mean == pytest.approx(1250.0) and by_end[6].n_valid == 6
    assert by_end[8].mean == pytest.approx(1350.0) and by_end[8].n_valid == 8
    assert by_end[9].mean == pytest.approx(1450.0)
    assert by_end[8].start == T0 and by_end[8].end == T0 + 8 * 3600  # [00:00, 08:00)
    assert (by_end[8].min, by_end[8].max) == (1000.0, 1700.0)
    twelve = by_end[12]
    assert twelve.valid and twelve.n_valid == 6
    assert twelve.mean == pytest.approx((1400 + 1500 + 1600 + 1700 + 1800 + 2100) / 6)


def test_8_hour_rolling_with_3_hours_missing_is_not_valid() -> None:
    cfg = config(CO)
    p = Pipeline(cfg, utc_offset_s=UTC7)
    p.clock_state(T0, synced=True)
    out = feed_hours(p, {h: 500.0 for h in range(8) if h not in (2, 3, 4)}, range(8))
    last = out[-1]
    assert last.end == T0 + 8 * 3600 and last.n_valid == 5 and not last.valid
    assert last.mean == pytest.approx(500.0)  # reported, with its count, but not valid


def test_a_restart_between_rolling_records_neither_repeats_nor_loses_one() -> None:
    """Records up to the 8-hour average ending 10:00 were stored; the agent restarts at
    10:30. The store gives back the hourly records (the rolling average's history) and says
    the newest rolling window ended 10:00. The next rolling record, ending 11:00, covers
    03:00-11:00: it starts *before* 10:00, so a fence on the start (as for tiled windows)
    would drop it and every one after it; a fence on the end keeps it and drops the ones
    re-made from the history."""
    cfg = config(CO)
    first = Pipeline(cfg, utc_offset_s=UTC7)
    first.clock_state(T0, synced=True)
    values = {h: 1000.0 + 100 * h for h in range(12)}
    before = feed_hours(first, values, range(10))
    hourly: list[Record] = []
    # the hourly records the store would hold: re-made here from the same samples
    again = Pipeline(cfg, utc_offset_s=UTC7)
    again.clock_state(T0, synced=True)
    for h in range(10):
        for k in range(6):
            t = T0 + h * 3600 + k * 600
            again.feed("co", [Sample("CO", t, values[h], M)], now=t + 0.1)
        hourly += [r for r in again.tick(T0 + (h + 1) * 3600 + 2.0) if r.end - r.start == 3600]
    assert before[-1].end == T0 + 10 * 3600

    resumed = Pipeline(cfg, utc_offset_s=UTC7)
    resumed.clock_state(T0 + 10.5 * 3600, synced=True)
    resumed.resume({(3600, "CO"): T0 + 10 * 3600, (28800, "CO"): T0 + 10 * 3600}, [], hourly,
                   now=T0 + 10.5 * 3600)
    assert resumed.tick(T0 + 10.5 * 3600) == []  # nothing made twice
    after = feed_hours(resumed, values, range(10, 12))
    assert [(r.start - T0) // 3600 for r in after] == [3, 4]
    assert [(r.end - T0) // 3600 for r in after] == [11, 12]
    assert after[0].mean == pytest.approx(sum(1000 + 100 * h for h in range(3, 11)) / 8)
    assert all(r.valid for r in after)


def test_broken_rolling_keys_are_named_with_their_value() -> None:
    head = CO.replace('[[averaging.rolling]]\nchannels = ["CO"]\n', "")
    assert problems(head + '[[averaging.rolling]]\nchannels = ["O3"]\n') == [
        "<test>: averaging.rolling[0].channels = 'O3': expected a reported channel symbol"]
    assert problems(head + '[[averaging.rolling]]\nchannels = ["CO"]\nfrom = 300\n') == [
        "<test>: averaging.rolling[0].from = 300: expected the width of a window or roll-up "
        "(3600)"]
    assert problems(head + '[[averaging.rolling]]\nchannels = ["CO"]\nmin_valid = 9\n') == [
        "<test>: averaging.rolling[0].min_valid = 9: expected a number of valid child "
        "windows in 1..span (8)"]
    daily = "[[averaging.rollup]]\nwidth = 86400\nfrom = 3600\n"
    assert problems(head + daily + '[[averaging.rolling]]\nchannels = ["CO"]\nspan = 24\n') == [
        "<test>: averaging.rolling[0].span = 24: expected a span whose width (span x from = "
        "86400 s) is not already a window, roll-up or rolling average's (3600, 86400)"]
    assert problems('[device.channels.WD]\n' + head +
                    '[[averaging.rolling]]\nchannels = ["WD"]\n') == [
        "<test>: averaging.rolling[0].channels = 'WD': expected a channel averaged as a mean "
        "(a rolling mean of wind directions is not a direction)"]


def test_the_sim_vane_crosses_north() -> None:
    """The simulator's weather station swings around north, both sides within an hour's
    polls, inside the register's range: the case the vector mean exists for."""
    from drivers.profile import builtin_profile
    from hw_sim.signals import channel_value

    wd = builtin_profile("weather_station").channel("WD")
    seen = [channel_value(11, wd, T0 + 10.0 * i) for i in range(360 * 24)]
    assert all(0.0 <= d <= 359.9 for d in seen)
    assert any(d > 300 for d in seen) and any(d < 60 for d in seen)
    assert not any(120 < d < 240 for d in seen)


def test_records_per_day_counts_the_rolling_ones() -> None:
    from edge_agent.config.model import records_per_day

    cfg = config(CO)
    # weather's 6 channels + CO, hourly: 7 x 24; plus CO's rolling average every hour: 24
    assert records_per_day(cfg) == 7 * 24 + 24


def test_the_rolling_width_is_not_confused_with_a_tiled_one(tmp_path: Path) -> None:
    """A roll-up of 8 hours next to an 8-hour rolling average of the same channel would be
    two kinds of record the store tells apart only by width: refused (the reader)."""
    head = CO.replace('[[averaging.rolling]]\nchannels = ["CO"]\n', "")
    text = head + "[[averaging.rollup]]\nwidth = 28800\nfrom = 3600\n" + \
        '[[averaging.rolling]]\nchannels = ["CO"]\n'
    [problem] = problems(text)
    assert "averaging.rolling[0].span = 8" in problem and "28800 s" in problem


# --------------------------------------------------------------------------- the shipped pair

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_ambient_example_passes_config_check() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.daemon.cli", "config", "check", "--offline",
         ROOT / "examples" / "ambient.toml"], capture_output=True, text=True, timeout=120,
        cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": ok: station THA-AQ-0001" in result.stdout
    assert "roll-ups 3600 s, 86400 s, rolling 28800 s of CO, O3," in result.stdout
    from edge_agent.config.reader import load_config

    cfg = load_config(ROOT / "examples" / "ambient.toml")
    wd = next(c for c in cfg.channels if c.symbol == "WD")
    assert (wd.average, wd.speed) == ("direction", None)
    [rolling] = cfg.averaging.rolling
    assert rolling.channels == ("CO", "O3") and rolling.rolling.width_s == 28800
    symbols = {c.symbol for c in cfg.channels}
    assert {"SO2", "CO", "NO2", "O3", "TSP", "PM10", "PM2,5", "Temp", "RH", "P", "WS", "WD",
            "SR"} <= symbols  # every QCVN 05:2023 parameter and the meteorology


def test_the_simulated_vane_averages_to_north_through_the_pipeline() -> None:
    """A day of the ambient simulator's vane (hw_sim/examples/ambient.toml's seed), polled
    every 10 s and averaged into 5-minute records: every record's direction lies in the
    sector the vane swept (within 60 deg of north), including the windows whose samples
    straddle 360/0, where an arithmetic mean would land near 180."""
    from drivers.profile import builtin_profile
    from hw_sim.config import load_station
    from hw_sim.signals import channel_value

    sim = load_station(ROOT / "hw_sim" / "examples" / "ambient.toml")
    seed = next(d.seed for d in sim.devices if d.profile.name == "weather_station")
    prof = builtin_profile("weather_station")
    cfg = config('channels = ["WS", "WD"]\n[averaging]\nwindows = [300]\ngrace_s = 1.0\n')
    p = Pipeline(cfg, utc_offset_s=UTC7)
    p.clock_state(T0, synced=True)
    out: list[Record] = []
    crossing = 0
    for i in range(8640):
        t = T0 + 10.0 * i
        d = round(channel_value(seed, prof.channel("WD"), t), 1)
        s = round(channel_value(seed, prof.channel("WS"), t), 2)
        p.feed("weather", [Sample("WD", t, d, M), Sample("WS", t, s, M)], now=t + 0.1)
        out += p.tick(t + 0.2)
    out += p.tick(T0 + 86400 + 5.0)
    wd = [r for r in out if r.channel == "WD"]
    assert len(wd) == 288
    for r in wd:
        assert r.valid and min(r.mean, 360 - r.mean) <= 60, r
        crossing += r.min < 0 <= r.max or r.min <= 360 < r.max
    assert crossing >= 50  # windows with samples on both sides of north (153 of 288 here)


def test_history_judges_a_rolling_record_by_its_own_threshold() -> None:
    """6 of 8 hours: quantrac history's reason for an invalid 8-hour record uses 0.75."""
    from edge_agent.daemon.history_cli import thresholds

    assert thresholds(config(CO))[28800] == pytest.approx(6 / 8)


def test_a_limit_on_the_8_hour_average_flags_the_rolling_records_over_it() -> None:
    """QCVN 05:2023 limits CO on its 8-hour average: a [[limit]] names window = 28800 and
    the rolling records over it (valid ones only) carry EXCEEDANCE. Hourly means 1000 +
    100 h: the 8-hour averages ending 08:00, 09:00, 10:00 are 1350, 1450, 1550."""
    from protocol.model import RecordFlag

    cfg = config(CO + '[[limit]]\nchannel = "CO"\nwindow = 28800\nmax = 1400.0\n')
    p = Pipeline(cfg, utc_offset_s=UTC7)
    p.clock_state(T0, synced=True)
    out = feed_hours(p, {h: 1000.0 + 100 * h for h in range(10)}, range(10))
    over = {(r.end - T0) // 3600: bool(r.flags & RecordFlag.EXCEEDANCE) for r in out}
    assert [over[h] for h in (6, 7, 8, 9, 10)] == [False, False, False, True, True]


def test_the_vector_mean_speed_is_a_record_of_its_own() -> None:
    """2 m/s from 90 deg and 2 m/s from 180 deg, three polls each: the scalar mean speed is
    2 m/s (the WS record), the vector mean speed |(6, -6)| / 6 = sqrt(2) = 1.414 m/s (the
    WS_vector record, same window, in m/s). In a calm it is 0 and valid, while the direction
    has none."""
    cfg = config(WIND.replace('speed = "WS"', 'speed = "WS"\nvector_speed = "WS_vector"'))
    recs = wind(cfg, [(90.0, 2.0), (180.0, 2.0)] * 3)
    assert recs["WS"].mean == pytest.approx(2.0)
    vec = recs["WS_vector"]
    assert vec.mean == pytest.approx(math.sqrt(2)) and vec.valid and vec.unit == "m/s"
    assert (vec.start, vec.end, vec.n_valid) == (recs["WD"].start, recs["WD"].end, 6)
    assert recs["WD"].mean == pytest.approx(135.0)
    calm = wind(cfg, [(10.0, 0.0)] * 6)
    assert not calm["WD"].valid and math.isnan(calm["WD"].mean)
    assert calm["WS_vector"].mean == 0.0 and calm["WS_vector"].valid


def test_broken_vector_speed_keys_are_named() -> None:
    at = "<test>: bus 'rs485-1' device 'weather': channels."
    assert problems('[device.channels.WS]\n[device.channels.WD]\nvector_speed = "WS_v"\n') == [
        f"{at}WD.vector_speed = 'WS_v': expected no vector_speed unless speed names the wind "
        "speed symbol"]
    assert problems('[device.channels.WS]\n[device.channels.WD]\nspeed = "WS"\n'
                    'vector_speed = "WS"\n') == [
        f"{at}WD.vector_speed = 'WS': expected a symbol not already reported by device "
        "'weather'"]
    assert problems('[device.channels.WS]\n[device.channels.WD]\nspeed = "WS"\n'
                    'vector_speed = "Gust"\n') == [
        f"{at}WD.vector_speed = 'Gust': expected a Circular 10 symbol with a tag, such as "
        "'WS_vector'"]


def test_an_ambient_window_in_a_circular10_file_with_the_provinces_spellings() -> None:
    """One 5-minute window of the station as the Circular 10 file the uplink writes: one
    line per record of that window (the 8-hour records are another width and never in it),
    PM2,5 and PM10 under the province's names (receiver aliases), a calm WD with no value
    (the missing-value placeholder, status 00: the vane was measuring) and its vector mean
    speed 0."""
    from zoneinfo import ZoneInfo

    from edge_agent.config.model import Circular10Receiver
    from edge_agent.uplinks.circular10.render import render_file

    cfg = config('[device.channels.WS]\n[device.channels.WD]\nspeed = "WS"\n'
                 'vector_speed = "WS_vector"\n'
                 '[[device]]\nname = "dust"\nbus = "rs485-1"\nprofile = "ambient_pm"\n'
                 'unit = 2\ninterval = 10.0\nchannels = ["PM10", "PM2,5"]\n'
                 '[averaging]\nwindows = [300]\ngrace_s = 1.0\n')
    p = Pipeline(cfg, utc_offset_s=UTC7)
    p.clock_state(T0, synced=True)
    for i in range(30):
        t = T0 + 10.0 * i
        p.feed("weather", [Sample("WD", t, 350.0, M), Sample("WS", t, 0.0, M)], now=t + 0.1)
        p.feed("dust", [Sample("PM10", t, 40.0, M), Sample("PM2,5", t, 25.5, M)], now=t + 0.2)
    records = p.tick(T0 + 305.0)
    rx = Circular10Receiver(file_prefix="THA_DemoCityAir_Station1_", missing_value="---",
                            aliases=(("PM2,5", "PM-2-5"), ("PM10", "PM-10")))
    f = render_file(rx, ZoneInfo("Asia/Ho_Chi_Minh"), T0, 300, records)
    assert f.name == "THA_DemoCityAir_Station1_20260921000500.txt"
    lines = sorted(f.data.decode("ascii").splitlines())
    assert lines == sorted([
        "PM-10\t40\tug/m3\t20260921000500\t00",
        "PM-2-5\t25.5\tug/m3\t20260921000500\t00",
        "WD\t---\tdeg\t20260921000500\t00",
        "WS\t0\tm/s\t20260921000500\t00",
        "WS_vector\t0\tm/s\t20260921000500\t00",
    ])
