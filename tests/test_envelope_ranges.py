"""u64 fields the centre could not store (SQLite INTEGER is i64) are MALFORMED at decode (C1).

A genuine, correctly signed packet from an enrolled station may still carry a seq, a
``created`` or a window end above 2**63-1; before the range checks it opened, and the store
raised ``OverflowError`` for it, taking the receiver down.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from protocol import envelope as env
from protocol.envelope import EnvelopeError, Header
from protocol.model import Record, Status

I64_MAX = (1 << 63) - 1
U64_MAX = (1 << 64) - 1
STATION = "HN-KCN-01"
T0 = 1_763_900_100
STATION_KEY = Ed25519PrivateKey.generate()
CENTRE = X25519PrivateKey.generate()


def lookup(station_id: str, kid: bytes) -> Ed25519PublicKey:
    return STATION_KEY.public_key()


def rec(start: int = T0) -> Record:
    return Record("pH", start, start + 300, 7.0, 6.9, 7.1, 0.05, 30, 30, True,
                  Status.MEASURING, "pH")  # fmt: skip


def packet(pairs: list[tuple[int, Record]], created: int = T0 * 1000) -> bytes:
    header = Header(
        env.VERSION, env.SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305, STATION,
        env.key_id(STATION_KEY.public_key()), env.key_id(CENTRE.public_key()),
        pairs[0][0], pairs[-1][0], created,
    )  # fmt: skip
    return env.seal(header, env.encode_records(pairs), STATION_KEY, CENTRE.public_key())


def refusal(data: bytes) -> str:
    with pytest.raises(EnvelopeError) as info:
        env.open_packet(data, CENTRE, lookup)
    assert info.value.reason == env.MALFORMED
    return str(info.value)


@pytest.mark.parametrize("seq", [1 << 63, U64_MAX])
def test_a_seq_above_i64_is_malformed_naming_the_header_byte(seq: int) -> None:
    opened = env.open_packet(  # the largest storable values still open
        packet([(I64_MAX, rec(I64_MAX - 300))], created=I64_MAX), CENTRE, lookup
    )
    assert opened.header.last_seq == I64_MAX and opened.header.created == I64_MAX
    assert opened.records[0][1].end == I64_MAX
    assert "byte 20: first_seq" in refusal(packet([(seq, rec())]))
    assert "byte 28: last_seq" in refusal(packet([(1, rec()), (seq, rec())]))


@pytest.mark.parametrize("created", [1 << 63, U64_MAX])
def test_created_above_i64_is_malformed_naming_byte_36(created: int) -> None:
    assert "byte 36: created" in refusal(packet([(1, rec())], created=created))


def test_a_payload_seq_above_i64_is_malformed_naming_the_payload_byte() -> None:
    payload = env.encode_records([(1, rec()), (1 << 63, rec())])
    with pytest.raises(EnvelopeError) as info:
        env.decode_records(payload)
    assert info.value.reason == env.MALFORMED
    # version 1, count 2, channel table 1+1+2, unit table 1+1+2: records at 11 and 77
    assert "payload byte 77: seq 9223372036854775808 above 2**63-1" in str(info.value)


def test_a_window_ending_past_i64_is_malformed_naming_the_length_byte() -> None:
    message = refusal(packet([(1, rec(I64_MAX - 10))]))
    assert "payload byte 29: window end" in message  # record at 11, length field at +18
