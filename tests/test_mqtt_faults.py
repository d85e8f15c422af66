"""Faults mid-drain, each its own test, each ending with every record stored exactly once.

The drain is paced (``--max-packets-per-s``) so "mid-drain" is a fact, not a race: each test
checks that the fault hit while records were still missing at the centre.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.model import Record
from protocol.payload import same_record
from tests.mqtt_world import StationHandle, World, make_records, wait_for, world_at

N = 3000
PACED = ("--max-packet", "8192", "--max-packets-per-s", "15", "--backoff-cap", "2")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from world_at(tmp_path)


def filled(world: World, sid: str = "DNI-F01") -> tuple[StationHandle, list[int], list[Record]]:
    station = world.add_station(sid)
    records = make_records(N, salt=3)
    return station, station.fill(records), records


def assert_exactly_once(
    world: World, station: StationHandle, seqs: list[int], records: list[Record]
) -> None:
    stored = world.stored(station.station_id)
    assert [seq for seq, _ in stored] == seqs
    assert all(same_record(got, want) for (_, got), want in zip(stored, records, strict=True))
    assert station.unacked() == 0


def mid_drain(world: World, sid: str) -> None:
    wait_for(lambda: world.stored_count(sid) >= 300, 30, "the drain to get going")
    assert world.stored_count(sid) < N, "the fault must hit mid-drain"


def drained(world: World, sid: str, timeout: float = 90) -> None:
    wait_for(lambda: world.stored_count(sid) >= N, timeout, f"all {N} records at the centre")


def test_broker_stopped_30s_mid_drain_and_restarted(world: World) -> None:
    station, seqs, records = filled(world)
    world.start_centre(world.centre_config(reconnect_max_s=2))
    uplink = world.start_uplink(station, "--until-drained", *PACED)
    mid_drain(world, station.station_id)
    world.broker.stop()
    outage_s = 30.0  # the acceptance figure; only this test waits it out
    held = world.stored_count(station.station_id)
    with pytest.raises(AssertionError):  # nothing can move while the broker is down
        wait_for(
            lambda: world.stored_count(station.station_id) > held,
            outage_s,
            "records during the outage",
        )
    world.broker.start()
    assert uplink.wait(120) == 0, world.log("uplink-DNI-F01.log")
    assert_exactly_once(world, station, seqs, records)
    assert "uplink_disconnected" in world.log("uplink-DNI-F01.log")
    assert world.security_events() == []


def test_centre_killed_and_restarted(world: World) -> None:
    station, seqs, records = filled(world)
    config = world.centre_config()
    centre = world.start_centre(config)
    uplink = world.start_uplink(station, "--until-drained", "--ack-timeout", "5", *PACED)
    mid_drain(world, station.station_id)
    os.kill(centre.pid, signal.SIGKILL)
    centre.wait()
    world.start_centre(config, log_name="centre-2.log")
    assert uplink.wait(120) == 0, world.log("uplink-DNI-F01.log")
    assert_exactly_once(world, station, seqs, records)
    assert world.security_events() == []


def test_uplink_sigkilled_mid_drain_and_restarted(world: World) -> None:
    station, seqs, records = filled(world)
    world.start_centre()
    first = world.start_uplink(station, *PACED)
    mid_drain(world, station.station_id)
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert station.unacked() > 0
    second = world.start_uplink(station, "--until-drained", *PACED, log_name="uplink-2.log")
    assert second.wait(120) == 0, world.log("uplink-2.log")
    assert_exactly_once(world, station, seqs, records)
    assert world.security_events() == []


def test_lost_acks_make_the_station_resend_and_the_centre_deduplicates(world: World) -> None:
    station, seqs, records = filled(world)
    world.start_centre(world.centre_config(drop_acks=5))
    uplink = world.start_uplink(
        station, "--until-drained", "--ack-timeout", "2", "--max-packet", "8192"
    )
    assert uplink.wait(120) == 0, world.log("uplink-DNI-F01.log")
    assert_exactly_once(world, station, seqs, records)
    assert world.log("centre.log").count("ack_dropped_for_test") == 5
    assert "ack_timeout_requeued" in world.log("uplink-DNI-F01.log")
    assert "event=duplicate_records" in world.log("centre.log")
    assert world.security_events() == []


def test_resend_request_for_a_gap_makes_the_station_resend(world: World) -> None:
    station, seqs, records = filled(world)
    world.start_centre(world.centre_config(lose_packets=1, gap_grace_s=0.5, gap_retry_s=5))
    # An ack timeout far beyond the test: only the centre's request can bring the gap back.
    uplink = world.start_uplink(
        station, "--until-drained", "--ack-timeout", "3600", "--max-packet", "8192"
    )
    assert uplink.wait(60) == 0, world.log("uplink-DNI-F01.log")
    assert_exactly_once(world, station, seqs, records)
    assert "event=resend_request" in world.log("centre.log")
    assert "event=resend_requested" in world.log("uplink-DNI-F01.log")
    assert "ack_timeout_requeued" not in world.log("uplink-DNI-F01.log")
