"""An exceedance reaches the centre at once, ahead of a backlog (issue 15 item 4).

Real world (tests/mqtt_world.py): the centre's receiver and a station's uplink as processes,
Mosquitto with the centre's certificates. The outbox holds 2000 ordinary records (a day's
backlog after a link cut) and then one record flagged EXCEEDANCE; the uplink starts with one
packet in flight. Oldest first, the exceedance would be the last packet; it must be the first
packet the centre stores, and then every record must still arrive exactly once. The centre's
``stations`` summary counts it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from centre.query import render_stations
from centre.store import CentreStore
from protocol.model import RecordFlag
from protocol.record_filter import zone
from tests.mqtt_world import World, make_records, wait_for, world_at


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from world_at(tmp_path)


def test_the_exceedance_is_the_first_packet_the_centre_stores(world: World) -> None:
    station = world.add_station("HCM-EX1")
    backlog = make_records(2001)
    over = replace(backlog[-1], flags=RecordFlag.EXCEEDANCE)
    assert over.valid
    seqs = station.fill([*backlog[:-1], over])
    world.start_centre()
    uplink = world.start_uplink(station, "--until-drained", "--window", "1")
    assert uplink.wait(180) == 0, world.log(f"uplink-{station.station_id}.log")
    wait_for(lambda: world.stored_count(station.station_id) == len(seqs), 60,
             "every record at the centre")
    conn = sqlite3.connect(f"file:{world.store_path}?mode=ro", uri=True)
    try:
        first = conn.execute("SELECT first_seq, last_seq FROM packets WHERE station = ? "
                             "ORDER BY received LIMIT 1", (station.station_id,)).fetchone()
    finally:
        conn.close()
    assert tuple(first) == (seqs[-1], seqs[-1])
    stored = world.stored(station.station_id)
    assert [s for s, _ in stored] == seqs
    assert stored[-1][1].flags & RecordFlag.EXCEEDANCE
    assert "exceedance_sent_first" in world.log(f"uplink-{station.station_id}.log")
    with CentreStore(world.store_path) as store:
        [summary] = store.summaries()
    assert summary.exceedances == 1
    table = render_stations([summary], 0.0, zone("Asia/Ho_Chi_Minh")).splitlines()
    assert table[0].split()[-1] == "exceed" and table[1].split()[-1] == "1"
