"""The agent's pipeline core with a clock the test moves: clock jumps both ways, an
unsynchronised clock, samples from the future, stack-gas normalisation at O2 >= 21 %, roll-ups
and resuming after a crash. The clock is a parameter, so nothing here waits."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from buffer import Store
from edge_agent.config.model import StationConfig
from edge_agent.config.reader import parse_config
from edge_agent.core.clock import ClockWatch
from edge_agent.core.pipeline import Pipeline
from edge_agent.daemon.agent import Agent
from protocol.model import Record, RecordFlag, Sample, Status

T0 = 1_790_000_000 - 1_790_000_000 % 3600  # an hour boundary


def config(extra: str = "", windows: str = "[10]",
           state_dir: str = "/nonexistent") -> StationConfig:
    doc = f"""
[station]
id = "T-1"
[agent]
state_dir = "{state_dir}"
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


# ------------------------------------------------------------------------------------------
# One record per window, never a silent hole: clock steps and restarts with the agent's own
# clock handling (Agent._check_clock, _resume, _flush_records) on a real outbox file. The test
# owns both clocks: wall (what the station believes) and monotonic (what really elapsed).


class Clocks:
    def __init__(self, wall: float) -> None:
        self.wall = wall
        self.mono = 1000.0

    def second(self) -> None:
        self.wall += 1.0
        self.mono += 1.0


class Station:
    """The agent's loop body, one second at a time, with the test's clocks and a real Store."""

    def __init__(self, tmp_path: Path, clocks: Clocks, extra: str = "") -> None:
        self.clocks = clocks
        cfg = config(extra, state_dir=str(tmp_path))
        self.agent = Agent(cfg, clock=lambda: clocks.wall, monotonic=lambda: clocks.mono,
                           synced=lambda: True)
        store = Store(tmp_path / "outbox.sqlite", lambda: clocks.wall)
        self.agent.store = store
        self.agent._resume(store, self.agent.pipeline)
        self.agent.watch.observe(clocks.mono, clocks.wall)

    def run(self, seconds: int) -> None:
        for _ in range(seconds):
            self.clocks.second()
            t = self.clocks.wall
            self.agent._feed("cems", [Sample("SO2", t, 100.0, Status.MEASURING),
                                      Sample("O2", t, 11.0, Status.MEASURING)])
            self.agent._check_clock()
            self.agent.held += self.agent.pipeline.tick(self.clocks.wall)
            self.agent._flush_records()
            self.agent._flush_samples()
        assert self.agent.held == []

    def stop(self) -> None:
        """SIGTERM: close the open windows, flush, close the file."""
        self.agent.held += self.agent.pipeline.close(self.clocks.wall)
        self.agent._flush_records()
        self.kill()

    def kill(self) -> None:
        """kill -9: what is committed stays, the open windows are simply gone."""
        assert self.agent.store is not None
        self.agent.store.close()


def stored(tmp_path: Path, width: int = 10) -> list[tuple[int, Record]]:
    with Store(tmp_path / "outbox.sqlite") as store:
        return store.windows(width)


def check_one_valid_record_per_window(held: list[tuple[int, Record]]) -> None:
    """Never two valid records of one window; a later one is invalid and says CLOCK_JUMP."""
    first: dict[tuple[str, int, int], int] = {}
    for seq, r in sorted(held):
        key = (r.channel, r.start, r.end)
        if key in first:
            assert not r.valid and r.flags & RecordFlag.CLOCK_JUMP, (seq, r, first[key])
        else:
            first[key] = seq
    valid = [(r.channel, r.start) for _, r in held if r.valid]
    assert len(valid) == len(set(valid))


def measured_windows(held: list[tuple[int, Record]], channel: str = "SO2") -> set[int]:
    return {r.start for _, r in held if r.channel == channel and r.n_valid > 0}


def test_backward_step_without_restart_never_counts_a_window_twice(tmp_path: Path) -> None:
    # S2: 40 s back, no restart. The windows measured again were already stored: the second
    # records keep the measurements but are invalid and flagged; nothing between is lost.
    clocks = Clocks(T0)
    st = Station(tmp_path, clocks)
    st.run(100)
    clocks.wall -= 40.0  # an NTP step back at wall T0 + 100
    st.run(80)
    st.stop()
    held = stored(tmp_path)
    check_one_valid_record_per_window(held)
    so2 = [(seq, r) for seq, r in held if r.channel == "SO2"]
    again = [r for _, r in so2 if T0 + 60 <= r.start < T0 + 100 and not r.valid]
    assert [r.start for r in again] == [T0 + 60, T0 + 70, T0 + 80, T0 + 90]
    assert all(r.flags & RecordFlag.CLOCK_JUMP and r.n_valid >= 9 for r in again)
    # every window the clock covered has a record, the ones measured once are valid
    assert measured_windows(held) == set(range(T0, T0 + 141, 10))
    assert all(r.valid for _, r in so2 if r.start >= T0 + 110 and r.end <= T0 + 130)


def test_backward_step_then_kill_and_restart_still_counts_no_window_twice(
        tmp_path: Path) -> None:
    # S2 across a restart: killed 10 s after the step back, the restarted agent (right clock)
    # must learn from the outbox which windows exist, not make them valid a second time.
    clocks = Clocks(T0)
    st = Station(tmp_path, clocks)
    st.run(100)
    clocks.wall -= 40.0
    st.run(10)
    st.kill()
    before_restart = max(seq for seq, _ in stored(tmp_path))
    clocks.second()
    second = Station(tmp_path, clocks)
    second.run(60)
    second.stop()
    held = stored(tmp_path)
    check_one_valid_record_per_window(held)
    # stored before the kill, ahead of the restarted clock: measured again, never valid again
    again = {r.start for _, r in held if r.channel == "SO2" and not r.valid}
    assert {T0 + 80, T0 + 90, T0 + 100} <= again
    assert all(r.flags & RecordFlag.CLOCK_JUMP for _, r in held
               if not r.valid and T0 + 80 <= r.start <= T0 + 100)
    assert measured_windows(held) >= set(range(T0, T0 + 130, 10))
    after = [r for seq, r in sorted(held) if r.channel == "SO2" and seq > before_restart]
    assert after[0].flags & RecordFlag.CLOCK_JUMP, "the first record after the restart"


def test_restart_after_the_clock_ran_ahead_loses_no_window(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    # S1: clock +300 s, back, restart. The outbox then holds windows in the future of the
    # right clock; the restarted agent must measure on, not wait silently until it gets there.
    clocks = Clocks(T0)
    st = Station(tmp_path, clocks)
    st.run(20)
    clocks.wall += 300.0  # wall T0 + 320 while real time is T0 + 20
    st.run(40)
    clocks.wall -= 300.0  # set right again: T0 + 60
    st.run(5)
    st.stop()
    clocks.second()
    restart = clocks.wall
    caplog.clear()
    second = Station(tmp_path, clocks)
    assert "clock_behind_stored_records" in caplog.text
    second.run(330)  # past the windows the fast clock made
    second.stop()
    held = stored(tmp_path)
    check_one_valid_record_per_window(held)
    # every window from the return of the clock to the end was measured, none is missing
    end = int(clocks.wall) - int(clocks.wall) % 10
    assert measured_windows(held) >= set(range(T0 + 60, end, 10))
    so2 = [r for _, r in held if r.channel == "SO2"]
    # the window the restart lands in was stored PARTIAL at the stop; the next one is the
    # first record of the restarted agent and says the clock moved
    (landed,) = [r for r in so2 if r.start <= restart < r.end]
    assert landed.flags & RecordFlag.PARTIAL
    (first,) = [r for r in so2 if r.start == landed.end]
    assert first.valid and first.flags & RecordFlag.CLOCK_JUMP
    # the real measurements in windows the fast clock had stored are kept, never counted
    again = sorted(r.start for r in so2 if T0 + 320 <= r.start < T0 + 360 and not r.valid)
    assert again == [T0 + 320, T0 + 330, T0 + 340, T0 + 350]
    # the windows in between (never stored) are valid and unflagged
    between = [r for r in so2 if first.end <= r.start and r.end <= T0 + 320]
    assert len(between) >= 20
    assert all(r.valid and not r.flags & RecordFlag.CLOCK_JUMP for r in between)


def test_pipeline_told_what_is_stored_makes_no_window_valid_twice_in_any_width() -> None:
    # The sans-IO core alone, with roll-ups: a step back of 40 s re-enters stored 10 s windows
    # and the stored (partial) minute. Second records are invalid and flagged; the minute's
    # second record is not fed the second 10 s records; nothing else is flagged.
    p = Pipeline(config("[[averaging.rollup]]\nwidth = 60\nfrom = 10\n"), utc_offset_s=0)
    p.clock_state(T0, True)
    watch = ClockWatch(2.0)
    watch.observe(0.0, T0)
    out: list[Record] = []
    for i in range(1, 101):
        feed_seconds(p, T0 + i - 1, T0 + i, now_offset=1.0)
        out += p.tick(T0 + i)
    jump = watch.observe(100.0, T0 + 60.0)
    assert jump is not None and jump.backwards
    out += p.jump(jump, [r for r in out if r.end > jump.at_wall])
    for i in range(1, 81):
        feed_seconds(p, T0 + 60 + i - 1, T0 + 60 + i, now_offset=1.0)
        out += p.tick(T0 + 60 + i)
    so2 = by_channel(out, "SO2")
    seen: set[tuple[int, int]] = set()
    for r in so2:
        if (r.start, r.end) in seen:
            assert not r.valid and r.flags & RecordFlag.CLOCK_JUMP, r
        elif r.valid:
            seen.add((r.start, r.end))
    minutes = [r for r in so2 if r.end - r.start == 60]
    # the minute cut short by the step (4 of 6 children: invalid anyway), then its second
    # record, fed only the 10 s window not stored before (110; 60..100 were): 1 of 6
    assert [(r.start, r.valid) for r in minutes] == [(T0, True), (T0 + 60, False),
                                                     (T0 + 60, False)]
    assert minutes[2].flags & RecordFlag.CLOCK_JUMP
    assert minutes[2].n_valid == 1
    tens = [r for r in so2 if r.end - r.start == 10]
    again = [r.start - T0 for r in tens if not r.valid]
    assert again == [100, 60, 70, 80, 90, 100]  # the partial cut at the step, then the re-made
    assert all(r.valid and not r.flags for r in tens if r.start >= T0 + 110)
