"""The centre's store, the de-duplication rule, current values, gaps: each test on a real SQLite
file and on a real PostgreSQL database (``store_location`` in tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from centre.store import CONFLICT, REDELIVERED, REPLAYED, RESENT, STORED, CentreStore
from protocol.model import Record, Status
from protocol.payload import same_record
from tests.mqtt_world import make_records


def pairs(first: int, n: int, salt: int = 0) -> list[tuple[int, Record]]:
    """Seq ``s`` always carries the same record (for a given salt), whatever the batching."""
    records = make_records(first - 1 + n, salt)[first - 1 :]
    return list(zip(range(first, first + n), records, strict=True))


def digest(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()


@pytest.fixture
def store(store_location: Path | str) -> Iterator[CentreStore]:
    with CentreStore(store_location, clock=lambda: 1_800_000_000.0) as store:
        yield store


def test_new_records_are_stored_with_values_identical(store: CentreStore) -> None:
    batch = pairs(1, 200)
    result = store.ingest("S1", batch, digest("p1"), 1)
    assert (result.outcome, result.new, result.known) == (STORED, 200, 0)
    got = store.by_seq("S1")
    assert [s for s, _ in got] == list(range(1, 201))
    assert all(same_record(a, b) for (_, a), (_, b) in zip(got, batch, strict=True))
    assert any(math.isnan(r.mean) for _, r in got), "offline windows keep their NaN"


def test_resend_with_new_bytes_is_a_quiet_duplicate_and_overlap_stores_only_new(
    store: CentreStore,
) -> None:
    store.ingest("S1", pairs(1, 100), digest("p1"), 1)
    again = store.ingest("S1", pairs(1, 100), digest("p1-resealed"), 2)
    assert (again.outcome, again.new, again.known) == (RESENT, 0, 100)
    assert again.counter > 0, "a resend is acknowledged again"
    overlap = store.ingest("S1", pairs(51, 100), digest("p2"), 3)
    assert (overlap.outcome, overlap.new, overlap.known) == (STORED, 50, 50)
    assert store.count("S1") == 150


def test_identical_bytes_are_a_replay_unless_the_broker_flags_a_redelivery(
    store: CentreStore,
) -> None:
    store.ingest("S1", pairs(1, 10), digest("p1"), 1)
    assert store.ingest("S1", pairs(1, 10), digest("p1"), 1).outcome == REPLAYED
    redelivered = store.ingest("S1", pairs(1, 10), digest("p1"), 1, redelivery=True)
    assert redelivered.outcome == REDELIVERED and redelivered.counter > 0
    assert store.count("S1") == 10


def test_a_stored_seq_with_other_content_is_a_conflict_and_nothing_is_stored(
    store: CentreStore,
) -> None:
    store.ingest("S1", pairs(1, 10), digest("p1"), 1)
    forged = pairs(5, 10, salt=9)  # seqs 5..14: 5..10 held with other values
    result = store.ingest("S1", forged, digest("p2"), 2)
    assert result.outcome == CONFLICT and result.conflicts[0] == 5 and result.counter == 0
    assert store.count("S1") == 10, "not even the new seqs 11..14"


def test_stations_are_separate_and_counters_increase(store: CentreStore) -> None:
    c1 = store.ingest("S1", pairs(1, 10), digest("a"), 1).counter
    c2 = store.ingest("S2", pairs(1, 10), digest("b"), 1).counter
    c3 = store.ingest("S1", pairs(11, 10), digest("c"), 1).counter
    # a station's first counter in a store starts at the store's clock in microseconds
    # (COUNTER_FLOOR_PER_S), then goes up by one per command
    assert c1 == c2 == 1_800_000_000_000_001 and c3 == c1 + 1
    assert store.next_counter("S1") == c3 + 1
    assert store.next_counter("S3") == 1_800_000_000_000_001  # first command, no ack yet


def test_a_backfilled_record_never_overwrites_a_newer_current_value(store: CentreStore) -> None:
    t0 = 1_790_000_100  # windows in 2026: the store refuses windows before 2000

    def rec(start: int, mean: float) -> Record:
        return Record(
            "pH", t0 + start, t0 + start + 300, mean, mean, mean, 0.0, 30, 30, True,
            Status.MEASURING, "",
        )  # fmt: skip

    store.ingest("S1", [(10, rec(3000, 7.5))], digest("live"), 1)
    store.ingest("S1", [(3, rec(900, 6.0))], digest("late"), 2)  # backfill arrives later
    assert store.current_values("S1")["pH"] == (10, t0 + 3000, 7.5)
    store.ingest("S1", [(11, rec(3300, 7.7))], digest("next"), 3)
    assert store.current_values("S1")["pH"] == (11, t0 + 3300, 7.7)


def test_holes_are_found_and_the_contiguous_mark_advances(store: CentreStore) -> None:
    store.ingest("S1", pairs(1, 10), digest("a"), 1)
    assert store.stations_behind() == []
    store.ingest("S1", pairs(21, 10), digest("b"), 1)
    store.ingest("S1", pairs(41, 5), digest("c"), 1)
    assert store.stations_behind() == ["S1"]
    assert store.holes("S1") == [(11, 20), (31, 40)]
    store.ingest("S1", pairs(11, 10), digest("d"), 1)
    assert store.holes("S1") == [(31, 40)]
    store.give_up_gap("S1", 40)
    assert store.holes("S1") == []
    assert store.stations_behind() == []


def test_a_lost_first_packet_is_a_hole_too(store: CentreStore) -> None:
    store.ingest("S1", pairs(94, 10), digest("second"), 1)
    assert store.holes("S1") == [(1, 93)]


def test_time_range_query_and_reopen(store_location: Path | str) -> None:
    path = store_location
    with CentreStore(path) as store:
        store.ingest("S1", pairs(1, 50), digest("a"), 1)
    with CentreStore(path) as store:
        recs = [r.record for r in store.records("S1")]
        t0 = recs[10].start
        window = store.records("S1", t0, t0 + 300)
        assert {r.record.start for r in window} == {t0}
        assert len(window) == 5  # five channels per window
        assert store.records("S2") == []


def test_security_events_are_kept(store: CentreStore) -> None:
    store.security_event("S1", "replay", "seq 1..10")
    assert [(s, r) for _, s, r, _ in store.security_events()] == [("S1", "replay")]


def test_changed_record_field_is_detected_by_value_not_identity(store: CentreStore) -> None:
    batch = pairs(1, 3)
    store.ingest("S1", batch, digest("a"), 1)
    seq, rec = batch[1]
    nudged = [(seq, dataclasses.replace(rec, n_valid=rec.n_valid - 1))]
    assert store.ingest("S1", nudged, digest("b"), 2).outcome == CONFLICT


def test_seqs_up_to_the_largest_i64_are_held_and_gaps_found(store: CentreStore) -> None:
    """The payload allows seqs to 2**63-1: the gap mark's SQL must not overflow there
    (PostgreSQL's BIGINT raises where SQLite silently turns the sum into a REAL)."""
    top = (1 << 63) - 1
    a, b = pairs(1, 2)
    assert store.ingest("S1", [(0, a[1]), (top, b[1])], digest("a"), 1).outcome == STORED
    assert store.ingest("S1", [(0, a[1])], digest("b"), 2).outcome == RESENT
    assert store.holes("S1") == []
    store.ingest("S2", [(1, a[1])], digest("c"), 1)
    store.ingest("S2", [(top, b[1])], digest("d"), 1)
    assert store.holes("S2") == [(2, top - 1)]
    assert [s.last_seq for s in store.summaries()] == [top, top]
