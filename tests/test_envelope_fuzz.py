"""Hypothesis: whatever bytes arrive, open/decode raise EnvelopeError and nothing else."""

from __future__ import annotations

import math

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import envelope as env
from protocol.envelope import Command, EnvelopeError, Header
from protocol.model import Record, RecordFlag, Status
from protocol.payload import same_record

STATION = "HN-KCN-01"
STATION_KEY = Ed25519PrivateKey.generate()
CENTRE = X25519PrivateKey.generate()
COMMAND_KEY = Ed25519PrivateKey.generate()
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def lookup(station_id: str, kid: bytes) -> Ed25519PublicKey:
    if station_id != STATION or kid != env.key_id(STATION_KEY.public_key()):
        raise EnvelopeError(env.UNKNOWN_STATION, station_id)
    return STATION_KEY.public_key()


floats = st.floats(allow_nan=True, allow_infinity=True)
records = st.builds(
    Record,
    channel=st.sampled_from(["pH", "COD", "TSS", "NH4", "Flow", "SO2", "PM2,5", "O2"]),
    start=st.integers(-(2**40), 2**40),
    end=st.just(0),
    mean=floats,
    min=floats,
    max=floats,
    std=floats,
    n_valid=st.integers(0, 2**32 - 1),
    n_expected=st.integers(0, 2**32 - 1),
    valid=st.booleans(),
    status=st.sampled_from(list(Status)),
    unit=st.text(max_size=20).filter(lambda u: len(u.encode()) <= 255),
    flags=st.builds(RecordFlag, st.integers(0, 127)),
).map(lambda r: Record(**{**{n: getattr(r, n) for n in Record.__slots__}, "end": r.start + 300}))


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[int, Record]]:
    recs = draw(st.lists(records, min_size=1, max_size=20))
    seq = draw(st.integers(0, 2**63 - 1 - 20 * 1000))  # the centre stores seqs as i64
    out = []
    for r in recs:
        seq += draw(st.integers(1, 1000))
        out.append((seq, r))
    return out


def seal(batch: list[tuple[int, Record]]) -> bytes:
    header = Header(
        env.VERSION, env.SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305, STATION,
        env.key_id(STATION_KEY.public_key()), env.key_id(CENTRE.public_key()),
        batch[0][0], batch[-1][0], 1_763_900_000_000,
    )  # fmt: skip
    return env.seal(header, env.encode_records(batch), STATION_KEY, CENTRE.public_key())


SAMPLE_PACKET = seal([(1, Record("pH", 0, 300, 7.0, 6.9, 7.1, 0.05, 30, 30, True,
                                 Status.MEASURING, "pH"))])  # fmt: skip
SAMPLE_COMMAND = env.sign_command(
    Command("ack", STATION, 3, 1_763_900_000_000, env.ranges_body([(1, 5)])), COMMAND_KEY
)


def only_envelope_errors(fn: object, data: bytes) -> None:
    try:
        fn(data)  # type: ignore[operator]
    except EnvelopeError as exc:
        assert exc.reason in env.REASONS


def open_packet(data: bytes) -> None:
    env.open_packet(data, CENTRE, lookup)


def open_command(data: bytes) -> None:
    env.open_command(data, COMMAND_KEY.public_key(), STATION, 0, now_ms=1_763_900_000_000)


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    only_envelope_errors(open_packet, data)
    only_envelope_errors(env.decode_records, data)
    only_envelope_errors(open_command, data)
    only_envelope_errors(env.parse_ranges, data)


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_behind_valid_prefixes(tail: bytes) -> None:
    """Get past the magic and version checks so the deeper parsers see the random bytes."""
    only_envelope_errors(open_packet, SAMPLE_PACKET[:4] + tail)
    only_envelope_errors(open_packet, SAMPLE_PACKET[:49] + tail)
    only_envelope_errors(env.decode_records, b"\x01" + tail)
    only_envelope_errors(env.decode_records, b"\x01\x00\x01\x01\x02pH\x01\x00" + tail)
    only_envelope_errors(open_command, SAMPLE_COMMAND[:4] + tail)


@SETTINGS
@given(st.data())
def test_mutated_valid_packets_and_commands(data: st.DataObject) -> None:
    for sample, fn in ((SAMPLE_PACKET, open_packet), (SAMPLE_COMMAND, open_command)):
        buf = bytearray(sample)
        for _ in range(data.draw(st.integers(1, 4))):
            op = data.draw(st.sampled_from(["set", "insert", "delete"]))
            pos = data.draw(st.integers(0, max(len(buf) - 1, 0)))
            if op == "set" and buf:
                buf[pos] = data.draw(st.integers(0, 255))
            elif op == "insert":
                buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
            elif buf:
                del buf[pos : pos + data.draw(st.integers(1, 8))]
        if bytes(buf) != sample:
            try:
                fn(bytes(buf))
            except EnvelopeError:
                continue
            raise AssertionError(f"mutated message opened: {bytes(buf).hex()}")


@settings(max_examples=150, deadline=None)
@given(batches())
def test_any_batch_round_trips_through_seal_and_open(batch: list[tuple[int, Record]]) -> None:
    opened = env.open_packet(seal(batch), CENTRE, lookup)
    assert [s for s, _ in opened.records] == [s for s, _ in batch]
    for (_, a), (_, b) in zip(opened.records, batch, strict=True):
        assert same_record(a, b)
        assert math.isnan(a.mean) == math.isnan(b.mean)
