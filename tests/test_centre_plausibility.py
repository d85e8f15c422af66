"""Poisoned packets at the centre (issue 10, C1-C3), on a real SQLite and a real PostgreSQL store,
no broker.

``Receiver.handle_packet`` is the MQTT-free core the real process calls for every message: a
refusal must come back as a documented outcome, stored as a security event, and never as an
exception (paho would end the process before its PUBACK, and the broker would hand the packet
to the restarted receiver again). The MQTT round trip is in ``tests/test_mqtt_poison.py``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from centre.query import render_csv, render_text, zone
from centre.receiver import Receiver, ReceiverSettings
from centre.store import IMPLAUSIBLE, STORED, CentreStore, record_problem
from protocol import envelope as env
from protocol.envelope import EnvelopeError, Header, Opened
from protocol.model import Record, RecordFlag, Status
from tests.pg_server import PgServer

STATION = "HN-KCN-01"
T0 = 1_790_000_100 - 1_790_000_100 % 300
NOW = 1_790_100_000.0
STATION_KEY = Ed25519PrivateKey.generate()
CENTRE = X25519PrivateKey.generate()
COMMAND_KEY = Ed25519PrivateKey.generate()
I64_MAX = (1 << 63) - 1
U64_MAX = (1 << 64) - 1
NAN = math.nan

#: the outcomes docs/protocol.md documents for a packet on its own topic ("At the centre")
OUTCOMES = {"stored", "resent", "redelivered", "replay", "conflict", IMPLAUSIBLE} | set(env.REASONS)


def lookup(station_id: str, kid: bytes) -> Ed25519PublicKey:
    if station_id != STATION or kid != env.key_id(STATION_KEY.public_key()):
        raise EnvelopeError(env.UNKNOWN_STATION, station_id)
    return STATION_KEY.public_key()


def good(start: int = T0, **kw: object) -> Record:
    r = Record("COD", start, start + 300, 50.0, 40.0, 60.5, 1.25, 28, 30, True,
               Status.MEASURING, "mg/L")  # fmt: skip
    return dataclasses.replace(r, **kw)  # type: ignore[arg-type]


def seal(pairs: list[tuple[int, Record]], created: int = int(NOW * 1000),
         first: int | None = None, last: int | None = None) -> bytes:  # fmt: skip
    header = Header(
        env.VERSION, env.SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305, STATION,
        env.key_id(STATION_KEY.public_key()), env.key_id(CENTRE.public_key()),
        pairs[0][0] if first is None else first, pairs[-1][0] if last is None else last, created,
    )  # fmt: skip
    return env.seal(header, env.encode_records(pairs), STATION_KEY, CENTRE.public_key())


def receiver(store: CentreStore, opener: object = None) -> Receiver:
    settings = ReceiverSettings("127.0.0.1", 1, Path("ca"), Path("cert"), Path("key"))

    def open_(data: bytes) -> Opened:
        return env.open_packet(data, CENTRE, lookup)

    return Receiver(settings, store, opener or open_, COMMAND_KEY, clock=lambda: NOW)  # type: ignore[arg-type]


@pytest.fixture
def store(store_location: Path | str) -> Iterator[CentreStore]:
    with CentreStore(store_location, clock=lambda: NOW) as store:
        yield store


IMPOSSIBLE = {
    "mean 999 with max 2": (good(mean=999.0, min=1.0, max=2.0), "mean 999.0 above max 2.0"),
    "mean below min": (good(mean=-5.0), "mean -5.0 below min 40.0"),
    "min above max": (good(min=70.0, mean=80.0, max=60.0), "min 70.0 above max 60.0"),
    "n_valid 500 of 10": (good(n_valid=500, n_expected=10), "n_valid 500 above 2 x n_expected"),
    "valid with NaN mean": (good(mean=NAN), "valid record with mean NaN"),
    "valid with NaN std": (good(std=NAN), "valid record with std NaN"),
    "valid with no sample": (good(n_valid=0), "valid record with n_valid 0"),
    "a mean of nothing": (good(valid=False, n_valid=0), "mean 50.0 of no valid sample"),
    "negative std": (good(std=-1.0), "std -1.0 negative"),
    "+inf mean": (good(mean=math.inf, max=math.inf), "mean inf is infinite"),
    "-inf min, invalid": (good(valid=False, min=-math.inf), "min -inf is infinite"),
    "4e9-second window": (good(end=T0 + 4_000_000_000), "window length 4000000000 s"),
    "window in 1900": (good(start=-2_208_988_800, end=-2_208_988_500), "start -2208988800"),
    "window in 1970": (good(start=0, end=300), "start 0 outside 2000-01-01..2100-01-01"),
    "year 10000": (good(start=253_402_300_800, end=253_402_301_100), "start 253402300800"),
    "ends after 2100": (good(start=4_102_444_700, end=4_102_445_000), "end 4102445000 after"),
    "NUL in the unit": (good(unit="mg\x00/L"), "unit holds a NUL character"),
}


@pytest.mark.parametrize("name", IMPOSSIBLE)
def test_each_impossible_record_is_refused_naming_the_field(name: str) -> None:
    rec, why = IMPOSSIBLE[name]
    problem = record_problem(rec)
    assert problem is not None and why in problem, (name, problem)


#: real records, each of a kind a stricter check could refuse by mistake
REAL = [
    good(),
    good(T0 + 300, valid=False, n_valid=10),  # under 75%: invalid, but its mean is a real mean
    good(
        T0 + 600, mean=NAN, min=NAN, max=NAN, std=NAN, n_valid=0, valid=False, status=Status.OFFLINE
    ),  # an offline window
    good(T0 + 900, mean=0.1 * 3 / 3, min=0.1, max=0.1, std=0.0),  # sum/n one ulp above max
    good(T0, end=T0 + 86_400, n_expected=288, n_valid=288),  # a daily roll-up
    good(T0 + 1200, flags=RecordFlag.PARTIAL, end=T0 + 1210),
    good(T0 + 1500, n_valid=31, n_expected=30),  # a late poll pushed into the next window
]


def test_a_packet_with_one_impossible_record_stores_the_rest_and_acks_all(
    store: CentreStore,
) -> None:
    rx = receiver(store)
    bad = good(T0 + 300, mean=999.0, min=1.0, max=2.0)
    pairs = [(1, REAL[0]), (2, bad), *zip(range(3, 3 + len(REAL) - 1), REAL[1:], strict=True)]
    assert rx.handle_packet(f"quantrac/v1/{STATION}/up", seal(pairs)) == STORED
    assert [s for s, _ in store.by_seq(STATION)] == [s for s, _ in pairs if s != 2]
    [(_, who, reason, detail)] = store.security_events()
    assert (who, reason) == (STATION, "implausible")
    n = len(pairs)
    assert f"seq 1..{n}: 1 of {n} records refused: seq 2: mean 999.0 above max 2.0" in detail
    assert repr((2, bad)) in detail, "the refused record is kept at the centre as received"
    assert rx.stats.acks_sent == 1
    assert store.holes(STATION) == [], "a refused seq is dealt with, not asked for again"


def test_a_packet_of_only_impossible_records_is_implausible_and_acked(
    store: CentreStore,
) -> None:
    rx = receiver(store)
    packet = seal([(1, good(mean=math.inf, max=math.inf)), (2, good(n_valid=500))])
    assert rx.handle_packet(f"quantrac/v1/{STATION}/up", packet) == IMPLAUSIBLE
    assert store.count(STATION) == 0
    assert [e[2] for e in store.security_events()] == ["implausible"]
    assert rx.stats.acks_sent == 1


@pytest.mark.parametrize(
    "pairs, kw, where",
    [
        ([(1 << 63, good())], {}, "byte 20: first_seq"),
        ([(U64_MAX, good())], {}, "byte 20: first_seq"),
        ([(1, good())], {"created": U64_MAX}, "byte 36: created"),
        ([(1, good(start=I64_MAX - 100, end=I64_MAX + 200))], {}, "window end"),
        ([(1, good(start=253_402_300_800, end=253_402_301_100))], {}, "start 253402300800"),
    ],
)
def test_c1_c2_poison_is_a_security_event_and_the_store_goes_on(
    store: CentreStore, pairs: list[tuple[int, Record]], kw: dict[str, int], where: str
) -> None:
    rx = receiver(store)
    outcome = rx.handle_packet(f"quantrac/v1/{STATION}/up", seal(pairs, **kw))
    assert outcome in (env.MALFORMED, IMPLAUSIBLE)
    [(_, _, reason, detail)] = store.security_events()
    assert reason == outcome and where in detail
    assert rx.handle_packet(f"quantrac/v1/{STATION}/up", seal([(5, good())])) == STORED
    text = render_text(store.records(STATION), zone("Asia/Ho_Chi_Minh"))
    assert "1 records" in text


def test_an_exception_anyway_is_an_event_not_the_end_of_the_receiver(store: CentreStore) -> None:
    def broken(data: bytes) -> Opened:
        raise RuntimeError("disk on fire")

    rx = receiver(store, broken)
    assert rx.handle_packet(f"quantrac/v1/{STATION}/up", b"x") == "internal_error"
    [(_, who, reason, detail)] = store.security_events()
    assert (who, reason, detail) == (STATION, "internal_error", "RuntimeError: disk on fire")


# --- every field across its whole wire range ------------------------------------------------

u64 = st.one_of(st.integers(0, U64_MAX), st.sampled_from([0, I64_MAX, 1 << 63, U64_MAX]))
i64 = st.one_of(
    st.integers(-(1 << 63), I64_MAX),
    st.integers(T0 - 10**6, T0 + 10**6),
    st.sampled_from([-(1 << 63), 0, 946_684_800, 4_102_444_500, 253_402_300_800, I64_MAX]),
)
u32 = st.one_of(st.integers(0, (1 << 32) - 1), st.sampled_from([0, 1, 30, (1 << 32) - 1]))
f64 = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def wire_records(draw: st.DrawFn) -> Record:
    start = draw(i64)
    length = draw(st.one_of(st.integers(1, (1 << 32) - 1), st.sampled_from([300, 3600])))
    return Record(
        draw(st.sampled_from(["pH", "COD", "PM2,5"])), start, start + length,
        draw(f64), draw(f64), draw(f64), draw(f64), draw(u32), draw(u32), draw(st.booleans()),
        draw(st.sampled_from(list(Status))), draw(st.sampled_from(["", "mg/L", "°C", "m\x00g"])),
        draw(st.builds(RecordFlag, st.integers(0, 127))),
    )  # fmt: skip


@st.composite
def wire_packets(draw: st.DrawFn) -> bytes:
    recs = draw(st.lists(wire_records(), min_size=1, max_size=4))
    seqs = sorted(draw(st.sets(u64, min_size=len(recs), max_size=len(recs))))
    pairs = list(zip(seqs, recs, strict=True))
    return seal(pairs, created=draw(u64))


SLOW = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


def check_any_wire_value(location: Callable[[], Path | str], packets: list[bytes]) -> None:
    """seal -> open -> store -> query for every int and float field over its whole wire range.

    Nothing but a documented outcome; ``internal_error`` (the catch-all) must never be needed:
    each refusal is an explicit check. What is stored can always be queried, text and CSV.
    """
    with CentreStore(location(), clock=lambda: NOW) as store:
        rx = receiver(store)
        for packet in packets:
            outcome = rx.handle_packet(f"quantrac/v1/{STATION}/up", packet)
            assert outcome in OUTCOMES, outcome
        held = store.records(STATION)
        assert all(record_problem(r.record) is None for r in held)
        tz = zone("Asia/Ho_Chi_Minh")
        assert render_text(held, tz).startswith(f"# {len(held)} records")
        assert render_csv(held, tz).count("\n") == len(held) + 1
        assert "internal_error" not in {e[2] for e in store.security_events()}


@settings(max_examples=300, deadline=None, suppress_health_check=SLOW)
@given(packets=st.lists(wire_packets(), min_size=1, max_size=3))
def test_any_wire_value_is_stored_and_queried_or_refused_as_documented(
    tmp_path_factory: pytest.TempPathFactory, packets: list[bytes]
) -> None:
    check_any_wire_value(lambda: tmp_path_factory.mktemp("fuzz") / "records.sqlite", packets)


#: fewer examples on PostgreSQL: each empties the database; the values' range is the point,
#: and what PostgreSQL could hold differently (i64 seqs and times, NaN and extreme doubles)
#: is drawn in most examples
@settings(max_examples=30, deadline=None, suppress_health_check=SLOW)
@given(packets=st.lists(wire_packets(), min_size=1, max_size=3))
def test_any_wire_value_is_stored_and_queried_or_refused_as_documented_on_postgresql(
    pg_server: PgServer, packets: list[bytes]
) -> None:
    check_any_wire_value(pg_server.fresh, packets)
