"""One topics module for bundle, receiver, broker ACL and uplink; the receiver's reconnect
delays are protocol.backoff's (equal jitter, doubling from 0.5 s up to reconnect_max_s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from centre.broker import render_acl
from centre.receiver import Receiver, ReceiverSettings
from protocol.topics import STATE_FILTER, UP_FILTER, Topics, down_topic, shared, station_of


def test_the_station_topics() -> None:
    t = Topics.for_station("HN-WW-001")
    assert (t.up, t.down, t.state) == (
        "quantrac/v1/HN-WW-001/up", "quantrac/v1/HN-WW-001/down", "quantrac/v1/HN-WW-001/state"
    )
    assert down_topic("HN-WW-001") == t.down
    assert shared("g", UP_FILTER) == "$share/g/quantrac/v1/+/up"
    assert STATE_FILTER == "quantrac/v1/+/state"


@pytest.mark.parametrize(("topic", "station"), [
    ("quantrac/v1/S1/up", "S1"),
    ("quantrac/v1/S1/state", "S1"),
    ("quantrac/v1//up", None),
    ("quantrac/v2/S1/up", None),
    ("other/v1/S1/up", None),
    ("quantrac/v1/S1/up/x", None),
    ("quantrac/v1/S1", None),
])
def test_station_of(topic: str, station: str | None) -> None:
    assert station_of(topic) == station


def test_the_acl_is_the_station_topics_with_the_user_for_the_id() -> None:
    own = Topics.for_station("%u")
    acl = render_acl(["centre:receiver"]).splitlines()
    for line in (f"pattern write {own.up}", f"pattern write {own.state}",
                 f"pattern read {own.down}", f"topic read {UP_FILTER}",
                 f"topic read {STATE_FILTER}"):  # fmt: skip
        assert line in acl


def _receiver(clock: list[float], cap: float) -> Receiver:
    p = Path("/nonexistent")
    settings = ReceiverSettings("localhost", 1, p, p, p, reconnect_max_s=cap)
    return Receiver(settings, cast(Any, None), cast(Any, None), cast(Any, None),
                    clock=lambda: clock[0])  # fmt: skip


@pytest.mark.parametrize(("cap", "ceilings"), [
    (30.0, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
    (2.0, [0.5, 1.0, 2.0, 2.0]),
    (0.0, [0.001, 0.001]),  # the config allows 0: retry (nearly) at once
])
def test_receiver_reconnect_delays(cap: float, ceilings: list[float]) -> None:
    now = [1000.0]
    rx = _receiver(now, cap)
    for ceiling in ceilings:
        rx._schedule_retry()
        wait = rx._next_attempt - now[0]
        assert ceiling / 2 <= wait <= ceiling
    # connected again: the delays start over
    rx._backoff.reset()
    rx._schedule_retry()
    assert rx._next_attempt - now[0] <= ceilings[0]
