"""The agent's pipeline core with a clock the test moves: clock jumps both ways, an
unsynchronised clock, samples from the future, stack-gas normalisation at O2 >= 21 %, roll-ups
and resuming after a crash. The clock is a parameter, so nothing here waits."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edge_agent.clock import ClockWatch
from edge_agent.config import StationConfig, parse_config
from edge_agent.pipeline import Pipeline
from protocol.model import Record, RecordFlag, Sample, Status

T0 = 1_790_000_000 - 1_790_000_000 % 3600  # an hour boundary


def config(extra: str = "", windows: str = "[10]") -> StationConfig:
    doc = f"""
[station]
id = "T-1"
[agent]
state_dir = "/nonexistent"
[[bus]]
name = "lan"
host = "127.0.0.1"
[[device]]
name = "cems"
bus = "lan"
profile = "cems"
unit = 1
interval = 1.0
channels = ["SO2", "O2"]
[averaging]
windows = {windows}
grace_s = 1.0
{extra}
"""
    import tomllib

    return parse_config(tomllib.loads(doc), Path("/virtual/station.toml"))


def feed_seconds(p: Pipeline, t0: float, t1: float, so2: float = 100.0, o2: float = 11.0,
                 now_offset: float = 0.1) -> None:
    t = t0
    while t < t1:
        p.feed("cems", [Sample("SO2", t, so2, Status.MEASURING),
                        Sample("O2", t, o2, Status.MEASURING)], t + now_offset)
        t += 1.0


def by_channel(records: list[Record], channel: str) -> list[Record]:
    return [r for r in records if r.channel == channel]


def test_windows_close_on_time_with_the_clock_state_flagged() -> None:
    p = Pipeline(config(), utc_offset_s=0)
    p.clock_state(T0, True)
    feed_seconds(p, T0, T0 + 10)
    assert p.tick(T0 + 10.5) == []  # the grace has not passed
    (_o2, so2) = sorted(p.tick(T0 + 11.0), key=lambda r: r.channel)
    assert (so2.channel, so2.start, so2.end, so2.n_valid, so2.valid) == ("SO2", T0, T0 + 10, 10,
                                                                          True)
    assert so2.flags == RecordFlag.NONE
    p.clock_state(T0 + 12, False)  # NTP lost: records overlapping that time say so
    feed_seconds(p, T0 + 10, T0 + 20)
    assert all(r.flags & RecordFlag.CLOCK_UNSYNCED for r in p.tick(T0 + 21))
    p.clock_state(T0 + 25, None)  # cannot tell is not "synchronised"
    p.clock_state(T0 + 41, True)
    feed_seconds(p, T0 + 20, T0 + 60)
    flags = [(r.start, bool(r.flags & RecordFlag.CLOCK_UNSYNCED))
             for r in by_channel(p.tick(T0 + 61), "SO2")]
    assert flags == [(T0 + 20, True), (T0 + 30, True), (T0 + 40, True), (T0 + 50, False)]


def test_backward_jump_closes_windows_and_starts_fresh_ones_flagged() -> None:
    p = Pipeline(config(), utc_offset_s=0)
    p.clock_state(T0, True)
    watch = ClockWatch(2.0)
    watch.observe(0.0, T0)
    feed_seconds(p, T0, T0 + 15)
    out = p.tick(T0 + 15.2)
    assert [r.start for r in by_channel(out, "SO2")] == [T0]
    # the clock is set back one hour at monotonic 15.5
    jump = watch.observe(15.5, T0 + 15.5 - 3600)
    assert jump is not None and jump.backwards
    closed = p.jump(jump)
    (cut,) = by_channel(closed, "SO2")
    assert cut.start == T0 + 10 and cut.flags & RecordFlag.CLOCK_JUMP
    assert cut.flags & RecordFlag.PARTIAL and cut.n_valid == 5
    # samples of the new time line are averaged (not dropped as late), in fresh windows
    back = T0 + 15.5 - 3600
    feed_seconds(p, back + 0.5, back + 30)
    # a straggler stamped in the old time line is dropped, not put in a window from the future
    p.feed("cems", [Sample("SO2", T0 + 16, 1e6, Status.MEASURING)], back + 1)
    new = by_channel(p.tick(back + 31), "SO2")
    assert [r.start for r in new] == [T0 - 3600 + 10, T0 - 3600 + 20, T0 - 3600 + 30][:len(new)]
    assert new[0].flags & RecordFlag.CLOCK_JUMP  # the window the clock landed in
    assert not new[-1].flags & RecordFlag.CLOCK_JUMP
    assert all(r.mean == 100.0 for r in new if r.n_valid)
    assert all(r.end <= back + 31 for r in new), "no record of the future"


def test_forward_jump_makes_no_run_of_empty_windows() -> None:
    p = Pipeline(config(), utc_offset_s=0)
    watch = ClockWatch(2.0)
    watch.observe(0.0, T0)
    feed_seconds(p, T0, T0 + 5)
    jump = watch.observe(5.0, T0 + 5 + 86400)
    assert jump is not None and not jump.backwards
    closed = by_channel(p.jump(jump), "SO2")
    assert [(r.start, r.n_valid) for r in closed] == [(T0, 5)]
    assert closed[0].flags & RecordFlag.CLOCK_JUMP and closed[0].flags & RecordFlag.PARTIAL
    fwd = T0 + 5 + 86400
    feed_seconds(p, fwd, fwd + 20)
    after = by_channel(p.tick(fwd + 21), "SO2")
    assert len(after) == 2, "one day of empty windows would be 8640 records"
    assert after[0].flags & RecordFlag.CLOCK_JUMP


def test_a_sample_from_the_future_is_dropped() -> None:
    p = Pipeline(config(), utc_offset_s=0)
    kept = p.feed("cems", [Sample("SO2", T0 + 100, 1.0, Status.MEASURING),
                           Sample("O2", T0, 10.0, Status.MEASURING)], now=T0 + 0.5)
    assert [s.channel for s in kept] == ["O2"]


def test_o2_at_21_percent_makes_the_record_invalid_and_keeps_going(
        caplog: pytest.LogCaptureFixture) -> None:
    p = Pipeline(config("[[normalise]]\nchannels = [\"SO2\"]\no2_channel = \"O2\"\n"
                        "o2_ref = 6.0\n"), utc_offset_s=0)
    feed_seconds(p, T0, T0 + 10, so2=100.0, o2=11.0)
    feed_seconds(p, T0 + 10, T0 + 20, so2=5.0, o2=21.0)  # the stack is shut down: air
    feed_seconds(p, T0 + 20, T0 + 30, so2=100.0, o2=11.0)
    so2 = by_channel(p.tick(T0 + 31), "SO2")
    assert [r.valid for r in so2] == [True, False, True]
    assert so2[0].mean == pytest.approx(100.0 * 15.0 / 10.0)
    assert all(r.flags & RecordFlag.O2_NORMALISED for r in so2)
    assert "normalise_failed_record_invalid" in caplog.text


def test_rollups_and_partial_close_at_shutdown() -> None:
    p = Pipeline(config("[[averaging.rollup]]\nwidth = 60\nfrom = 10\n"), utc_offset_s=0)
    feed_seconds(p, T0, T0 + 65)
    out = p.tick(T0 + 65)
    hourly = [r for r in by_channel(out, "SO2") if r.end - r.start == 60]
    assert [(r.start, r.n_valid, r.valid) for r in hourly] == [(T0, 6, True)]
    closed = by_channel(p.close(T0 + 65.5), "SO2")
    assert {(r.end - r.start, bool(r.flags & RecordFlag.PARTIAL)) for r in closed} == {
        (10, True), (60, True)}


def test_resume_refeeds_kept_samples_and_never_makes_a_window_twice() -> None:
    first = Pipeline(config(), utc_offset_s=0)
    feed_seconds(first, T0, T0 + 15)
    emitted = first.tick(T0 + 11.5)
    assert {r.start for r in emitted} == {T0}
    # killed at T0 + 15: the window [T0+10, T0+20) was open; the store kept its raw samples
    kept = [Sample(c, T0 + 10 + i, v, Status.MEASURING) for i in range(5)
            for c, v in (("SO2", 100.0), ("O2", 11.0))]
    second = Pipeline(config(), utc_offset_s=0)
    second.resume({(10, "SO2"): T0 + 10, (10, "O2"): T0 + 10},
                  [*kept, Sample("SO2", T0 + 3, 5.0, Status.MEASURING)], [])
    feed_seconds(second, T0 + 17, T0 + 30)
    so2 = by_channel(second.tick(T0 + 31), "SO2")
    assert [(r.start, r.n_valid) for r in so2] == [(T0 + 10, 8), (T0 + 20, 10)]
    assert not any(math.isnan(r.mean) for r in so2)
