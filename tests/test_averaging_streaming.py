"""Streaming mode: windows close on the passed-in clock, grace, late drops, shutdown; and it
agrees with batch mode on the same samples."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.averaging import (
    CFR_60_13_H,
    DEFAULT_UTC_OFFSET_S,
    InputError,
    StreamChannel,
    StreamingAverager,
    StreamingRollup,
    aggregate,
    rollup,
    to_records,
)
from protocol.model import Record, RecordFlag, Sample, Status

BASE = 1_700_006_400
SO2 = StreamChannel("SO2", "ppm", 1.0)
O2 = StreamChannel("O2", "%", 10.0)


def feed_seconds(avg: StreamingAverager, channel: str, start: float, stop: float,
                 step: float = 1.0, value: float = 1.0) -> None:  # fmt: skip
    for t in np.arange(start, stop, step):
        avg.feed(Sample(channel, float(t), value, Status.MEASURING))


def test_window_closes_at_end_plus_grace_not_before() -> None:
    avg = StreamingAverager([SO2], width_s=300, grace_s=30.0)
    feed_seconds(avg, "SO2", BASE, BASE + 300)
    assert avg.advance(BASE + 300) == []
    assert avg.advance(BASE + 329.999) == []
    (r,) = avg.advance(BASE + 330)
    assert (r.channel, r.start, r.end, r.n_valid, r.n_expected, r.valid) == (
        "SO2", BASE, BASE + 300, 300, 300, True)  # fmt: skip
    assert r.flags == RecordFlag.NONE
    assert avg.advance(BASE + 331) == []  # closed once


def test_late_sample_inside_grace_counts(caplog: pytest.LogCaptureFixture) -> None:
    avg = StreamingAverager([SO2], width_s=300, grace_s=30.0)
    feed_seconds(avg, "SO2", BASE, BASE + 299)  # t = BASE+299 is missing ...
    assert avg.advance(BASE + 310) == []
    avg.feed(Sample("SO2", BASE + 299.0, 1.0, Status.MEASURING))  # ... and arrives 11 s late
    (r,) = avg.advance(BASE + 330)
    assert r.n_valid == 300 and r.flags == RecordFlag.NONE
    assert not [rec for rec in caplog.records if rec.msg == "averaging_late_sample_dropped"]


def test_sample_after_grace_is_logged_dropped_and_flagged(caplog: pytest.LogCaptureFixture) -> None:
    avg = StreamingAverager([SO2], width_s=300, grace_s=30.0)
    feed_seconds(avg, "SO2", BASE, BASE + 300)
    assert len(avg.advance(BASE + 330)) == 1
    feed_seconds(avg, "SO2", BASE + 300, BASE + 600)
    with caplog.at_level(logging.WARNING, logger="quantrac.averaging.streaming"):
        avg.feed(Sample("SO2", BASE + 100.0, 99.0, Status.MEASURING))
    (log,) = [rec for rec in caplog.records if rec.msg == "averaging_late_sample_dropped"]
    assert (log.__dict__["channel"], log.__dict__["t"], log.__dict__["window_start"]) == (
        "SO2", BASE + 100.0, BASE)  # fmt: skip
    (second,) = avg.advance(BASE + 630)
    assert second.start == BASE + 300 and second.mean == 1.0  # the 99 went nowhere
    assert second.flags == RecordFlag.LATE_DROPPED
    feed_seconds(avg, "SO2", BASE + 600, BASE + 900)
    (third,) = avg.advance(BASE + 930)
    assert third.flags == RecordFlag.NONE  # flagged once


def test_silent_channel_still_closes_windows_as_offline() -> None:
    avg = StreamingAverager([SO2, O2], width_s=300, grace_s=30.0)
    feed_seconds(avg, "SO2", BASE, BASE + 900)
    avg.advance(BASE)  # O2 never answers; its windows start from this first clock tick
    out = avg.advance(BASE + 930)
    so2 = [r for r in out if r.channel == "SO2"]
    o2 = [r for r in out if r.channel == "O2"]
    assert [r.start for r in so2] == [r.start for r in o2] == [BASE, BASE + 300, BASE + 600]
    assert all(r.valid for r in so2)
    assert all(r.status == Status.OFFLINE and r.n_valid == 0 and not r.valid for r in o2)
    assert all(math.isnan(r.mean) for r in o2) and o2[0].n_expected == 30
    assert [r.start for r in out] == sorted(r.start for r in out)  # oldest first


def test_close_all_flags_the_unfinished_window_partial() -> None:
    avg = StreamingAverager([SO2], width_s=300, grace_s=30.0)
    feed_seconds(avg, "SO2", BASE, BASE + 420)
    out = avg.close_all(BASE + 420.5)
    assert [(r.start, r.n_valid, r.flags) for r in out] == [
        (BASE, 300, RecordFlag.NONE),  # over, merely inside its grace: complete
        (BASE + 300, 120, RecordFlag.PARTIAL),
    ]
    assert not out[1].valid and out[1].n_expected == 300
    assert avg.advance(BASE + 10_000) != []  # the averager keeps working after a close_all


def test_first_sample_may_be_preceded_by_an_earlier_one_inside_grace() -> None:
    avg = StreamingAverager([SO2], width_s=300, grace_s=30.0)
    avg.feed(Sample("SO2", BASE + 301.0, 2.0, Status.MEASURING))
    avg.feed(Sample("SO2", BASE + 299.0, 1.0, Status.MEASURING))  # not yet closed: counts
    out = avg.advance(BASE + 630)
    assert [(r.start, r.mean) for r in out] == [(BASE, 1.0), (BASE + 300, 2.0)]


def test_unknown_channel_and_bad_time_are_errors() -> None:
    avg = StreamingAverager([SO2], width_s=300)
    with pytest.raises(InputError, match="'CO' is not configured"):
        avg.feed(Sample("CO", BASE, 1.0, Status.MEASURING))
    with pytest.raises(InputError, match="t=nan"):
        avg.feed(Sample("SO2", math.nan, 1.0, Status.MEASURING))
    with pytest.raises(InputError, match="grace_s"):
        StreamingAverager([SO2], width_s=300, grace_s=-1.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 3 * 3600, allow_nan=False),
            st.one_of(st.floats(-50, 50), st.just(math.nan)),
            st.sampled_from(list(Status)),
        ),
        max_size=80,
    ),
    st.sampled_from([60, 300, 900, 3600]),
)
def test_streaming_agrees_with_batch(raw: list[tuple[float, float, Status]], width: int) -> None:
    raw.sort(key=lambda r: r[0])
    spec = StreamChannel("NOx", "ppm", 60.0)
    avg = StreamingAverager([spec], width_s=width, grace_s=5.0, utc_offset_s=DEFAULT_UTC_OFFSET_S)
    avg.advance(BASE)
    streamed: list[Record] = []
    for dt, value, status in raw:
        streamed += avg.advance(BASE + dt)
        avg.feed(Sample("NOx", BASE + dt, value, status))
    streamed += avg.advance(BASE + 4 * 3600)
    stats = aggregate(
        [BASE + r[0] for r in raw], [r[1] for r in raw], [int(r[2]) for r in raw],
        width_s=width, period_s=60.0, utc_offset_s=DEFAULT_UTC_OFFSET_S, start=BASE,
        end=streamed[-1].end, channel="NOx",
    )  # fmt: skip
    batch = to_records(stats, "NOx", "ppm")
    assert len(streamed) == len(batch)
    for s, b in zip(streamed, batch, strict=True):
        assert repr(s) == repr(b)  # repr: NaN == NaN


def test_streaming_rollup_agrees_with_batch_rollup() -> None:
    children = [
        Record("SO2", BASE + 300 * k, BASE + 300 * (k + 1), float(k), k - 1.0, k + 1.0, 0.1,
               300, 300, k % 5 != 0, Status.MEASURING, "mg/Nm3",
               RecordFlag.MG_PER_NM3)
        for k in range(36)
    ]
    roll = StreamingRollup(width_s=3600, child_width_s=300, grace_s=120.0, rule=CFR_60_13_H)
    hours: list[Record] = []
    for child in children:
        hours += roll.advance(child.end + 30)
        roll.feed(child)
    hours += roll.advance(children[-1].end + 120)
    assert [h.start for h in hours] == [BASE, BASE + 3600, BASE + 7200]
    assert hours == rollup(children, width_s=3600, rule=CFR_60_13_H)
    assert all(h.flags == RecordFlag.MG_PER_NM3 for h in hours)
    with pytest.raises(InputError, match="do not tile"):
        StreamingRollup(width_s=3600, child_width_s=3600)
    with pytest.raises(InputError, match="record of 3600 s"):
        roll.feed(hours[0])
    with pytest.raises(InputError, match="unit 'ppm' after 'mg/Nm3'"):
        roll.feed(Record("SO2", BASE + 3 * 3600, BASE + 3 * 3600 + 300, 1.0, 1.0, 1.0, 0.0,
                         1, 300, False, Status.MEASURING, "ppm"))  # fmt: skip


def test_streaming_rollup_late_child_and_partial_parent(caplog: pytest.LogCaptureFixture) -> None:
    roll = StreamingRollup(width_s=3600, child_width_s=300, grace_s=60.0)
    child = Record("CO", BASE, BASE + 300, 1.0, 1.0, 1.0, 0.0, 300, 300, True, Status.MEASURING,
                   "ppm")  # fmt: skip
    roll.feed(child)
    (hour,) = roll.advance(BASE + 3660)
    assert (hour.n_valid, hour.valid) == (1, False)
    roll.feed(child)  # its hour has closed
    assert any(r.msg == "averaging_late_sample_dropped" for r in caplog.records)
    (partial,) = roll.close_all(BASE + 4000)
    assert partial.flags == RecordFlag.LATE_DROPPED | RecordFlag.PARTIAL
    assert partial.n_valid == 0 and partial.status == Status.OFFLINE
