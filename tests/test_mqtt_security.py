"""Security over the real broker and the real centre process, each threat its own test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from buffer import Store
from centre import authority
from protocol.envelope import Command, key_id, ranges_body, sign_command
from protocol.model import Record
from tests.mqtt_world import (
    StationHandle,
    World,
    make_records,
    publish_as,
    seal_as,
    wait_for,
    world_at,
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from world_at(tmp_path)


def pairs(n: int, first: int = 1, salt: int = 0) -> list[tuple[int, Record]]:
    return list(zip(range(first, first + n), make_records(n, salt), strict=True))


def send(world: World, station: StationHandle, topic_station: str, packet: bytes) -> None:
    sd = station.state_dir
    publish_as(world, sd / "tls.crt", sd / "tls.key", f"quantrac/v1/{topic_station}/up", packet)


def logged(world: World, reason: str, station: str) -> bool:
    return f"event=security_event reason={reason} station={station}" in world.log("centre.log")


def test_a_station_certificate_cannot_publish_on_another_stations_topic(world: World) -> None:
    a = world.add_station("HNI-A01")
    b = world.add_station("HNI-B02")
    world.start_centre()
    send(world, a, "HNI-B02", seal_as(b, pairs(10, salt=5)))  # B's own valid packet, A's cert
    send(world, a, "HNI-A01", seal_as(a, pairs(10)))  # then a legitimate one, same client
    wait_for(lambda: world.stored_count("HNI-A01") == 10, 20, "A's own packet at the centre")
    # The broker delivers one client's messages in order: had the first passed, it would be
    # in the store (or the security log) before the second.
    assert world.stored_count("HNI-B02") == 0
    assert world.security_events() == []
    assert "HNI-B02" not in world.log("centre.log")


def test_replayed_packet_is_rejected_and_logged(world: World) -> None:
    a = world.add_station("HNI-A01")
    world.start_centre()
    packet = seal_as(a, pairs(10))
    send(world, a, "HNI-A01", packet)
    wait_for(lambda: world.stored_count("HNI-A01") == 10, 20, "the original packet stored")
    send(world, a, "HNI-A01", packet)
    wait_for(lambda: ("HNI-A01", "replay") in world.security_events(), 20, "the replay event")
    assert logged(world, "replay", "HNI-A01")
    assert world.stored_count("HNI-A01") == 10


def test_tampered_packets_are_rejected_and_logged(world: World) -> None:
    a = world.add_station("HNI-A01")
    world.start_centre()
    body = bytearray(seal_as(a, pairs(10)))
    body[-1] ^= 0x01  # a byte of the sealed body (the AEAD tag)
    header = bytearray(seal_as(a, pairs(10)))
    header[40] ^= 0x01  # a byte of the clear header (created time), bound through HPKE info
    send(world, a, "HNI-A01", bytes(body))
    send(world, a, "HNI-A01", bytes(header))
    wait_for(lambda: len(world.security_events()) == 2, 20, "two security events")
    assert world.security_events() == [("HNI-A01", "decrypt_failed")] * 2
    assert logged(world, "decrypt_failed", "HNI-A01")
    assert world.stored_count("HNI-A01") == 0


def test_packet_from_a_revoked_station_is_rejected_and_logged(world: World) -> None:
    a = world.add_station("HNI-A01")
    world.start_centre()
    send(world, a, "HNI-A01", seal_as(a, pairs(10)))
    wait_for(lambda: world.stored_count("HNI-A01") == 10, 20, "a packet before revocation")
    authority.revoke(world.centre, "HNI-A01")
    send(world, a, "HNI-A01", seal_as(a, pairs(10, first=11)))
    wait_for(lambda: ("HNI-A01", "revoked") in world.security_events(), 20, "the revoked event")
    assert logged(world, "revoked", "HNI-A01")
    assert world.stored_count("HNI-A01") == 10


def test_forged_commands_are_ignored_and_nothing_leaves_the_outbox(world: World) -> None:
    a = world.add_station("HNI-A01")
    a.fill(make_records(500))
    uplink = world.start_uplink(a)  # no centre: only the commands below can reach it

    def in_flight() -> int:
        with Store(a.outbox) as store:
            return store.status().in_flight

    wait_for(lambda: in_flight() == 500, 20, "the records sent and waiting for an ack")
    real = world.centre.signing_private
    mallory = Ed25519PrivateKey.generate()
    now_ms = int(time.time() * 1000)
    body = ranges_body([(1, 500)])
    other_key = sign_command(Command("ack", "HNI-A01", 10, now_ms, body), mallory)
    # Same bytes but claiming the centre's key id: the signature must still fail.
    claimed = bytearray(other_key)
    claimed[4:12] = key_id(real.public_key())
    stale = sign_command(Command("ack", "HNI-A01", 11, now_ms - 3 * 86400_000, body), real)
    garbage = b"QC\x01\x01" + bytes(200)
    down = "quantrac/v1/HNI-A01/down"
    cert = world.receiver_cert  # whoever can write the down topic still cannot sign
    for forged in (other_key, bytes(claimed), stale, garbage):
        publish_as(world, cert.cert, cert.key, down, forged)
    log = f"uplink-{a.station_id}.log"
    wait_for(
        lambda: world.log(log).count("event=command_rejected") == 4, 20, "four rejected commands"
    )
    for reason in ("unknown_key", "bad_signature", "stale_command", "malformed"):
        assert f"reason={reason}" in world.log(log)
    assert a.unacked() == 500
    # The control: the same ack, genuinely signed by the centre, is obeyed.
    genuine = sign_command(Command("ack", "HNI-A01", 12, now_ms, body), real)
    publish_as(world, cert.cert, cert.key, down, genuine)
    wait_for(lambda: a.unacked() == 0, 20, "the genuine ack obeyed")
    assert uplink.poll() is None


def test_another_stations_packet_on_ones_own_topic_is_rejected(world: World) -> None:
    a = world.add_station("HNI-A01")
    b = world.add_station("HNI-B02")
    world.start_centre()
    send(world, a, "HNI-A01", seal_as(b, pairs(10)))  # B's genuine packet, relayed by A
    wait_for(
        lambda: ("HNI-A01", "station_mismatch") in world.security_events(), 20, "the mismatch event"
    )
    assert logged(world, "station_mismatch", "HNI-A01")
    assert world.stored_count() == 0
