"""End to end over a real Mosquitto: two provisioned stations drain their outboxes to the centre."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.model import Record
from protocol.payload import same_record
from tests.mqtt_world import StationHandle, World, make_records, world_at


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from world_at(tmp_path)


def assert_exactly_once(
    world: World, station: StationHandle, seqs: list[int], records: list[Record]
) -> None:
    stored = world.stored(station.station_id)
    assert [seq for seq, _ in stored] == seqs, "every seq stored exactly once"
    bad = [
        seq for (seq, got), want in zip(stored, records, strict=True) if not same_record(got, want)
    ]
    assert bad == [], f"records differ at seqs {bad[:10]}"


def test_two_stations_10000_records_arrive_exactly_once_in_order(world: World) -> None:
    a = world.add_station("HCM-A01")
    b = world.add_station("HCM-B02")
    recs_a, recs_b = make_records(5000, salt=1), make_records(5000, salt=2)
    seqs_a, seqs_b = a.fill(recs_a), b.fill(recs_b)
    world.start_centre()
    ua = world.start_uplink(a, "--until-drained")
    ub = world.start_uplink(b, "--until-drained")
    assert ua.wait(120) == 0, world.log("uplink-HCM-A01.log")
    assert ub.wait(120) == 0, world.log("uplink-HCM-B02.log")
    assert_exactly_once(world, a, seqs_a, recs_a)
    assert_exactly_once(world, b, seqs_b, recs_b)
    # In order: the centre received each station's records oldest first.
    conn = sqlite3.connect(world.store_path)
    for sid in ("HCM-A01", "HCM-B02"):
        received = [
            r[0]
            for r in conn.execute(
                "SELECT received FROM records WHERE station = ? ORDER BY seq", (sid,)
            )
        ]
        assert received == sorted(received)
    conn.close()
    assert world.security_events() == []
    assert a.unacked() == 0 and b.unacked() == 0


def test_two_receivers_split_the_load_through_the_shared_subscription(world: World) -> None:
    stations = [world.add_station(f"BDG-{i:03d}") for i in range(3)]
    data = {
        s.station_id: (s.fill(make_records(3000, salt=i)), make_records(3000, salt=i))
        for i, s in enumerate(stations)
    }
    one = world.start_centre(world.centre_config("r1.toml", client_id="receiver-1"), "r1.log")
    two = world.start_centre(world.centre_config("r2.toml", client_id="receiver-2"), "r2.log")
    uplinks = [world.start_uplink(s, "--until-drained", "--max-packet", "8192") for s in stations]
    for up in uplinks:
        assert up.wait(120) == 0
    for s in stations:
        assert_exactly_once(world, s, *data[s.station_id])
    for proc in (one, two):
        proc.terminate()
        proc.wait(10)
    for name in ("r1.log", "r2.log"):
        line = next(x for x in world.log(name).splitlines() if "receiver_stopped" in x)
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        assert int(fields["stored"]) > 0, f"{name} took no share: {line}"
    assert world.security_events() == []
