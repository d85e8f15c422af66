"""The sealed packet and the signed command (docs/protocol.md): round trips, every way to fail."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol import envelope as env
from protocol.envelope import Command, EnvelopeError, Header
from protocol.model import Record, RecordFlag, Status
from protocol.payload import same_record

STATION = "HN-KCN-01"
T0 = 1_763_900_000


def rec(i: int, channel: str = "COD", unit: str = "mg/L") -> Record:
    return Record(
        channel, T0 + 300 * i, T0 + 300 * (i + 1), 50.0 + i, 40.0, 60.5, 1.25,
        28, 30, True, Status.MEASURING, unit, RecordFlag.NONE,
    )  # fmt: skip


class Keys:
    def __init__(self) -> None:
        self.station = Ed25519PrivateKey.generate()
        self.other_station = Ed25519PrivateKey.generate()
        self.centre = X25519PrivateKey.generate()
        self.other_centre = X25519PrivateKey.generate()
        self.command = Ed25519PrivateKey.generate()
        self.revoked: set[bytes] = set()

    def lookup(self, station_id: str, kid: bytes) -> Ed25519PublicKey:
        """The centre's registry: one station, one key."""
        if station_id != STATION:
            raise EnvelopeError(env.UNKNOWN_STATION, station_id)
        if kid in self.revoked:
            raise EnvelopeError(env.REVOKED, kid.hex())
        if kid != env.key_id(self.station.public_key()):
            raise EnvelopeError(env.UNKNOWN_KEY, kid.hex())
        return self.station.public_key()

    def header(self, first: int, last: int, **kw: object) -> Header:
        fields: dict[str, object] = {
            "version": env.VERSION,
            "suite": env.SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305,
            "station_id": STATION,
            "key_id": env.key_id(self.station.public_key()),
            "centre_key_id": env.key_id(self.centre.public_key()),
            "first_seq": first,
            "last_seq": last,
            "created": T0 * 1000 + 123,
        }
        fields.update(kw)
        return Header(**fields)  # type: ignore[arg-type]

    def packet(
        self, records: list[tuple[int, Record]], max_packet: int = env.MAX_PACKET, **kw: object
    ) -> bytes:
        h = self.header(records[0][0], records[-1][0], **kw)
        payload = env.encode_records(records)
        return env.seal(h, payload, self.station, self.centre.public_key(), max_packet)

    def open(self, packet: bytes, **kw: object) -> env.Opened:
        return env.open_packet(packet, self.centre, self.lookup, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def reason_of(fn: Callable[[], object]) -> str:
    with pytest.raises(EnvelopeError) as info:
        fn()
    return info.value.reason


def test_key_id_is_sha256_prefix_of_raw_public_key(keys: Keys) -> None:
    for pub in (keys.station.public_key(), keys.centre.public_key()):
        raw = pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert env.key_id(pub) == hashlib.sha256(raw).digest()[:8]


def test_round_trip_keeps_every_field_nan_flags_and_unicode_units(keys: Keys) -> None:
    records = [
        (7, rec(0)),
        (8, Record("O2", T0, T0 + 60, math.nan, math.nan, math.nan, math.nan, 0, 60, False,
                   Status.OFFLINE, "%", RecordFlag.CLOCK_JUMP | RecordFlag.PARTIAL)),
        (10, Record("Temp", T0, T0 + 300, -1.5e-300, -2.0, math.inf, 0.0, 1, 1, False,
                    Status.CALIBRATING, "°C", RecordFlag.O2_NORMALISED)),
        (11, rec(3, "PM2,5", "mg/Nm3")),
    ]  # fmt: skip
    opened = keys.open(keys.packet(records))
    assert opened.header.station_id == STATION
    assert (opened.header.first_seq, opened.header.last_seq) == (7, 11)
    assert opened.header.created == T0 * 1000 + 123
    assert [s for s, _ in opened.records] == [7, 8, 10, 11]
    for (_, a), (_, b) in zip(opened.records, records, strict=True):
        assert same_record(a, b), (a, b)
    assert len(env.decode_records(opened.payload)) == 4


def test_every_single_byte_flip_fails(keys: Keys) -> None:
    packet = keys.packet([(1, rec(0)), (2, rec(1)), (3, rec(2, "pH", "pH"))])
    keys.open(packet)  # the unmodified packet opens
    reasons: set[str] = set()
    for pos in range(len(packet)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(packet)
            bad[pos] ^= mask
            reasons.add(reason_of(partial(keys.open, bytes(bad))))
    # header bytes fail on parsing or key checks, the rest on authenticated decryption
    assert env.DECRYPT_FAILED in reasons and env.MALFORMED in reasons
    assert reasons <= env.REASONS


def test_signed_by_another_station_key_is_bad_signature(keys: Keys) -> None:
    records = [(1, rec(0))]
    h = keys.header(1, 1)  # claims to be STATION with STATION's key id
    forged = env.seal(h, env.encode_records(records), keys.other_station, keys.centre.public_key())
    assert reason_of(lambda: keys.open(forged)) == env.BAD_SIGNATURE


def test_unknown_station_unknown_key_and_revoked_key(keys: Keys) -> None:
    records = [(1, rec(0))]
    other = Header(**{**keys.header(1, 1).__dict__, "station_id": "XX-01"})
    p = env.seal(other, env.encode_records(records), keys.station, keys.centre.public_key())
    assert reason_of(lambda: keys.open(p)) == env.UNKNOWN_STATION
    p = keys.packet(records, key_id=env.key_id(keys.other_station.public_key()))
    assert reason_of(lambda: keys.open(p)) == env.UNKNOWN_KEY
    good = keys.packet(records)
    kid = env.key_id(keys.station.public_key())
    keys.revoked.add(kid)
    try:
        assert reason_of(lambda: keys.open(good)) == env.REVOKED
    finally:
        keys.revoked.discard(kid)


def test_packet_for_another_centre(keys: Keys) -> None:
    records = [(1, rec(0))]
    h = keys.header(1, 1, centre_key_id=env.key_id(keys.other_centre.public_key()))
    p = env.seal(h, env.encode_records(records), keys.station, keys.other_centre.public_key())
    assert reason_of(lambda: keys.open(p)) == env.WRONG_CENTRE
    # a header lying about the centre (our key id, sealed to another) cannot be opened either
    h = keys.header(1, 1)
    p = env.seal(h, env.encode_records(records), keys.station, keys.other_centre.public_key())
    assert reason_of(lambda: keys.open(p)) == env.DECRYPT_FAILED


def test_header_not_matching_the_sealed_content(keys: Keys) -> None:
    records = [(5, rec(0)), (6, rec(1))]
    payload = env.encode_records(records)
    for first, last in ((4, 6), (5, 7), (6, 6)):
        p = env.seal(keys.header(first, last), payload, keys.station, keys.centre.public_key())
        assert reason_of(partial(keys.open, p)) == env.HEADER_MISMATCH
    # a header taken from another packet and put in front of this one's sealed part
    a = keys.packet(records)
    b = keys.packet([(5, rec(0)), (6, rec(1))], created=T0 * 1000 + 999)
    head_len = env.parse_header(a)[1]
    spliced = b[:head_len] + a[head_len:]
    assert reason_of(lambda: keys.open(spliced)) == env.DECRYPT_FAILED


def test_truncated_and_padded_packets_are_malformed(keys: Keys) -> None:
    packet = keys.packet([(1, rec(0)), (2, rec(1))])
    for n in range(len(packet)):
        assert reason_of(partial(keys.open, packet[:n])) == env.MALFORMED
    assert reason_of(lambda: keys.open(packet + b"\0")) == env.MALFORMED


def test_oversized_packet_is_too_large_and_seal_refuses_it(keys: Keys) -> None:
    records = [(i + 1, rec(i)) for i in range(30)]
    packet = keys.packet(records)
    assert reason_of(lambda: keys.open(packet, max_packet=len(packet) - 1)) == env.TOO_LARGE
    assert reason_of(lambda: keys.open(packet + bytes(70000))) == env.TOO_LARGE
    with pytest.raises(ValueError):
        env.seal(keys.header(1, 30), env.encode_records(records), keys.station,
                 keys.centre.public_key(), max_packet=len(packet) - 1)  # fmt: skip


def test_unsupported_version_and_suite(keys: Keys) -> None:
    packet = bytearray(keys.packet([(1, rec(0))]))
    packet[2] = 2
    assert reason_of(lambda: keys.open(bytes(packet))) == env.UNSUPPORTED_VERSION
    packet[2] = env.VERSION
    packet[3] = 9
    assert reason_of(lambda: keys.open(bytes(packet))) == env.UNSUPPORTED_SUITE


def test_replayed_packet_is_rejected_and_a_partial_resend_keeps_only_new_records(
    keys: Keys,
) -> None:
    stored: set[tuple[str, int]] = set()

    def is_stored(station: str, seq: int) -> bool:
        return (station, seq) in stored

    def receive(packet: bytes) -> list[int]:
        opened = keys.open(packet)
        fresh = env.check_not_replayed(opened, is_stored)
        stored.update((opened.header.station_id, s) for s, _ in fresh)
        return [s for s, _ in fresh]

    first = keys.packet([(1, rec(0)), (2, rec(1)), (3, rec(2))])
    assert receive(first) == [1, 2, 3]
    with pytest.raises(EnvelopeError) as info:
        receive(first)  # the very same bytes again
    assert info.value.reason == env.REPLAY
    # after a lost ack the station re-batches: 2..5 overlaps; only 4 and 5 are new
    assert receive(keys.packet([(i, rec(i)) for i in range(2, 6)])) == [4, 5]


def test_batch_records_fills_packets_to_the_maximum(keys: Keys) -> None:
    channels = ["pH", "COD", "TSS", "NH4", "Flow", "Temp"]
    records = [(i + 1, rec(i, channels[i % 6], "u" * (i % 6))) for i in range(3000)]
    for max_packet in (1500, 8192, env.MAX_PACKET):
        batches = list(env.batch_records(records, max_packet=max_packet,
                                         station_id_len=len(STATION)))  # fmt: skip
        assert [r for b in batches for r in b] == records
        for n, batch in enumerate(batches):
            packet = keys.packet(batch)
            assert len(packet) <= max_packet
            if n + 1 < len(batches):  # one more record would not have fitted
                bigger = [*batch, batches[n + 1][0]]
                with pytest.raises(ValueError):
                    keys.packet(bigger, max_packet=max_packet)
            keys.open(packet)
    with pytest.raises(ValueError):
        list(env.batch_records([(2, rec(0)), (1, rec(1))]))


def test_payload_errors_name_the_byte_offset() -> None:
    good = env.encode_records([(1, rec(0)), (2, rec(1))])
    with pytest.raises(EnvelopeError) as info:
        env.decode_records(good[:-1])
    assert info.value.reason == env.MALFORMED and "byte" in str(info.value)
    bad = bytearray(good)
    bad[-2:] = b"\xff\xff"  # unknown flag bits in the last record
    with pytest.raises(EnvelopeError) as info:
        env.decode_records(bytes(bad))
    assert f"byte {len(good) - 2}" in str(info.value)
    bad = bytearray(good)
    bad[0] = 2
    assert reason_of(lambda: env.decode_records(bytes(bad))) == env.UNSUPPORTED_VERSION
    with pytest.raises(ValueError):
        env.encode_records([(1, Record("bad name", 0, 1, 0, 0, 0, 0, 1, 1, True,
                                       Status.MEASURING, ""))])  # fmt: skip


# --- commands --------------------------------------------------------------------------------


def ack(counter: int, ranges: list[tuple[int, int]], station: str = STATION) -> Command:
    return Command("ack", station, counter, T0 * 1000, env.ranges_body(ranges))


def test_command_round_trip(keys: Keys) -> None:
    data = env.sign_command(ack(5, [(1, 10), (12, 12)]), keys.command)
    cmd = env.open_command(data, keys.command.public_key(), STATION, last_counter=4)
    assert (cmd.kind, cmd.station_id, cmd.counter, cmd.created) == ("ack", STATION, 5, T0 * 1000)
    assert env.parse_ranges(cmd.body) == [(1, 10), (12, 12)]
    cfg = Command("config", STATION, 6, T0 * 1000, b'[poll]\ninterval_s = 5\n')
    assert env.open_command(env.sign_command(cfg, keys.command), keys.command.public_key(),
                            STATION, 5).body == cfg.body  # fmt: skip
    assert env.seq_ranges([5, 1, 2, 3, 9, 10, 3]) == [(1, 3), (5, 5), (9, 10)]


def test_command_rejections(keys: Keys) -> None:
    verify = keys.command.public_key()
    data = env.sign_command(ack(5, [(1, 2)]), keys.command)

    def open_(d: bytes, station: str = STATION, last: int = 0, now_ms: int | None = None) -> Any:
        return env.open_command(d, verify, station, last, now_ms=now_ms)

    # unsigned: no signature at all, or a zeroed one
    assert reason_of(lambda: open_(data[:-64])) == env.MALFORMED
    assert reason_of(lambda: open_(data[:-64] + bytes(64))) == env.BAD_SIGNATURE
    # signed by another key (e.g. a station's, or an old centre key)
    forged = env.sign_command(ack(5, [(1, 2)]), keys.other_station)
    assert reason_of(lambda: open_(forged)) == env.UNKNOWN_KEY
    assert reason_of(lambda: open_(data, station="HN-KCN-02")) == env.WRONG_STATION
    assert reason_of(lambda: open_(data, last=5)) == env.REPLAY
    assert reason_of(lambda: open_(data, last=9)) == env.REPLAY
    day = 24 * 3600 * 1000
    assert reason_of(lambda: open_(data, now_ms=T0 * 1000 + 2 * day)) == env.STALE_COMMAND
    assert reason_of(lambda: open_(data, now_ms=T0 * 1000 - day)) == env.STALE_COMMAND
    assert open_(data, now_ms=T0 * 1000 + 1000).counter == 5
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        assert reason_of(partial(open_, bytes(bad))) in env.REASONS
    with pytest.raises(ValueError):
        env.sign_command(Command("ack", STATION, 1, 0, b"\x00\x01"), keys.command)
