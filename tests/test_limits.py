"""Limits from the permit (issue 15 item 4): config refusals, a QCVN column worked by hand,
and the pipeline flagging only valid records of the limited window.

Hand-worked QCVN 40:2011 example (the table is edge_agent/config/limit_tables): TSS, column
B, C = 100 mg/L; the permit's Kq = 0.9 (a river of Q <= 50 m3/s) and Kf = 1.1 (a discharge of
50 < F <= 500 m3/day): Cmax = 100 x 0.9 x 1.1 = 99 mg/L. pH, column B, is 5.5..9 whatever
the factors (QCVN 40:2011 section 2.2: no factors for pH)."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config.limits import Limit, tables
from edge_agent.config.reader import ConfigError, parse_config
from edge_agent.core.pipeline import Pipeline
from protocol.model import RecordFlag, Sample, Status

T0 = 1_790_000_000 - 1_790_000_000 % 3600  # an hour boundary (UTC; the zone is +7 h)

BASE: dict[str, Any] = {
    "station": {"id": "HCM-WW-0001"},
    "agent": {"state_dir": "/nonexistent"},
    "bus": [{"name": "rs485-1", "port": "/dev/null"}],
    "device": [{"name": "liquiline", "bus": "rs485-1", "profile": "liquiline", "unit": 1,
                "interval": 10.0, "channels": ["pH", "Temp", "TSS"]},
               {"name": "hach", "bus": "rs485-1", "profile": "hach_sc", "unit": 2,
                "interval": 10.0, "channels": ["COD", "NH4"]}],
    "averaging": {"windows": [60], "grace_s": 1.0,
                  "rollup": [{"width": 300, "from": 60}]},
}


def config(*limits: dict[str, Any]) -> Any:
    doc = copy.deepcopy(BASE)
    doc["limit"] = list(limits)
    return parse_config(doc, Path("/etc/quantrac/station.toml"))


def refused(*limits: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        config(*limits)
    return [str(p) for p in err.value.problems]


def test_a_qcvn_column_times_the_permits_factors() -> None:
    cfg = config(
        {"channel": "TSS", "window": 300, "standard": "QCVN 40:2011", "column": "B",
         "kq": 0.9, "kf": 1.1},
        {"channel": "pH", "window": 300, "standard": "QCVN 40:2011", "column": "B"},
        {"channel": "COD", "window": 60, "max": 120.0},
    )
    tss, ph, cod = cfg.limits
    assert tss.channel == "TSS" and tss.window == 300 and tss.min is None
    assert tss.max == pytest.approx(99.0)
    assert tss.source == "QCVN 40:2011 B x Kq 0.9 x Kf 1.1"
    assert (ph.min, ph.max, ph.source) == (5.5, 9.0, "QCVN 40:2011 B")
    assert (cod.max, cod.min, cod.source) == (120.0, None, "permit")


def test_breach_is_strictly_over_or_under_and_never_nan() -> None:
    lim = Limit("pH", 300, 9.0, 5.5, "QCVN 40:2011 B")
    assert [lim.breached(v) for v in (5.5, 9.0, 9.01, 5.49, float("nan"))] == \
        [False, False, True, True, False]


@pytest.mark.parametrize(("limit", "key", "value"), [
    ({"channel": "BOD5", "window": 300, "max": 50.0}, "limit[0].channel", "'BOD5'"),
    ({"channel": "COD", "window": 600, "max": 50.0}, "limit[0].window", "600"),
    ({"channel": "COD", "window": 300}, "limit[0].max", None),
    ({"channel": "COD", "window": 300, "max": 5.0, "min": 6.0}, "limit[0].min", "6.0"),
    ({"channel": "COD", "window": 300, "max": "150"}, "limit[0].max", "'150'"),
    ({"channel": "COD", "window": 300, "standard": "QCVN 40:2019", "column": "B", "kq": 1,
      "kf": 1}, "limit[0].standard", "'QCVN 40:2019'"),
    ({"channel": "COD", "window": 300, "standard": "QCVN 40:2025", "column": "B"},
     "limit[0].standard", "'QCVN 40:2025'"),
    ({"channel": "COD", "window": 300, "standard": "QCVN 40:2011", "column": "C", "kq": 1,
      "kf": 1}, "limit[0].column", "'C'"),
    ({"channel": "COD", "window": 300, "standard": "QCVN 40:2011", "column": "B", "kq": 0,
      "kf": 1}, "limit[0].kq", "0"),
    ({"channel": "COD", "window": 300, "standard": "QCVN 40:2011", "column": "B", "kq": 1},
     "limit[0].kf", None),
    ({"channel": "pH", "window": 300, "standard": "QCVN 40:2011", "column": "B", "kq": 0.9},
     "limit[0].kq", "0.9"),
    ({"channel": "COD", "window": 300, "standard": "QCVN 40:2011", "column": "B", "kq": 1,
      "kf": 1, "max": 100.0}, "limit[0].max", "100.0"),
    ({"channel": "COD", "window": 300, "max": 100.0, "kq": 0.9}, "limit[0].kq", "0.9"),
    ({"channel": "COD", "window": 300, "max": 1.0, "colour": "B"}, "limit[0].colour", "'B'"),
])
def test_config_check_refuses_a_broken_limit_naming_key_and_value(
        limit: dict[str, Any], key: str, value: str | None) -> None:
    [problem] = refused(limit)
    assert problem.startswith(f"/etc/quantrac/station.toml: {key}")
    if value is None:
        assert ": missing; expected" in problem
    else:
        assert f"{key} = {value}: expected" in problem


def test_a_table_parameter_in_another_unit_and_a_second_limit_are_refused() -> None:
    doc = copy.deepcopy(BASE)
    doc["device"][1]["channels"] = {"COD": {"symbol": "COD", "unit": "ppm"}}
    doc["limit"] = [{"channel": "COD", "window": 300, "standard": "QCVN 40:2011",
                     "column": "B", "kq": 1.0, "kf": 1.0}]
    with pytest.raises(ConfigError) as err:
        parse_config(doc, Path("s.toml"))
    assert "limit[0].channel = 'COD': expected a channel in 'mg/L'" in str(err.value)
    problems = refused({"channel": "COD", "window": 300, "max": 1.0},
                       {"channel": "COD", "window": 300, "max": 2.0})
    assert problems == ["/etc/quantrac/station.toml: limit[1].channel = 'COD': expected one "
                        "limit per channel and window (COD at 300 s is limited twice)"]


def test_the_2025_table_ships_no_unconfirmed_value() -> None:
    assert tables()["QCVN 40:2025"].rows == {}
    assert not tables()["QCVN 40:2025"].confirmed


def feed_minute(p: Pipeline, start: int, value: float, status: Status = Status.MEASURING
                ) -> None:
    for i in range(6):
        t = start + 10 * i
        p.feed("hach", [Sample("COD", t, value, status)], now=t + 0.1)


def test_only_valid_records_of_the_limited_window_are_flagged() -> None:
    """COD limited at 150 mg/L on the 5-minute mean. Minutes of 100, 100, 100, 400, 100:
    the 4th one-minute record (400) is over 150 but its window is not limited; the 5-minute
    mean is (100 x 4 + 400) / 5 = 160 > 150: flagged. The next five minutes at 100 with one
    at 500 mean 180 but their samples are calibrating: invalid, not judged."""
    cfg = config({"channel": "COD", "window": 300, "max": 150.0})
    p = Pipeline(cfg, utc_offset_s=7 * 3600)
    p.clock_state(T0, synced=True)
    out = []
    for k, v in enumerate((100.0, 100.0, 100.0, 400.0, 100.0)):
        feed_minute(p, T0 + 60 * k, v)
        out += p.tick(T0 + 60 * k + 61.5)
    for k, v in enumerate((100.0, 100.0, 500.0, 100.0, 100.0)):
        feed_minute(p, T0 + 300 + 60 * k, v, Status.CALIBRATING)
        out += p.tick(T0 + 300 + 60 * k + 61.5)
    out += p.tick(T0 + 605)  # the roll-up closes 3 s after its end (grace), no minute more
    cod = [r for r in out if r.channel == "COD"]
    minutes = [r for r in cod if r.end - r.start == 60]
    fives = [r for r in cod if r.end - r.start == 300]
    assert len(minutes) == 10 and len(fives) == 2
    assert not any(r.flags & RecordFlag.EXCEEDANCE for r in minutes)
    assert fives[0].mean == pytest.approx(160.0) and fives[0].valid
    assert fives[0].flags & RecordFlag.EXCEEDANCE
    assert not fives[1].valid and not fives[1].flags & RecordFlag.EXCEEDANCE


def test_people_read_an_exceedance_in_the_reason_and_the_flag_names() -> None:
    from protocol.record_view import flag_names, reason
    from tests.mqtt_world import make_records

    rec = make_records(1)[0]
    over = replace(rec, flags=RecordFlag.EXCEEDANCE | RecordFlag.SAMPLER_TRIGGERED)
    assert rec.valid and reason(rec) == ""
    assert reason(over) == "over limit"
    assert flag_names(int(over.flags)) == "exceedance|sampler_triggered"


def test_a_reloaded_limit_judges_the_next_record() -> None:
    cfg = config({"channel": "COD", "window": 300, "max": 500.0})
    p = Pipeline(cfg, utc_offset_s=7 * 3600)
    p.clock_state(T0, synced=True)
    for k in range(5):
        feed_minute(p, T0 + 60 * k, 160.0)
    [five] = [r for r in p.tick(T0 + 305) if r.end - r.start == 300 and r.channel == "COD"]
    assert not five.flags & RecordFlag.EXCEEDANCE  # 160 is within 500
    p.set_limits(config({"channel": "COD", "window": 300, "max": 150.0}).limits)
    for k in range(5, 10):
        feed_minute(p, T0 + 60 * k, 160.0)
    [five] = [r for r in p.tick(T0 + 605) if r.end - r.start == 300 and r.channel == "COD"]
    assert five.flags & RecordFlag.EXCEEDANCE


def test_quantrac_config_check_names_a_broken_limit_and_sampler(tmp_path: Path) -> None:
    """The command itself (a subprocess, as an installer runs it): every mistake at once."""
    import subprocess
    import sys

    path = tmp_path / "station.toml"
    path.write_text(f"""\
[station]
id = "HCM-WW-0001"
[agent]
state_dir = "{tmp_path / 'state'}"
[[bus]]
name = "rs485-1"
port = "/dev/null"
[[device]]
name = "hach"
bus = "rs485-1"
profile = "hach_sc"
unit = 2
interval = 10.0
channels = ["COD", "NH4"]
[averaging]
windows = [300]
[[limit]]
channel = "COD"
window = 3600
max = 150.0
[[limit]]
channel = "NH4"
window = 300
standard = "QCVN 40:2011"
column = "B"
kq = 3.0
kf = 1.0
[sampler]
bus = "rs485-1"
unit = 9
trigger_coil = 0
daily_cap = 0
""")
    out = subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "config", "check",
                          str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out
    assert out.stdout.endswith("3 problem(s) found\n"), out.stdout  # its answer: stdout
    for text in ("limit[0].window = 3600: expected the width in seconds of a configured "
                 "window or roll-up (300)",
                 "limit[1].kq = 3.0: expected the permit's Kq",
                 "sampler.daily_cap = 0: expected starts per day in 1..96"):
        assert f"{path}: {text}" in out.stdout, out.stdout
