"""Daily and monthly extracted volume from a totaliser, worked by hand (issue 15 item 1).

Station time is Asia/Ho_Chi_Minh (UTC+7): the local day of 30 Nov 2026 is
[2026-11-29T17:00Z, 2026-11-30T17:00Z). Readings are whole m3 of an 8-digit register
(modulus 10**8), polled at least hourly as Circular 17/2021 asks.
"""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from buffer.store import Store
from edge_agent.averaging.errors import AveragingError
from edge_agent.averaging.totaliser import (
    TotaliserSpec,
    TotaliserVolumes,
    increment,
    period_bounds,
    volumes,
)
from edge_agent.config.model import StationConfig, records_per_day
from edge_agent.config.reader import ConfigError, parse_config
from edge_agent.core.clock import ClockJump
from edge_agent.core.pipeline import Pipeline
from edge_agent.daemon.agent import resume_from_store
from protocol.model import Record, RecordFlag, Sample, Status

ICT = timezone(timedelta(hours=7))
OFFSET = 7 * 3600
DAY_30 = (int(datetime(2026, 11, 30, tzinfo=ICT).timestamp()),
          int(datetime(2026, 12, 1, tzinfo=ICT).timestamp()))


def at(day: int, hh: int, mm: int = 0, month: int = 11) -> float:
    return datetime(2026, month, day, hh, mm, tzinfo=ICT).timestamp()


def spec(**kw: object) -> TotaliserSpec:
    base: dict[str, object] = {"source": "Total_W1", "channel": "V_W1", "modulus": 10**8,
                               "periods": ("day",)}
    base.update(kw)
    return TotaliserSpec(**base)  # type: ignore[arg-type]


def day_30(records: list[Record]) -> Record:
    return next(r for r in records if (r.start, r.end) == DAY_30)


def test_the_local_day_and_month_boundaries() -> None:
    assert period_bounds("day", at(30, 12), OFFSET) == DAY_30
    assert DAY_30[0] == int(datetime(2026, 11, 29, 17, tzinfo=UTC).timestamp())
    # November in Vietnam: from 31 Oct 17:00Z to 30 Nov 17:00Z, 30 days
    start, end = period_bounds("month", at(1, 0), OFFSET)
    assert (start, end) == (int(at(1, 0)), DAY_30[1])
    assert end - start == 30 * 86400
    assert period_bounds("month", DAY_30[1] - 1, OFFSET) == (start, end)
    assert period_bounds("month", DAY_30[1], OFFSET)[0] == DAY_30[1]  # December starts there


def test_daily_volume_across_a_roll_over() -> None:
    # 29th 23:30  99 999 500  the boundary reading (the last one of the 29th)
    # 30th 06:00  99 999 800  +300
    # 30th 12:00         100  the register wrapped: 100 + 10**8 - 99 999 800 = +300
    # 30th 23:30         600  +500
    # the 30th's volume: 300 + 300 + 500 = 1 100 m3 (last - first would say -99 998 900)
    readings = [(at(29, 23, 30), 99_999_500), (at(30, 6), 99_999_800), (at(30, 12), 100),
                (at(30, 23, 30), 600)]
    rec = day_30(volumes(readings, spec(), OFFSET, now=DAY_30[1] + 60))
    assert rec.mean == 1100.0 and rec.min == rec.max == 1100.0
    assert rec.valid and rec.status is Status.MEASURING and rec.unit == "m3"
    assert rec.channel == "V_W1" and rec.n_valid == 3
    # without the modulus the drop cannot be a wrap: it is read as a new meter (counts 0)
    no_wrap = day_30(volumes(readings, spec(modulus=None), OFFSET, now=DAY_30[1] + 60))
    assert no_wrap.mean == 800.0


def test_daily_volume_across_a_meter_replacement() -> None:
    # 29th 23:30  52 340  boundary reading
    # 30th 08:00  52 660  the old meter's last reading: 52 660 - 52 340 = 320
    # 30th 10:00       3  a drop, not near the top of the register: a new meter, counts 0
    # 30th 23:30     420  the new meter: 420 - 3 = 417
    # the 30th's volume: 320 + 417 = 737 m3
    readings = [(at(29, 23, 30), 52_340), (at(30, 8), 52_660), (at(30, 10), 3),
                (at(30, 23, 30), 420)]
    tv = TotaliserVolumes(spec(), OFFSET, grace_s=0.0)
    for t, v in readings:
        tv.feed(Sample("Total_W1", t, v, Status.MEASURING))
    rec = day_30(tv.close_all(DAY_30[1] + 60))
    assert rec.mean == 737.0 and rec.valid
    assert [(e.kind, e.prev, e.cur) for e in tv.events] == [("replacement", 52_660, 3)]


def test_a_declared_replacement_counts_a_new_meter_that_starts_higher() -> None:
    # the new meter came with 5 000 on its register: without the work order's time the
    # jump 1 320 -> 5 000 would count as 3 680 m3 of water
    readings = [(at(29, 23, 30), 1_000), (at(30, 8), 1_320), (at(30, 10), 5_000),
                (at(30, 23, 30), 5_417)]
    declared = spec(replaced_at=(at(30, 9),))
    assert day_30(volumes(readings, declared, OFFSET, now=DAY_30[1] + 1)).mean == 737.0
    assert day_30(volumes(readings, spec(), OFFSET, now=DAY_30[1] + 1)).mean == 4417.0


def test_the_override_decides_a_drop_the_auto_rule_would_read_as_a_wrap() -> None:
    s = spec()
    # old meter at 99 990 000 (top tenth), new meter reads 12 (bottom tenth): auto says wrap
    assert increment(99_990_000, 12, s) == (10_012, "rollover")
    assert increment(99_990_000, 12, spec(on_drop="replacement")) == (0.0, "replacement")
    # and a wrap the auto rule doubts (the register was not near its top) when told so
    assert increment(50_000_000, 12, s) == (0.0, "replacement")
    assert increment(50_000_000, 12, spec(on_drop="rollover")) == (50_000_012, "rollover")
    with pytest.raises(AveragingError, match="needs the modulus"):
        spec(on_drop="rollover", modulus=None)
    with pytest.raises(AveragingError, match="on_drop='sometimes'"):
        spec(on_drop="sometimes")


def test_the_days_add_up_to_the_month_and_the_boundary_water_is_counted_once() -> None:
    # hourly readings from 28 Nov 12:00 to 1 Dec 06:00 local, 40 m3 an hour, a wrap inside
    t0 = at(28, 12)
    readings = [(t0 + 3600 * k, (99_998_000 + 40 * k) % 10**8) for k in range(67)]
    recs = volumes(readings, spec(periods=("day", "month")), OFFSET, now=at(1, 6, 30, 12))
    days = {r.start: r for r in recs if r.end - r.start == 86400}
    month = next(r for r in recs if r.end == DAY_30[1] and r.end - r.start > 86400)
    # the 28th from its first reading (12:00) to 23:00: 11 hours, invalid (started mid-day)
    first = days[int(at(28, 0))]
    assert first.mean == 11 * 40 and not first.valid
    assert days[int(at(29, 0))].mean == days[DAY_30[0]].mean == 24 * 40
    assert days[int(at(29, 0))].valid and days[DAY_30[0]].valid
    assert month.mean == (11 + 24 + 24) * 40 and not month.valid  # from the 28th only
    december = next(r for r in recs if r.start == DAY_30[1])
    assert december.mean == 7 * 40 and december.flags & RecordFlag.PARTIAL
    assert sum(r.mean for r in recs if r.end - r.start == 86400) == 66 * 40


def test_streaming_waits_for_the_grace_and_a_silent_day_has_no_value() -> None:
    tv = TotaliserVolumes(spec(), OFFSET, grace_s=30.0)
    tv.feed(Sample("Total_W1", at(29, 23, 30), 1_000, Status.MEASURING))
    tv.feed(Sample("Total_W1", at(30, 0, 30), 1_000, Status.FAULT))  # not a count
    tv.feed(Sample("Total_W1", at(30, 0, 40), math.nan, Status.OFFLINE))
    tv.feed(Sample("Flow_W1", at(30, 0, 50), 5.0, Status.MEASURING))  # another channel
    assert tv.advance(DAY_30[0] + 10) == []  # the 29th is over, but within its grace
    (the_29th,) = tv.advance(DAY_30[0] + 31)
    assert the_29th.end == DAY_30[0] and the_29th.mean == 0.0 and not the_29th.valid
    # nothing read on the 30th: no value, never a zero
    (silent,) = tv.advance(DAY_30[1] + 31)
    assert (silent.start, silent.end) == DAY_30
    assert math.isnan(silent.mean) and silent.status is Status.OFFLINE and not silent.valid
    # the water of the gap goes with the next reading, in a record marked invalid
    tv.feed(Sample("Total_W1", at(1, 8, month=12), 1_900, Status.MEASURING))
    (dec_1,) = tv.close_all(at(1, 9, month=12))
    assert dec_1.mean == 900.0 and not dec_1.valid and dec_1.flags & RecordFlag.PARTIAL


# ----------------------------------------------------------------- config and pipeline

WELL = """
[station]
id = "THA-GW-0001"
province = "THA"
facility = "Demo"
name = "Wellfield1"
timezone = "Asia/Ho_Chi_Minh"

[[bus]]
name = "rs485"
port = "/dev/ttyUSB0"

[[device]]
name = "well1-flow"
bus = "rs485"
profile = "well_flowmeter"
unit = 1
interval = 60.0
[device.channels.Flow]
symbol = "Flow_W1"
[device.channels.Total]
symbol = "Total_W1"

[averaging]
windows = [3600]
"""


def config(extra: str) -> StationConfig:
    return parse_config(tomllib.loads(WELL + extra), "station.toml")


def test_a_totaliser_table_becomes_a_spec() -> None:
    cfg = config("""
[[totaliser]]
channel = "Total_W1"
modulus = 100000000
replaced_at = [2026-11-30T09:00:00+07:00]
""")
    (spec_,) = cfg.totalisers
    assert spec_.source == "Total_W1" and spec_.channel == "V_W1"  # V + the channel's tag
    assert spec_.modulus == 1e8 and spec_.on_drop == "auto" and spec_.periods == ("day", "month")
    assert spec_.replaced_at == (at(30, 9),) and spec_.period_s == 60.0


@pytest.mark.parametrize(("table", "key", "value"), [
    ('channel = "Flow_W1"', "totaliser[0].channel", "'Flow_W1'"),  # m3/h is not a count
    ('channel = "Total_W9"', "totaliser[0].channel", "'Total_W9'"),
    ('channel = "Total_W1"\nmodulus = -1', "totaliser[0].modulus", "-1"),
    ('channel = "Total_W1"\non_drop = "rollover"', "totaliser[0].on_drop", "'rollover'"),
    ('channel = "Total_W1"\non_drop = "guess"', "totaliser[0].on_drop", "'guess'"),
    ('channel = "Total_W1"\nvolume = "Flow_W1"', "totaliser[0].volume", "'Flow_W1'"),
    ('channel = "Total_W1"\nperiods = ["week"]', "totaliser[0].periods", "['week']"),
    ('channel = "Total_W1"\nreplaced_at = [2026-11-30T09:00:00]',
     "totaliser[0].replaced_at[0]", "datetime"),
    ('channel = "Total_W1"\nreplaced_at = ["yesterday"]',
     "totaliser[0].replaced_at[0]", "'yesterday'"),
])
def test_a_broken_totaliser_is_named_by_key_and_value(table: str, key: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        config("[[totaliser]]\n" + table + "\n")
    text = str(err.value)
    assert key in text and value in text, text


def test_the_pipeline_sends_the_daily_volume_as_a_record() -> None:
    cfg = config('[[totaliser]]\nchannel = "Total_W1"\nmodulus = 100000000\n'
                 'periods = ["day"]\n')
    pipe = Pipeline(cfg, OFFSET)
    readings = [(at(29, 23, 30), 99_999_500), (at(30, 6), 99_999_800), (at(30, 12), 100),
                (at(30, 23, 30), 600)]
    out: list[Record] = []
    for t, v in readings:
        pipe.feed("well1-flow", [Sample("Total", t, v, Status.MEASURING),
                                 Sample("Flow", t, 40.0, Status.MEASURING)], now=t)
        out += pipe.tick(t)
    out += pipe.tick(DAY_30[1] + cfg.averaging.grace_s + 1)
    (vol,) = [r for r in out if r.channel == "V_W1" and (r.start, r.end) == DAY_30]
    assert vol.mean == 1100.0 and vol.valid and vol.unit == "m3"
    # the totaliser and the flow are still averaged like any channel
    assert {"Total_W1", "Flow_W1"} <= {r.channel for r in out}


def test_a_clock_jump_does_not_split_the_days_volume() -> None:
    # the meter's count does not jump with the clock: a forward step of 2 minutes at noon
    # closes the averaging windows (CLOCK_JUMP) but the day's volume goes on being counted
    cfg = config('[[totaliser]]\nchannel = "Total_W1"\nperiods = ["day"]\n')
    pipe = Pipeline(cfg, OFFSET)
    out: list[Record] = []
    for t, v in [(at(29, 23, 30), 1_000), (at(30, 11), 1_400)]:
        pipe.feed("well1-flow", [Sample("Total", t, v, Status.MEASURING)], now=t)
        out += pipe.tick(t)
    out += pipe.jump(ClockJump(at_wall=at(30, 12, 2), offset=120.0))
    for t, v in [(at(30, 13), 1_500), (at(30, 23, 30), 2_000)]:
        pipe.feed("well1-flow", [Sample("Total", t, v, Status.MEASURING)], now=t)
        out += pipe.tick(t)
    out += pipe.tick(DAY_30[1] + 60)
    days = [r for r in out if r.channel == "V_W1" and (r.start, r.end) == DAY_30]
    assert [(d.mean, d.valid) for d in days] == [(1000.0, True)]


def test_a_restart_mid_day_keeps_the_day_valid_and_sends_no_day_twice(tmp_path: Path) -> None:
    # the outbox as a crash at 06:30 on the 30th left it: the readings, the 29th's volume
    # and the last hourly window (05:00-06:00) already stored
    cfg = config('[[totaliser]]\nchannel = "Total_W1"\nperiods = ["day"]\n')
    now = at(30, 6, 30)
    with Store(tmp_path / "outbox.sqlite", lambda: now) as store:
        store.append_samples([Sample("Total_W1", at(29, 23, 30), 1_000, Status.MEASURING),
                              Sample("Total_W1", at(30, 6), 1_300, Status.MEASURING)])
        hour = Record("Total_W1", int(at(30, 5)), int(at(30, 6)), 1_300, 1_300, 1_300, 0.0,
                      1, 60, False, Status.MEASURING, "m3")
        day_29 = Record("V_W1", DAY_30[0] - 86400, DAY_30[0], 500.0, 500.0, 500.0, 0.0, 10,
                        1440, True, Status.MEASURING, "m3")
        store.append([hour, day_29])
        pipe = Pipeline(cfg, OFFSET)
        resume_from_store(store, pipe, now)
    out = pipe.tick(now)
    for t, v in [(at(30, 12), 1_500), (at(30, 23, 30), 2_000)]:
        pipe.feed("well1-flow", [Sample("Total", t, v, Status.MEASURING)], now=t)
        out += pipe.tick(t)
    out += pipe.tick(DAY_30[1] + 60)
    volumes_ = [(r.start, r.mean, r.valid) for r in out if r.channel == "V_W1"]
    # the 30th counted from the 29th's 23:30 reading (read back from the outbox): valid;
    # the 29th, stored already, is not made again
    assert volumes_ == [(DAY_30[0], 1000.0, True)]


def test_a_permits_daily_volume_is_a_limit_on_the_volume_record() -> None:
    # the permit allows 1 000 m3 a day; the 30th's 1 100 m3 (the roll-over day) is over it
    cfg = config('[[totaliser]]\nchannel = "Total_W1"\nmodulus = 100000000\n'
                 'periods = ["day"]\n'
                 '[[limit]]\nchannel = "V_W1"\nwindow = 86400\nmax = 1000.0\n')
    pipe = Pipeline(cfg, OFFSET)
    out: list[Record] = []
    for t, v in [(at(29, 23, 30), 99_999_500), (at(30, 12), 100), (at(30, 23, 30), 600)]:
        pipe.feed("well1-flow", [Sample("Total", t, v, Status.MEASURING)], now=t)
        out += pipe.tick(t)
    out += pipe.tick(DAY_30[1] + 60)
    (vol,) = [r for r in out if r.channel == "V_W1" and (r.start, r.end) == DAY_30]
    assert vol.mean == 1100.0 and vol.valid and vol.flags & RecordFlag.EXCEEDANCE


def test_a_replacement_declared_on_reload_recounts_today_and_sends_no_day_twice() -> None:
    # 10:00: the new meter came with 5 000 on it and the day counted 3 680 m3 of it; the
    # technician writes the work order's time into replaced_at and reloads at 11:00
    cfg = config('[[totaliser]]\nchannel = "Total_W1"\nperiods = ["day"]\n')
    pipe = Pipeline(cfg, OFFSET)
    readings = [(at(29, 22, 30), 900), (at(29, 23, 30), 1_000), (at(30, 8), 1_320),
                (at(30, 10), 5_000)]
    kept: list[Sample] = []
    out: list[Record] = []
    for t, v in readings:
        kept += pipe.feed("well1-flow", [Sample("Total", t, v, Status.MEASURING)], now=t)
        out += pipe.tick(t)
    assert [r.start for r in out if r.channel == "V_W1"] == [DAY_30[0] - 86400]  # the 29th
    declared = config('[[totaliser]]\nchannel = "Total_W1"\nperiods = ["day"]\n'
                      'replaced_at = [2026-11-30T09:00:00+07:00]\n')
    now = at(30, 11)
    since = pipe.volume_since(now, declared.totalisers)
    assert since == DAY_30[0] - 3600
    pipe.recount_volumes(declared.totalisers, [s for s in kept if s.t >= since], now)
    for t, v in [(at(30, 23, 30), 5_417)]:
        pipe.feed("well1-flow", [Sample("Total", t, v, Status.MEASURING)], now=t)
        out += pipe.tick(t)
    out += pipe.tick(DAY_30[1] + 60)
    volumes_ = [(r.start, r.mean, r.valid) for r in out if r.channel == "V_W1"]
    assert volumes_ == [(DAY_30[0] - 86400, 100.0, False), (DAY_30[0], 737.0, True)]


def test_config_checks_disk_estimate_counts_the_volume_records() -> None:
    plain = config("")
    with_volume = config('[[totaliser]]\nchannel = "Total_W1"\n')
    assert records_per_day(with_volume) - records_per_day(plain) == pytest.approx(1 + 1 / 28)
