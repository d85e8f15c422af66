"""A receiver sends each ack when its packet commits, not when the broker confirms earlier acks.

The storm this guards (issue 18, ``bench/centre_scale.py``): the broker writes its PUBACKs for
the receiver's acks on the same connection as the packets it hands the receiver, behind the
ones already queued there, and the receiver reads that connection in order. With paho's window
of unconfirmed QoS 1 publishes limited (it was 100, as many as the broker keeps in flight
towards the receiver), a PUBACK late by more than the window held the next ack back, each ack
let out then waited as long for its own PUBACK, and acks left at the end of the drain, past
the stations' ack timeouts. The test looks for acks held back that way: a backlog arrives
while the receiver's loop runs flat out, the loop runs until every packet is stored, then not
at all. An ack paho still holds back can no longer leave; one already written reaches the
station. Whether the stall starts is a race (with the window of 100, one 500-packet backlog
stalled in 6 of 7 runs here), hence two backlogs in a row: the test failed in 6 of 6 runs on
the receiver before the fix and passes in ~5 s after it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from centre import authority
from centre.receiver import Receiver, ReceiverSettings
from centre.store import CentreStore
from protocol.envelope import open_command, parse_ranges
from protocol.mqtt_client import tls_client
from tests.mqtt_world import World, make_records, seal_as, wait_for, world_at

ROUNDS = 2
PACKETS = 500  # a backlog: five windows of the old limit
RECORDS = 100  # a packet's records (a storm's are 64 KiB, ~800)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from world_at(tmp_path)


def test_acks_of_a_backlog_leave_as_each_packet_commits(world: World) -> None:
    station = world.add_station("ACKW-01")
    ident = station.identity()
    total = ROUNDS * PACKETS * RECORDS
    pairs = list(enumerate(make_records(total), start=1))
    packets = [seal_as(station, pairs[i : i + RECORDS]) for i in range(0, total, RECORDS)]

    centre = authority.load(world.centre_dir)
    registry = centre.registry()
    store = CentreStore(world.store_path)
    cert = world.broker.receivers["receiver-1"]
    settings = ReceiverSettings(
        world.broker.host, world.broker.port, world.broker.ca_path, cert.cert, cert.key,
        client_id="receiver-1", group="ackw",
    )  # fmt: skip
    packet_key = centre.packet_private
    receiver = Receiver(
        settings, store, lambda data: registry.open_packet(data, packet_key),
        centre.signing_private,
    )  # fmt: skip

    acked: set[int] = set()
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(client: object, userdata: object, msg: object) -> None:
        payload = bytes(msg.payload)  # type: ignore[attr-defined]
        cmd = open_command(payload, ident.centre_signing_public, ident.station_id, 0)
        with lock:
            for first, last in parse_ranges(cmd.body):
                acked.update(range(first, last + 1))

    # the station's side: its own certificate, publishing up, reading its acks on down
    st = tls_client(ident.station_id, ca_cert=ident.ca_cert_path, cert=ident.cert_path,
                    key=ident.tls_key_path, persistent=False, max_inflight=0)  # fmt: skip
    st.on_connect = lambda c, u, f, rc, p: c.subscribe(ident.topics.down, qos=1)
    st.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    st.on_message = on_message
    st.connect(world.broker.host, world.broker.port)
    st.loop_start()
    try:
        assert subscribed.wait(20), "the station could not subscribe to its acks"
        # the station's retained birth message reaches the receiver's store once the
        # receiver's subscriptions (state and, in the same SUBSCRIBE, up) are in place
        st.publish(ident.topics.state, b'{"state": "online"}', qos=1, retain=True)
        deadline = time.monotonic() + 20
        while ident.station_id not in store.station_states():
            assert time.monotonic() < deadline, "the receiver did not subscribe in 20 s"
            receiver.step()
        for r in range(1, ROUNDS + 1):
            # a backlog at once, while the receiver's loop runs flat out (as `quantrac
            # centre serve` runs it); once all of it is stored, the loop stops
            for data in packets[(r - 1) * PACKETS : r * PACKETS]:
                st.publish(ident.topics.up, data, qos=1)
            deadline = time.monotonic() + 60
            while receiver.stats.packets < r * PACKETS:
                assert time.monotonic() < deadline, f"{receiver.stats.packets} packets in 60 s"
                receiver.step()
            assert receiver.stats.records_stored == r * PACKETS * RECORDS
            # no receiver.step() now: only acks already on the wire can arrive
            wait_for(lambda: len(acked) >= r * PACKETS * RECORDS, 20,  # noqa: B023
                     f"backlog {r}'s acks, without the receiver's loop running")  # fmt: skip
        assert acked == set(range(1, total + 1))
    finally:
        st.disconnect()
        st.loop_stop()
        receiver.close()
        store.close()
        registry.close()
