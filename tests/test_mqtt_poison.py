"""One station's poisoned packets over the real broker do not stop the real centre (issue 10).

Before the range and plausibility checks, a genuine packet of station A with a seq >= 2**63
made ``ingest`` raise ``OverflowError``; the exception left paho's callback, the receiver
exited before its PUBACK, and the broker handed the same packet to it again after every
restart. Here A's poison (C1 integers the store cannot hold, a C2 year-10000 window, C3
impossible values) goes first, B's packet right after; then the receiver is restarted with
more poison queued for it, and keeps storing B.
"""

from __future__ import annotations

import dataclasses
import math
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.envelope import (
    SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305,
    VERSION,
    Header,
    encode_records,
    seal,
)
from protocol.model import Record
from tests.mqtt_world import StationHandle, World, make_records, publish_as, wait_for, world_at
from tests.mqtt_world import seal_as as genuine


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from world_at(tmp_path)


def pairs(n: int, first: int = 1, salt: int = 0) -> list[tuple[int, Record]]:
    return list(zip(range(first, first + n), make_records(n, salt), strict=True))


def send(world: World, station: StationHandle, packet: bytes) -> None:
    sd = station.state_dir
    publish_as(
        world, sd / "tls.crt", sd / "tls.key", f"quantrac/v1/{station.station_id}/up", packet,
        client_id=f"pub-{station.station_id}",
    )  # fmt: skip


def sealed(station: StationHandle, recs: list[tuple[int, Record]], created: int) -> bytes:
    """A genuine packet of ``station`` with a chosen ``created`` (``seal_as`` uses now)."""
    ident = station.identity()
    header = Header(
        VERSION, SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305, ident.station_id, ident.key_id,
        ident.centre_packet_key_id, recs[0][0], recs[-1][0], created,
    )  # fmt: skip
    return seal(header, encode_records(recs), ident.signing_key, ident.centre_packet_public)


def poison(a: StationHandle) -> list[tuple[bytes, str]]:
    """A's genuine, correctly signed packets that no centre may store, and the reason each gets."""
    rec = make_records(1)[0]
    i64_max = (1 << 63) - 1
    far_end = dataclasses.replace(rec, start=i64_max - 100, end=i64_max + 200)
    year_10000 = dataclasses.replace(rec, start=253_402_300_800, end=253_402_301_100)
    impossible = [
        (4, dataclasses.replace(rec, mean=999.0, min=1.0, max=2.0)),
        (5, dataclasses.replace(rec, n_valid=500, n_expected=10)),
        (6, dataclasses.replace(rec, mean=math.nan)),
        (7, dataclasses.replace(rec, std=-1.0)),
    ]
    return [
        (genuine(a, [(1 << 63, rec)]), "malformed"),  # C1: a seq past i64
        (sealed(a, [(1, rec)], created=(1 << 64) - 1), "malformed"),  # C1: created
        (genuine(a, [(2, far_end)]), "malformed"),  # C1: a window end past i64
        (genuine(a, [(3, year_10000)]), "implausible"),  # C2
        (genuine(a, impossible), "implausible"),  # C3
    ]


def test_poison_from_one_station_is_refused_and_the_next_station_is_stored(
    world: World,
) -> None:
    a = world.add_station("HNI-A01")
    b = world.add_station("HNI-B02")
    centre = world.start_centre()
    bad = poison(a)
    for packet, _ in bad:
        send(world, a, packet)
    send(world, b, genuine(b, pairs(10, salt=3)))
    wait_for(lambda: world.stored_count("HNI-B02") == 10, 20, "B's packet stored after A's poison")
    wait_for(lambda: len(world.security_events()) == len(bad), 20, "one event per poisoned packet")
    assert world.security_events() == [("HNI-A01", reason) for _, reason in bad]
    assert world.stored_count("HNI-A01") == 0
    assert centre.poll() is None, world.log("centre.log")
    assert "packet_failed" not in world.log("centre.log"), "refused explicitly, not by catch-all"

    # Restart with poison waiting for the receiver's persistent session: no crash loop.
    centre.send_signal(signal.SIGTERM)
    assert centre.wait(timeout=20) == 0
    for packet, _ in poison(a):  # sealed anew: new bytes, not replays
        send(world, a, packet)
    again = world.start_centre(log_name="centre-2.log")
    send(world, b, genuine(b, pairs(10, first=11, salt=3)))
    wait_for(lambda: world.stored_count("HNI-B02") == 20, 20, "B stored after the restart")
    wait_for(lambda: len(world.security_events()) == 2 * len(bad), 20, "the queued poison refused")
    assert again.poll() is None, world.log("centre-2.log")
    assert world.stored_count("HNI-A01") == 0
