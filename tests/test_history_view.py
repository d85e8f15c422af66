"""protocol.record_view: the reason of each kind of invalid window, the flag names, the window
labels and the escaping, as both ``quantrac history`` and ``centre query`` show them."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import pytest

from protocol.model import Record, RecordFlag, Status
from protocol.record_view import Held, flag_names, reason, render_csv, render_text, window_label

T0 = 1_790_000_100 - 1_790_000_100 % 300
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def rec(n: int, expected: int = 60, valid: bool = False, status: Status = Status.MEASURING,
        flags: RecordFlag = RecordFlag.NONE, channel: str = "COD", unit: str = "mg/L") -> Record:
    mean = math.nan if n == 0 else 12.5
    return Record(channel, T0, T0 + 300, mean, mean, mean, math.nan if n == 0 else 0.0, n,
                  expected, valid, status, unit, flags)


@pytest.mark.parametrize(("record", "why"), [
    (rec(60, valid=True), ""),
    (rec(60, valid=True, flags=RecordFlag.CLOCK_UNSYNCED), ""),
    (rec(44), "coverage 44/60 < 75%"),
    (rec(44, flags=RecordFlag.PARTIAL), "coverage 44/60 < 75%; partial"),
    (rec(12, status=Status.CALIBRATING), "calibrating 12/60 valid"),
    (rec(20, status=Status.MAINTENANCE), "maintenance 20/60 valid"),
    (rec(30, status=Status.OFFLINE), "offline 30/60 valid"),
    (rec(0, status=Status.OFFLINE), "offline"),
    (rec(0, status=Status.FAULT), "fault"),
    (rec(0, status=Status.MEASURING), "no valid value"),
    (rec(58, flags=RecordFlag.CLOCK_JUMP), "clock jump"),
    (rec(10, flags=RecordFlag.CLOCK_JUMP), "coverage 10/60 < 75%; clock jump"),
    (rec(58, flags=RecordFlag.O2_NORMALISED), "O2 normalisation failed"),
    (rec(58), "rule not met 58/60 valid"),
])
def test_reason_of_each_kind_of_window(record: Record, why: str) -> None:
    assert reason(record) == why


def test_reason_uses_the_stations_threshold_and_the_exact_count() -> None:
    assert reason(rec(45)) == "rule not met 45/60 valid"  # 45 of 60 is 75 %: enough
    assert reason(rec(45), 0.8) == "coverage 45/60 < 80%"
    # the quadrant rule (fraction 0) has no coverage threshold to name
    assert reason(rec(40), 0.0) == "rule not met 40/60 valid"
    assert reason(rec(0), 0.0) == "no valid value"


def test_flag_names_and_window_labels() -> None:
    assert flag_names(RecordFlag.CLOCK_UNSYNCED | RecordFlag.PARTIAL) == "partial|clock_unsynced"
    assert flag_names(RecordFlag.NONE) == ""
    assert flag_names(RecordFlag(0x8000 | 8)) == "clock_jump|0x8000"  # a bit no release defines
    assert [window_label(s) for s in (10, 60, 90, 300, 3600, 86400)] == [
        "10s", "1m", "90s", "5m", "1h", "1d"]


def test_outside_strings_are_escaped_in_the_table_and_neutralised_in_csv() -> None:
    held = [Held(1, rec(60, valid=True, channel="=cmd|x", unit="mg/L\x1b[2J\rX"))]
    text = render_text(held, TZ)
    assert "\x1b" not in text and "\r" not in text
    assert "mg/L\\x1b[2J\\rX" in text
    lines = render_csv(held, TZ).splitlines()
    assert lines[1].split(",")[3] == "'=cmd|x"


def test_seconds_are_shown_only_when_a_window_starts_off_the_minute() -> None:
    minute = render_text([Held(1, rec(60, valid=True))], TZ).splitlines()[2]
    assert minute.startswith("2026-09-21 21:15  5m")
    ten = Record("COD", T0 + 10, T0 + 20, 1.0, 1.0, 1.0, 0.0, 1, 1, True, Status.MEASURING, "")
    shown = render_text([Held(1, rec(60, valid=True)), Held(2, ten)], TZ).splitlines()
    assert shown[3].startswith("2026-09-21 21:15:10  10s")


def test_a_date_alone_as_to_includes_that_day_in_every_command() -> None:
    """``--from 2026-11-01 --to 2026-11-30`` is the whole of November; a time is as given."""
    from protocol.record_filter import parse_time

    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    midnight_dec = dt.datetime(2026, 12, 1, tzinfo=tz).timestamp()
    assert parse_time("2026-11-30", tz, "--to", end=True) == midnight_dec
    assert parse_time("2026-11-30", tz, "--from") == midnight_dec - 86400
    assert parse_time("2026-11-30T00:00", tz, "--to", end=True) == midnight_dec - 86400
    assert parse_time("1790000000", tz, "--to", end=True) == 1790000000.0
