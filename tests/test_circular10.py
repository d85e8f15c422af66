"""Circular 10 rendering (exact file name and bytes for hand-built records; no value is ever a
made-up number) and the ``[uplink.circular10]`` config (precise messages, secrets never echoed)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge_agent.config.reader import ConfigError, load_config
from edge_agent.uplinks.circular10 import render as circular10
from protocol.model import Record, RecordFlag, Status

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
START = int(dt.datetime(2026, 11, 23, 7, 30, tzinfo=HCM).timestamp())  # 00:30 UTC


def rec(channel: str, mean: float, unit: str, *, valid: bool = True,
        status: Status = Status.MEASURING, start: int = START) -> Record:
    return Record(channel, start, start + 300, mean, mean, mean, 0.0,
                  30 if valid else 10, 30, valid, status, unit, RecordFlag.NONE)


def test_file_name_is_province_facility_station_local_time() -> None:
    at = circular10.local(START, HCM)
    assert circular10.file_name("HCM", "ACME", "Outfall1", at) == \
        "HCM_ACME_Outfall1_20261123073000.txt"
    # the zone is the station's: the same instant in UTC+0 names another file
    assert circular10.file_name("HCM", "ACME", "Outfall1", circular10.local(
        START, ZoneInfo("UTC"))) == "HCM_ACME_Outfall1_20261123003000.txt"


@pytest.mark.parametrize("bad", ["", "Ho_Chi_Minh", "a/b", "a b", "Hà-Nội"])
def test_file_name_refuses_a_part_that_would_break_it(bad: str) -> None:
    with pytest.raises(ValueError, match=r"facility .* must be 1 to 64 ASCII"):
        circular10.file_name("HCM", bad, "Outfall1", circular10.local(START, HCM))


def test_rendered_file_is_exactly_the_expected_text() -> None:
    records = [
        rec("pH", 7.1, "pH"),
        rec("Temp", 25.0, "°C"),
        rec("COD", math.nan, "mg/L", valid=False, status=Status.OFFLINE),  # no answer
        rec("TSS", 12.5, "mg/L", valid=False),  # coverage below the rule
        rec("NH4", math.nan, "mg/L", valid=False, status=Status.CALIBRATING),
        rec("Flow", 1234.56789, "m3/h"),
        rec("Temp_inlet", -0.00001, "°C"),
        rec("TN", math.nan, "mg/L", valid=False, status=Status.FAULT),
    ]
    expected = (
        "pH\t7.1\tpH\t20261123073000\t00\n"
        "Temp\t25\t°C\t20261123073000\t00\n"
        "COD\t\tmg/L\t20261123073000\t02\n"
        "TSS\t12.5\tmg/L\t20261123073000\t02\n"
        "NH4\t\tmg/L\t20261123073000\t01\n"
        "Flow\t1234.5679\tm3/h\t20261123073000\t00\n"
        "Temp_inlet\t0\t°C\t20261123073000\t00\n"
        "TN\t\tmg/L\t20261123073000\t02\n"
    )
    assert circular10.render(records, HCM) == expected.encode("utf-8")


@pytest.mark.parametrize("status", list(Status))
def test_a_record_without_value_never_gets_a_number(status: Status) -> None:
    for mean in (math.nan, math.inf, -math.inf):
        text = circular10.render([rec("COD", mean, "mg/L", valid=False, status=status)], HCM)
        symbol, value, unit, when, code = text.decode().rstrip("\n").split("\t")
        assert (symbol, value, unit, when) == ("COD", "", "mg/L", "20261123073000")
        assert code == ("01" if status is Status.CALIBRATING else "02")


@pytest.mark.parametrize("unit", ["p\tH", "mg/L\r\nCOD\t999", "\x1b[2Jmg/L", "m" * 300])
def test_a_stored_unit_that_breaks_the_label_rule_is_written_safe_not_refused(unit: str) -> None:
    """An outbox may hold records made before the config refused such labels; refusing one
    would stop every later file of the legal channel, writing it raw would split the line."""
    text = circular10.render([rec("pH", 7.0, unit), rec("COD", 1.0, "mg/L")], HCM).decode()
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 3, text
    ph = lines[0].split("\t")
    assert len(ph) == 5 and ph[0] == "pH" and ph[1] == "7" and ph[4] == "00", ph
    assert ph[2].isprintable() and len(ph[2]) <= 32, ph[2]
    assert lines[1].split("\t")[:3] == ["COD", "1", "mg/L"]


def test_a_tab_or_line_break_in_a_symbol_is_refused() -> None:
    with pytest.raises(ValueError, match="tab or line break"):
        circular10.render([rec("p\tH", 7.0, "")], HCM)


# --------------------------------------------------------------------------- config

STATION = """\
[station]
id = "HCM-WW-0001"
province = "HCM"
facility = "ACME"
name = "Outfall1"
[agent]
state_dir = "state"
[[bus]]
name = "lan"
host = "127.0.0.1"
tcp_port = 1502
[[device]]
name = "liquiline"
bus = "lan"
profile = "liquiline"
unit = 1
interval = 10.0
channels = ["pH", "Temp"]
"""
"""A station with the identity a Circular 10 file name needs; the uplink tests share it."""

BASE = STATION + """\
[averaging]
windows = [60, 300]
[uplink.circular10]
host = "ftp.centre.example"
user = "station1"
password_file = "ftp.secret"
directory = "/incoming"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "ftp.secret").write_text("pa55word\n")
    path = tmp_path / "station.toml"
    path.write_text(text)
    return path


def test_good_circular10_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    c = cfg.circular10
    assert c is not None
    assert (c.host, c.port, c.user, c.password, c.directory, c.tls, c.interval_minutes,
            c.window, c.retention_days) == ("ftp.centre.example", 21, "station1", "pa55word",
                                            "/incoming", True, 5.0, 300, 60.0)
    assert "pa55word" not in repr(cfg.circular10)


# (what is changed in BASE, the exact message)
BROKEN = [
    ('province = "HCM"\n', '',
     "{f}: station.province: missing; expected 1 to 64 ASCII letters, digits or '-' (the "
     "Circular 10 file name Province_Facility_Station_YYYYMMDDhhmmss.txt, for "
     "[uplink.circular10])"),
    ('name = "Outfall1"\n', 'name = "Outfall_1"\n',
     "{f}: station.name = 'Outfall_1': expected 1 to 64 ASCII letters, digits or '-' (the "
     "Circular 10 file name Province_Facility_Station_YYYYMMDDhhmmss.txt, for "
     "[uplink.circular10])"),
    ('host = "ftp.centre.example"\n', '',
     "{f}: uplink.circular10.host: missing; expected the centre's FTP host name or address"),
    ('directory = "/incoming"\n', 'directory = "/incoming"\nport = 70000\n',
     "{f}: uplink.circular10.port = 70000: expected a TCP port in 1..65535"),
    ('directory = "/incoming"\n', 'directory = "/incoming"\ntls = "yes"\n',
     "{f}: uplink.circular10.tls = 'yes': expected true or false"),
    ('directory = "/incoming"\n', 'directory = "/incoming"\ninterval_minutes = 0\n',
     "{f}: uplink.circular10.interval_minutes = 0: expected minutes in (0, 60] (the "
     "circular wants 5)"),
    ('directory = "/incoming"\n', 'directory = "/incoming"\nwindow = 900\n',
     "{f}: uplink.circular10.window = 900: expected the width of an averaging window "
     "(averaging.windows: 60, 300)"),
    ('password_file = "ftp.secret"\n', 'password_file = "nope.secret"\n',
     "{f}: uplink.circular10.password_file = 'nope.secret': expected a readable file whose "
     "first line is the password (No such file or directory)"),
    ('directory = "/incoming"\n', 'directory = "/incoming"\npasword = "x"\n',
     "{f}: uplink.circular10.pasword = 'x': expected a known key (one of backoff_cap_s, "
     "ca_file, directory, host, interval_minutes, password, password_file, port, "
     "retention_days, timeout_s, tls, user, window)"),
    ('directory = "/incoming"\n', 'directory = "/incoming"\nretention_days = 0.5\n',
     "{f}: uplink.circular10.retention_days = 0.5: expected at least 1 day"),
]


@pytest.mark.parametrize(("old", "new", "message"), BROKEN,
                         ids=[m.split(":")[1].split("=")[0].strip() for _, _, m in BROKEN])
def test_each_broken_circular10_config_gets_its_precise_message(
        tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [message.format(f=path)]


@pytest.mark.parametrize("extra", ['password = "hunter2-secret"\n', "password = 1234567\n"])
def test_a_password_problem_never_echoes_the_password(tmp_path: Path, extra: str) -> None:
    path = write(tmp_path, BASE.replace('directory = "/incoming"\n',
                                        'directory = "/incoming"\n' + extra, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "hunter2" not in text and "1234567" not in text
    assert text.startswith(f"{path}: uplink.circular10.password = '<hidden>': expected ")
