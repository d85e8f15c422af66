"""The outbox's own defences, on real SQLite files and a real full filesystem (tmpfs):
record checksums (a flipped bit is quarantined, never sent), the outbox's SQLite identity (a
foreign database is refused untouched), moved-aside files shown and recovered, what a full
disk gives up (the 60-day retention last, and reported), and the reserve for a stop on a full
disk."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from buffer import Store, StoreFullError
from buffer.db import check_integrity
from buffer.store import APPLICATION_ID, BYTES_PER_RECORD, SCHEMA_VERSION, ForeignDatabaseError
from protocol.model import Record, Status
from protocol.payload import same_record

T0 = 1_763_900_000.0
DAY = 86400.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def rec(i: int, channel: str = "COD", mean: float | None = None) -> Record:
    return Record(channel, int(T0) + 300 * i, int(T0) + 300 * (i + 1),
                  50.0 + i if mean is None else mean, 40.0, 160.0, 1.5, 28, 30, True,
                  Status.MEASURING, "mg/L")  # fmt: skip


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real filesystem of ``size`` (needs root, as in CI here)."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        # no skip: a full disk is what these tests are about, and CI here runs as root
        pytest.fail(f"cannot mount a tmpfs (run the tests as root): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte with one file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (bytes(65536), bytes(512), b"\0"):
            with contextlib.suppress(OSError):
                while os.write(fd, chunk):
                    pass
    finally:
        os.close(fd)
    return filler


# --------------------------------------------------------------------------- S7: checksums


def test_a_flipped_bit_in_a_stored_mean_is_quarantined_never_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite"
    with Store(path, Clock()) as store:
        store.append([rec(0), rec(1, mean=137.9), rec(2)])
    raw = path.read_bytes()
    good, evil = struct.pack(">d", 137.9), struct.pack(">d", 275.8)
    assert raw.count(good) == 1
    assert bin(int.from_bytes(good, "big") ^ int.from_bytes(evil, "big")).count("1") == 1
    path.write_bytes(raw.replace(good, evil))  # one bit, as a worn SD card does it
    assert check_integrity(path) is None and check_integrity(path, full=True) is None
    with caplog.at_level(logging.ERROR, logger="quantrac.buffer"), Store(path, Clock()) as store:
        assert store.integrity_check(full=True) == ["ok"]  # SQLite sees nothing wrong
        batch = store.next_batch(10)
        assert [s for s, _ in batch] == [1, 3]
        assert all(r.mean != 275.8 for _, r in batch)
        events = [r for r in caplog.records if r.getMessage() == "record_checksum_failed"]
        assert len(events) == 1 and events[0].seq == 2  # type: ignore[attr-defined]
        assert str(path) == events[0].path  # type: ignore[attr-defined]
        st = store.status()
        assert st.quarantined == 1 and st.unacked == 3  # kept, not dropped
        [problem] = store.problems()
        assert str(path) in problem and "checksum" in problem and "seq 2..2" in problem
        # a resend request does not release it, nor do the other reads
        store.acknowledge([(1, 3)])
        assert store.resend([(1, 3)]) == 2
        assert [s for s, _ in store.next_batch(10)] == [1, 3]
        assert [s for s, _ in store.get(1, 3)] == [1, 3]
        assert [s for s, _ in store.windows(300)] == [1, 3]
        assert store.query("SELECT mean FROM records WHERE seq=2") == [(275.8,)]  # evidence


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, mean REAL, min REAL, max REAL, std REAL,
    n_valid INTEGER NOT NULL, n_expected INTEGER NOT NULL, valid INTEGER NOT NULL,
    status INTEGER NOT NULL, unit TEXT NOT NULL, flags INTEGER NOT NULL, created REAL NOT NULL,
    sent_at REAL, acked_at REAL);
CREATE TABLE samples (id INTEGER PRIMARY KEY, channel TEXT NOT NULL, t REAL NOT NULL,
    value REAL, status INTEGER NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
"""


def schema_1_outbox(path: Path, records: list[Record], acked: int = 0) -> None:
    """An outbox as release 1 wrote it: no application_id, no checksums."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_1)
    for i, r in enumerate(records, 1):
        conn.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                     (i, r.channel, r.start, r.end, r.mean, r.min, r.max, r.std, r.n_valid,
                      r.n_expected, int(r.valid), int(r.status), r.unit, int(r.flags), T0,
                      T0 if i <= acked else None, T0 if i <= acked else None))
    conn.commit()
    conn.close()


def test_a_schema_1_outbox_is_migrated_then_checked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite"
    schema_1_outbox(path, [rec(0), rec(1, mean=137.9)])
    with caplog.at_level(logging.WARNING, logger="quantrac.buffer"), Store(path, Clock()) as s:
        assert "outbox_migrated" in caplog.text
        assert s.query("PRAGMA application_id") == [(APPLICATION_ID,)]
        assert s.query("PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert [seq for seq, _ in s.get(1, 2)] == [1, 2]
        assert s.append([rec(2)]) == [3]
    path.write_bytes(path.read_bytes().replace(struct.pack(">d", 137.9),
                                               struct.pack(">d", 275.8)))
    with Store(path, Clock()) as s:
        assert [seq for seq, _ in s.next_batch(10)] == [1, 3]
        assert s.status().quarantined == 1


# --------------------------------------------------------------------------- S8: identity


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("ddl", [
    "CREATE TABLE records (id INTEGER PRIMARY KEY, reading REAL)",  # was: no such column: seq
    "CREATE TABLE readings (t REAL, v REAL)",  # was: outbox tables silently added
    "PRAGMA application_id=1234; CREATE TABLE meta (key TEXT, value TEXT)",
])
def test_a_foreign_database_is_refused_naming_the_file_and_left_untouched(
    tmp_path: Path, ddl: str
) -> None:
    path = tmp_path / "outbox.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(ddl)
    conn.close()
    before = sha(path)
    with pytest.raises(ForeignDatabaseError) as info:
        Store(path, Clock())
    assert str(path) in str(info.value) and "not a quantrac outbox" in str(info.value)
    assert sha(path) == before
    assert not Path(f"{path}-wal").exists()


def test_an_outbox_is_marked_with_its_application_id(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    Store(path, Clock()).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    Store(path, Clock()).close()  # and is opened again


# --------------------------------------------------------------------------- S8: moved aside


def test_a_moved_aside_outbox_is_a_problem_until_recovered_seqs_kept(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "outbox.sqlite"
    with Store(path, clock) as old:
        old.append([rec(i) for i in range(10)])  # seqs 1..10
        old.next_batch(5)
        old.acknowledge([(1, 3)])  # 4, 5 sent but their ack was lost; 6..10 never sent
    aside = tmp_path / "outbox.sqlite.bak"
    os.replace(path, aside)
    with Store(path, clock) as live:  # started fresh: seqs from 1 again
        live.append([rec(100 + i, "TSS") for i in range(5)])  # seqs 1..5
        [problem] = live.problems()
        assert str(aside) in problem and "7 unacknowledged" in problem
        assert f"quantrac outbox recover {aside}" in problem
        got = live.recover(aside)
        assert (got.imported, got.renumbered, got.acked_skipped, got.already_held,
                got.quarantined, got.unreadable) == (7, 2, 3, 0, 0, [])
        assert live.problems() == []
        held = {r.start: (seq, r) for seq, r in live.get(0, 1 << 62)}
        for i in range(5, 10):  # no clash: under their own seqs, exactly as they were
            seq, r = held[rec(i).start]
            assert seq == i + 1 and same_record(r, rec(i))
        for i in (3, 4):  # their seqs are taken here by other records: numbered on top
            seq, r = held[rec(i).start]
            assert seq > 10 and same_record(r, rec(i))
        again = live.recover(aside)  # idempotent: nothing is stored twice
        assert (again.imported, again.already_held) == (0, 7)
        assert live.status().unacked == 12


def test_recover_of_a_file_moved_aside_as_corrupt_keeps_what_reads(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "outbox.sqlite"
    with Store(path, clock) as old:
        old.append([rec(i, mean=1000.5 + i) for i in range(2000)])  # many pages of records
    raw = bytearray(path.read_bytes())
    page = 4096
    at = raw.index(struct.pack(">d", 2000.5)) // page * page  # a leaf page in the middle
    raw[at:at + page] = os.urandom(page)
    path.write_bytes(bytes(raw))
    with Store(path, clock, full_check=True) as live:
        assert live.moved_aside is not None
        assert [p for p in live.problems() if str(live.moved_aside) in p]
        got = live.recover(live.moved_aside)
        assert got.unreadable and 1000 < got.imported < 2000 and got.renumbered == 0
        assert live.problems() == []
        batch = live.next_batch(5000)  # below the new floor: sent before anything new
        assert [s for s, _ in batch] == sorted(s for s, _ in batch)
        assert all(same_record(r, rec(s - 1, mean=1000.5 + s - 1)) for s, r in batch)


# --------------------------------------------------------------------------- S4: full disk


def test_a_full_disk_gives_up_expired_acked_records_before_those_the_law_covers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    with Store(tmp_path / "o.db", clock, max_bytes=160 * 1024) as store:
        recent = store.append([rec(i) for i in range(100)])  # acked today, below
        expired = store.append([rec(i, "TSS") for i in range(100)])
        store.acknowledge([(expired[0], expired[-1])])  # acked 61 days ago...
        clock.t += 61 * DAY
        store.acknowledge([(recent[0], recent[-1])])  # ...these now: the law covers them
        with caplog.at_level(logging.WARNING, logger="quantrac.buffer"):
            new: list[int] = []
            while len(store.query("SELECT seq FROM records WHERE channel='TSS'")) and \
                    len(new) < 100_000:
                new += store.append([rec(1000 + len(new) + j, "NH4") for j in range(20)])
        kept = {s for (s,) in store.query("SELECT seq FROM records WHERE acked_at IS NOT NULL")}
        assert set(recent) <= kept  # not one record the 60 days still cover was given up
        assert "retention_breached" not in caplog.text
        assert store.problems() == []


def test_giving_up_records_the_law_covers_is_reported_as_a_retention_breach(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    path = tmp_path / "o.db"
    with Store(path, clock, max_bytes=128 * 1024) as store:
        acked = store.append([rec(i) for i in range(200)])
        store.acknowledge([(acked[0], acked[-1])])
        with caplog.at_level(logging.ERROR, logger="quantrac.buffer"):
            n = 0
            while store.status().acked == 200 and n < 100_000:
                store.append([rec(1000 + n + j, "NH4") for j in range(20)])
                n += 20
        assert store.status().acked < 200
        assert 200 - store.status().acked < 100  # a little at a time, not half of 60 days
        events = [r for r in caplog.records if r.getMessage() == "retention_breached"]
        assert events and events[0].levelno == logging.ERROR
        [problem] = store.problems()
        assert "before the 60-day retention" in problem and "Decree 08/2022" in problem
    with Store(path, clock) as store:  # remembered across a restart ...
        assert any("retention" in p for p in store.problems())
        clock.t += 61 * DAY  # ... until those records would have expired anyway
        assert store.problems() == []


def test_bytes_per_record_is_what_a_record_costs_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Store(path, Clock()) as store:
        store.append([rec(0)])
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        base = path.stat().st_size
        for k in range(10):
            store.append([rec(1 + 500 * k + i, "Temp_inlet") for i in range(500)])
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        per = (path.stat().st_size - base) / 5000
    assert per <= BYTES_PER_RECORD, f"{per:.0f} bytes per record"


# --------------------------------------------------------------------------- S3: reserve


def test_closed_records_spilled_into_the_reserve_on_a_full_filesystem_come_back(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "fs", "1m") as fs:
        path = fs / "outbox.sqlite"
        store = Store(path, Clock())
        assert store.ensure_reserve(64 * 1024)
        filler = fill(fs)
        with pytest.raises(StoreFullError):
            for k in range(10_000):
                store.append([rec(20 * k + i) for i in range(20)])
        left = [rec(900_000 + i, "pH") for i in range(64)]
        with pytest.raises(StoreFullError):
            store.append(left)
        assert store.spill(left) == 64
        store.close()
        filler.unlink()
        with Store(path, Clock()) as again:
            back = again.spilled()
            assert len(back) == 64 and all(same_record(a, b) for a, b in zip(back, left,
                                                                              strict=True))
            again.append(back)
            again.clear_spill()
            assert again.spilled() == []
