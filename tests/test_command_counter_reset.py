"""After the centre's record store is reset (moved aside as corrupt), its acks are still obeyed.

Real parts: the centre's store on an SQLite file that really is corrupted and moved aside by
``CentreStore``, the station's real ``CommandGate`` with its persisted high-water mark, and
commands signed as the receiver signs them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from centre.store import CentreStore
from edge_agent.uplinks.mqtt.command_gate import CommandGate
from protocol.envelope import REPLAY, Command, EnvelopeError, ranges_body, sign_command
from tests.mqtt_world import make_records

STATION = "HCM-R1"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def ack(store: CentreStore, key: Ed25519PrivateKey, clock: Clock, first: int, n: int) -> bytes:
    """Ingest seqs ``first..first+n-1`` and sign the ack the receiver would send for them."""
    pairs = list(zip(range(first, first + n), make_records(n, salt=first), strict=True))
    result = store.ingest(STATION, pairs, hashlib.sha256(f"p{first}".encode()).digest(), 1)
    assert result.counter > 0
    body = ranges_body([(first, first + n - 1)])
    return sign_command(Command("ack", STATION, result.counter, int(clock() * 1000), body), key)


def test_station_obeys_acks_of_a_reset_store_and_still_refuses_replays(tmp_path: Path) -> None:
    clock, key = Clock(), Ed25519PrivateKey.generate()
    path = tmp_path / "records.sqlite"
    state = tmp_path / "command-state.json"
    gate = CommandGate(key.public_key(), STATION, state, clock=clock, persist_every=0.0)
    store = CentreStore(path, clock=clock)
    before = [ack(store, key, clock, 1 + 10 * i, 10) for i in range(5)]
    for data in before:
        gate.open(data)
    store.close()
    gate.save()

    data = bytearray(path.read_bytes())
    data[:16] = b"garbage, not SQL"  # the header: SQLite no longer knows the file
    path.write_bytes(bytes(data))
    clock.now += 60.0
    store = CentreStore(path, clock=clock)
    assert store.moved_aside is not None, "the corrupt store was moved aside"
    assert store.count() == 0

    # the station restarted too: only its persisted high-water mark remembers the old acks
    gate = CommandGate(key.public_key(), STATION, state, clock=clock, persist_every=0.0)
    after = ack(store, key, clock, 51, 10)
    assert gate.open(after).counter > 0, "the first ack of the new store is obeyed"
    assert gate.open(ack(store, key, clock, 61, 10)).counter > 0
    resend = sign_command(
        Command("resend", STATION, store.next_counter(STATION), int(clock() * 1000),
                ranges_body([(1, 5)])), key,
    )  # fmt: skip
    assert gate.open(resend).kind == "resend"
    for old in (after, before[-1]):
        with pytest.raises(EnvelopeError) as err:
            gate.open(old)
        assert err.value.reason == REPLAY
    store.close()
