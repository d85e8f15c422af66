"""The outbox on real SQLite files: states, sequence numbers, retention, corruption, disk full."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from pathlib import Path

import pytest

from buffer import Pruned, Store, StoreFullError
from buffer.db import check_integrity, open_checked
from protocol.model import Record, RecordFlag, Sample, Status
from protocol.payload import same_record

T0 = 1_763_900_000.0
DAY = 86400.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def rec(i: int, channel: str = "COD") -> Record:
    return Record(channel, int(T0) + 300 * i, int(T0) + 300 * (i + 1), 50.0 + i, 40.0, 60.0,
                  1.5, 28, 30, True, Status.MEASURING, "mg/L")  # fmt: skip


def test_states_pending_sent_acked_and_status(tmp_path: Path) -> None:
    clock = Clock()
    with Store(tmp_path / "o.db", clock) as store:
        assert store.append([rec(i) for i in range(10)]) == list(range(1, 11))
        batch = store.next_batch(4)
        assert [s for s, _ in batch] == [1, 2, 3, 4]
        assert same_record(batch[0][1], rec(0))
        assert [s for s, _ in store.next_batch(4)] == [5, 6, 7, 8]
        st = store.status()
        assert (st.unacked, st.in_flight, st.acked, st.last_seq) == (10, 8, 0, 10)
        assert st.oldest_unacked_seq == 1 and st.oldest_unacked_start == int(T0)
        assert store.acknowledge([(1, 3), (5, 5)]) == 4
        assert store.acknowledge([(1, 3)]) == 0  # a repeated ack changes nothing
        st = store.status()
        assert (st.unacked, st.in_flight, st.acked) == (6, 4, 4)
        assert st.oldest_unacked_seq == 4
        # the rest is drained before anything in flight comes back
        assert [s for s, _ in store.next_batch(100)] == [9, 10]
        assert store.next_batch(100) == []


def test_requeue_after_timeout_and_on_reconnect(tmp_path: Path) -> None:
    clock = Clock()
    with Store(tmp_path / "o.db", clock) as store:
        store.append([rec(i) for i in range(6)])
        store.next_batch(2)
        clock.t += 100
        store.next_batch(2)
        clock.t += 50
        assert store.requeue(older_than_s=120) == 2  # only the batch sent 150 s ago
        assert [s for s, _ in store.next_batch(10)] == [1, 2, 5, 6]
        store.acknowledge([(1, 1)])
        assert store.requeue() == 5  # reconnect: everything in flight, not the acked one
        assert [s for s, _ in store.next_batch(10)] == [2, 3, 4, 5, 6]


def test_resend_request_makes_a_gap_pending_again_even_if_acked(tmp_path: Path) -> None:
    with Store(tmp_path / "o.db", Clock()) as store:
        store.append([rec(i) for i in range(5)])
        store.next_batch(5)
        store.acknowledge([(1, 5)])
        assert store.resend([(2, 3)]) == 2
        assert [s for s, _ in store.next_batch(10)] == [2, 3]
        assert [s for s, _ in store.get(2, 4)] == [2, 3, 4]


def test_sequence_numbers_increase_across_restarts_and_are_never_reused(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "o.db"
    with Store(path, clock) as store:
        assert store.append([rec(0), rec(1)]) == [1, 2]
        store.acknowledge([(1, 2)])
        clock.t += 61 * DAY
        assert store.prune().records == 2  # the table is now empty
    with Store(path, clock) as store:
        assert store.status().last_seq == 2
        assert store.append([rec(2)]) == [3]


def test_records_round_trip_nan_and_flags(tmp_path: Path) -> None:
    r = Record("O2", 0, 60, math.nan, math.nan, math.inf, math.nan, 0, 60, False,
               Status.OFFLINE, "%", RecordFlag.CLOCK_JUMP | RecordFlag.PARTIAL)  # fmt: skip
    with Store(tmp_path / "o.db", Clock()) as store:
        store.append([r])
        [(seq, back)] = store.next_batch(1)
        assert seq == 1 and same_record(back, r)


def test_retention_prunes_acked_after_60_days_never_unacked(tmp_path: Path) -> None:
    clock = Clock()
    with Store(tmp_path / "o.db", clock) as store:
        store.append([rec(i) for i in range(4)])
        store.acknowledge([(1, 2)])
        store.append_samples([Sample("COD", T0, 50.0, Status.MEASURING)])
        clock.t += 59 * DAY
        store.acknowledge([(3, 3)])
        assert store.prune() == Pruned(records=0, samples=1)  # samples: 7 days
        clock.t += 1 * DAY
        assert store.prune().records == 0  # acked 60 days ago, but their windows ended later
        clock.t += 600
        pruned = store.prune()
        assert (pruned.records, pruned.samples) == (2, 0)
        clock.t += 365 * DAY
        assert store.prune().records == 1  # seq 3; seq 4 was never acknowledged
        assert [s for s, _ in store.get(0, 100)] == [4]
        assert store.status().unacked == 1


def test_samples_round_trip_and_expire_sooner(tmp_path: Path) -> None:
    clock = Clock()
    with Store(tmp_path / "o.db", clock, sample_retention_s=7 * DAY) as store:
        samples = [Sample("pH", T0 + i, 7.0 + i / 10, Status.MEASURING) for i in range(5)]
        samples.append(Sample.offline("pH", T0 + 5))
        assert store.append_samples(samples) == 6
        back = store.samples_between(T0, T0 + 10)
        assert back[:5] == samples[:5] and math.isnan(back[5].value)
        assert back[5].status is Status.OFFLINE
        clock.t += 8 * DAY
        assert store.prune().samples == 6


def _records_on_disk(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT seq FROM records ORDER BY seq")]
    finally:
        conn.close()


def test_garbled_database_is_moved_aside_and_a_clean_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    path = tmp_path / "o.db"
    with Store(path, clock) as store:
        store.append([rec(i) for i in range(50)])
    size = path.stat().st_size
    with open(path, "r+b") as f:  # garble every page after the header
        f.seek(100)
        f.write(os.urandom(size - 100))
    assert check_integrity(path) is not None
    clock.t += 3600
    with caplog.at_level(logging.ERROR, logger="quantrac.buffer"):
        store = Store(path, clock)
    with store:
        assert store.moved_aside is not None and store.moved_aside.exists()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock.t))
        assert store.moved_aside.name == f"o.db.corrupt-{stamp}"
        assert store.moved_aside.stat().st_size == size  # kept whole for forensics
        assert store.integrity_check() == ["ok"]
        st = store.status()
        assert (st.unacked, st.acked) == (0, 0)
        # new numbers stay above anything the old file may have sent to the centre
        [seq] = store.append([rec(0)])
        assert seq > 50 and seq > int(clock.t * 1000) * 1000
    events = [r for r in caplog.records if r.getMessage() == "store_corrupt_moved_aside"]
    assert len(events) == 1 and events[0].levelno == logging.ERROR
    assert events[0].moved_to == str(store.moved_aside)  # type: ignore[attr-defined]


def test_file_that_is_not_a_database_at_all(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not sqlite\n" * 100)
    (tmp_path / "o.db-wal").write_bytes(b"junk")
    opened = open_checked(path, Clock())
    try:
        assert opened.moved_aside is not None
        assert opened.moved_aside.read_bytes().startswith(b"this is not sqlite")
        assert Path(str(opened.moved_aside) + "-wal").read_bytes() == b"junk"
        assert opened.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        opened.conn.close()
    with Store(path, Clock()) as store:  # now a sound file: no second move
        assert store.moved_aside is None


def test_disk_full_gives_up_samples_first_then_acked_records_then_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    with Store(tmp_path / "o.db", clock, max_bytes=256 * 1024) as store:
        samples = [Sample("pH", T0 + i, 7.0, Status.MEASURING) for i in range(500)]
        n = 0
        with caplog.at_level(logging.WARNING, logger="quantrac.buffer"):
            while n < 100_000 and store.status().samples == n:  # fill until samples give way
                store.append_samples(samples)
                n += len(samples)
            assert "store_full_samples_given_up" in caplog.text
            assert store.status().samples < n
            # records: every sample goes first, then records are refused (none acked yet)
            seqs: list[int] = []
            with pytest.raises(StoreFullError):
                for _ in range(1000):
                    seqs += store.append([rec(i) for i in range(100)])
            assert store.status().samples == 0
            assert store.status().unacked == len(seqs)
            assert _records_on_disk(tmp_path / "o.db") == seqs
            # too full even to record an acknowledgement: the acked records are given up
            acked = store.acknowledge([(seqs[0], seqs[len(seqs) // 2])])
            assert acked == len(seqs) // 2 + 1
            assert "store_full_acked_records_given_up" in caplog.text
            assert _records_on_disk(tmp_path / "o.db") == seqs[acked:]
            assert store.status().unacked == len(seqs) - acked
        assert store.integrity_check() == ["ok"]


def test_acked_records_make_room_for_new_ones_unacked_never(tmp_path: Path) -> None:
    clock = Clock()
    with Store(tmp_path / "o.db", clock, max_bytes=128 * 1024) as store:
        seqs: list[int] = []
        for _ in range(60):  # several times what the cap holds: acked records give way
            new = store.append([rec(j) for j in range(50)])
            seqs += new
            batch = store.next_batch(50)
            assert [s for s, _ in batch] == new
            store.acknowledge([(new[0], new[-1])])
            clock.t += 1
        assert store.status().acked < len(seqs) and store.status().unacked == 0
        kept: list[int] = []
        with pytest.raises(StoreFullError):  # now nothing is acknowledged any more
            for _ in range(100):
                kept += store.append([rec(j) for j in range(50)])
        st = store.status()
        assert st.acked == 0 and st.unacked == len(kept) and st.last_seq == kept[-1]
        assert _records_on_disk(tmp_path / "o.db") == kept
        # still able to drain: the batch comes out even if the sent mark does not fit
        assert [s for s, _ in store.next_batch(10)] == kept[:10]
        assert store.acknowledge([(kept[0], kept[9])]) == 10
        assert store.integrity_check() == ["ok"]


def test_one_store_shared_by_an_appending_and_a_draining_thread(tmp_path: Path) -> None:
    import threading

    with Store(tmp_path / "o.db", Clock()) as store:
        delivered: list[int] = []
        done = threading.Event()

        def poller() -> None:
            for i in range(50):
                store.append([rec(10 * i + j) for j in range(10)])
            done.set()

        def uplink() -> None:
            while not (done.is_set() and store.status().unacked == 0):
                batch = store.next_batch(7)
                if batch:
                    delivered.extend(s for s, _ in batch)
                    store.acknowledge([(batch[0][0], batch[-1][0])])

        threads = [threading.Thread(target=poller), threading.Thread(target=uplink)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert delivered == list(range(1, 501))


def test_windows_of_one_width_by_time_and_the_newest_per_channel(tmp_path: Path) -> None:
    hourly = Record("COD", int(T0), int(T0) + 3600, 51.0, 40.0, 60.0, 1.0, 12, 12, True,
                    Status.MEASURING, "mg/L")
    with Store(tmp_path / "outbox.sqlite", Clock()) as store:
        seqs = store.append([rec(2), rec(0), rec(0, "TSS"), hourly, rec(1)])
        five = store.windows(300)
        assert [r.start - int(T0) for _, r in five] == [0, 0, 300, 600]  # by start, then seq
        assert [s for s, _ in five][:2] == [seqs[1], seqs[2]]
        assert [r.start for _, r in store.windows(300, start_from=T0 + 1)] == [
            int(T0) + 300, int(T0) + 600]
        assert [r.end for _, r in store.windows(300, end_until=T0 + 600)] == [
            int(T0) + 300, int(T0) + 300, int(T0) + 600]
        assert [r for _, r in store.windows(3600)] == [hourly]
        assert store.last_window_ends(300) == {"COD": int(T0) + 900, "TSS": int(T0) + 300}
        assert store.last_window_ends(60) == {}
