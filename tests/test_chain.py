"""The outbox's evidence chain (buffer.chain, Store): every record linked to the one before in
the insert's own transaction, no torn link after SIGKILL, schema 2 files migrated with a
genesis note, signed checkpoints, pruning that keeps the pruned prefix attested, and the
60-day floor on record retention."""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from buffer import Store, chain
from buffer.chain import GENESIS, Signer
from buffer.rows import RECORD_COLUMNS, row_record
from buffer.store import LEGAL_RETENTION_S
from edge_agent.config.reader import ConfigError, load_config
from protocol.model import Record, Status
from tests.mqtt_world import wait_for
from tests.test_circular10 import STATION

DAY = 86400.0
T0 = 1_763_900_000


class Clock:
    def __init__(self, t: float = T0 + 3600) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def rec(i: int, channel: str = "COD", mean: float = 50.0) -> Record:
    return Record(channel, T0 + 300 * i, T0 + 300 * (i + 1), mean + i, 40.0, 60.0, 1.5, 30, 30,
                  True, Status.MEASURING, "mg/L")


def signer() -> Signer:
    return Signer("HCM-WW-0001", Ed25519PrivateKey.generate())


def chain_problems(path: Path) -> list[str]:
    """Recompute the whole chain of an outbox file read-only; what does not hold."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    cols = ", ".join(RECORD_COLUMNS)
    rows = conn.execute(f"SELECT chain_n, seq, {cols}, link FROM records ORDER BY chain_n")
    out, prev, expect_n = [], GENESIS, 1
    last = (0, 0, GENESIS)
    for row in rows:
        n, seq = int(row[0]), int(row[1])
        if n != expect_n:  # pruned before n: a checkpoint must attest link_{n-1}
            cp = conn.execute("SELECT link FROM checkpoints WHERE n=? AND kind=?",
                              (n - 1, chain.PRUNE)).fetchone()
            if cp is None:
                out.append(f"chain position {n}, expected {expect_n}, no checkpoint at {n - 1}")
            else:
                prev = bytes(cp[0])
        link = chain.link(prev, n, seq, row_record(row[2:-1]))
        if link != bytes(row[-1]):
            out.append(f"link of chain {n} (seq {seq}) does not recompute")
        prev, expect_n, last = bytes(row[-1]), n + 1, (n, seq, bytes(row[-1]))
    head = conn.execute("SELECT value FROM meta WHERE key='chain_head'").fetchone()[0]
    head_n = int(head.split()[0])
    if head_n > last[0]:  # the head record itself was pruned (every record, say, after 60
        # days acked): the prune checkpoint of its position attests it
        cp = conn.execute("SELECT n, seq, link FROM checkpoints WHERE n=? AND kind=?",
                          (head_n, chain.PRUNE)).fetchone()
        if cp is not None:
            last = (int(cp[0]), int(cp[1]), bytes(cp[2]))
    if head != f"{last[0]} {last[1]} {last[2].hex()}":
        out.append(f"chain head {head!r} is not the last record {last[:2]}")
    conn.close()
    return out


def test_a_link_covers_every_field_its_position_and_its_predecessor() -> None:
    base = chain.link(GENESIS, 1, 1, rec(0))
    assert len(base) == 32
    changed = [
        chain.link(GENESIS, 1, 1, rec(0, mean=50.0001)),
        chain.link(GENESIS, 1, 1, rec(0, channel="TSS")),
        chain.link(GENESIS, 2, 1, rec(0)),  # another position
        chain.link(GENESIS, 1, 2, rec(0)),  # another seq
        chain.link(b"\x01" + GENESIS[1:], 1, 1, rec(0)),  # another predecessor
    ]
    assert base not in changed and len(set(changed)) == len(changed)
    # NaN has one form whatever its bits: the value read back from SQLite links alike
    nan = Record("O2", 0, 60, math.nan, math.nan, math.nan, math.nan, 0, 60, False,
                 Status.OFFLINE, "%")
    assert chain.link(GENESIS, 1, 1, nan) == chain.link(GENESIS, 1, 1, replace(nan, mean=-math.nan))


def test_appends_are_chained_in_their_transaction_and_recover_chains_after(
        tmp_path: Path) -> None:
    clock = Clock()
    with Store(tmp_path / "o.db", clock) as store:
        store.append([rec(i) for i in range(5)])
        store.append([rec(5)])
        assert store.chain_head()[:2] == (6, 6)
    assert chain_problems(tmp_path / "o.db") == []
    # a moved-aside file's records imported later are chained after the head, in import order
    aside = tmp_path / "o.db.old"
    with Store(aside, clock) as old:
        old.append([rec(100 + i, "TSS") for i in range(3)])
    with Store(tmp_path / "o.db", clock) as store:
        got = store.recover(aside)
        assert got.imported == 3
        assert [n for n, _, _, _ in store.chained(7, 9)] == [7, 8, 9]
    assert chain_problems(tmp_path / "o.db") == []


WRITER = """
import os, sys, time
from buffer import Store
from protocol.model import Record, Status
path, fd, life = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
skew = [0.0]
store = Store(path, lambda: time.time() + skew[0])
os.write(fd, b"R\\n")
k = life * 1_000_000
import random
rnd = random.Random(life)
while True:
    n = rnd.randint(1, 40)
    store.append([Record("COD", k + i, k + i + 1, float(k + i), 0.0, 1.0, 0.5, 1, 1, True,
                         Status.MEASURING, "mg/L") for i in range(n)])
    k += n
    batch = store.next_batch(rnd.randint(1, 50))
    if batch:
        store.acknowledge([(batch[0][0], batch[-1][0])])
    if rnd.random() < 0.05:
        skew[0] += 61 * 86400.0
        store.prune()
    if rnd.random() < 0.05:
        store.checkpoint()
    os.write(fd, b"A\\n")
"""


def test_sigkill_at_random_moments_leaves_no_torn_link(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    rnd = random.Random(13)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for life in range(8):
        r, w = os.pipe()
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), str(life)],
                                pass_fds=(w,), env=env)
        os.close(w)
        got = bytearray()

        def appended(want: int, fd: int = r, buf: bytearray = got) -> bool:
            buf.extend(os.read(fd, 65536))
            return buf.count(b"A") >= want

        wait_for(lambda: appended(rnd.randint(1, 30)), 60.0, "the writer appended")
        time.sleep(rnd.random() * 0.05)  # a random moment inside whatever it does next
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        os.close(r)
        assert chain_problems(path) == [], f"life {life}"
    with Store(path) as store:  # and it goes on: the next append links to the kept head
        n = store.chain_head()[0]
        store.append([rec(0)])
        assert store.chain_head()[0] == n + 1
    assert chain_problems(path) == []


def _as_schema_2(path: Path) -> None:
    """Make a schema 3 outbox look like the schema 2 file a release before the chain wrote."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("ALTER TABLE records DROP COLUMN chain_n")
    conn.execute("ALTER TABLE records DROP COLUMN link")
    conn.execute("DROP TABLE checkpoints")
    conn.execute("DELETE FROM meta WHERE key='chain_head'")
    conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    conn.execute("PRAGMA user_version=2")
    conn.close()


def test_a_schema_2_outbox_gets_a_chain_started_at_migration_with_a_genesis_note(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "o.db"
    with Store(path, Clock()) as store:
        store.append([rec(i) for i in range(4)])
    _as_schema_2(path)
    with caplog.at_level("WARNING", logger="quantrac.buffer"), Store(path, Clock()) as store:
        assert "outbox_chain_started" in caplog.text
        [genesis] = store.checkpoints(0, 0)
        assert genesis.kind == chain.GENESIS_KIND and genesis.link == GENESIS
        assert "migration" in genesis.note and "seq 1..4" in genesis.note
        assert store.chain_head()[:2] == (4, 4)
        store.append([rec(4)])
    assert chain_problems(path) == []


def test_checkpoints_sign_the_head_and_prune_keeps_the_pruned_prefix_attested(
        tmp_path: Path) -> None:
    clock = Clock()
    key = signer()
    with Store(tmp_path / "o.db", clock, signer=key) as store:
        store.append([rec(i) for i in range(10)])
        cp = store.checkpoint()
        assert cp is not None and (cp.n, cp.seq) == (10, 10)
        assert chain.checkpoint_valid(cp, key.key.public_key())
        assert not chain.checkpoint_valid(cp, Ed25519PrivateKey.generate().public_key())
        assert store.checkpoint() is None  # nothing stored since
        store.next_batch(100)
        store.acknowledge([(1, 6)])  # 7..10 stay unacknowledged
        link6 = store.link_at(6)
        clock.t += 61 * DAY
        assert store.prune().records == 6
        assert [n for n, _, _, _ in store.chained(0, 100)] == [7, 8, 9, 10]
        [pruned] = [c for c in store.checkpoints() if c.kind == chain.PRUNE]
        assert (pruned.n, pruned.seq, pruned.link) == (6, 6, link6)
        assert chain.checkpoint_valid(pruned, key.key.public_key())
        # a verifier starts from it: the first remaining record links from the attested link
        n, seq, first, link7 = store.chained(7, 7)[0]
        assert chain.link(pruned.link, n, seq, first) == link7
        assert store.link_at(6) == link6  # from the checkpoint, the row is gone


def test_every_record_pruned_leaves_the_head_attested_and_the_chain_goes_on(
        tmp_path: Path) -> None:
    """Sixty days after the last ack the whole outbox may go (seen in the SIGKILL test above,
    1 run in 20): the head then names a record no longer there, and its prune checkpoint
    attests it; the next record links to it."""
    clock = Clock()
    with Store(tmp_path / "o.db", clock) as store:
        store.append([rec(i) for i in range(4)])
        head = store.chain_head()
        store.next_batch(100)
        store.acknowledge([(1, 4)])
        clock.t += 61 * DAY
        assert store.prune().records == 4
        assert store.chained(0, 100) == [] and store.chain_head() == head
        assert store.link_at(4) == head[2]
    assert chain_problems(tmp_path / "o.db") == []
    with Store(tmp_path / "o.db", clock) as store:
        store.append([rec(4)])
        n, seq, first, link5 = store.chained(5, 5)[0]
        assert chain.link(head[2], n, seq, first) == link5
    assert chain_problems(tmp_path / "o.db") == []


def test_pruning_never_removes_a_record_younger_than_60_days(tmp_path: Path) -> None:
    clock = Clock(T0 + 61 * DAY)
    with Store(tmp_path / "o.db", clock) as store:
        # a window stamped an hour ahead of its acknowledgement (a clock that ran fast)
        young = Record("COD", int(clock.t) + 3300, int(clock.t) + 3600, 1.0, 1.0, 1.0, 0.0, 1,
                       1, True, Status.MEASURING, "mg/L")
        store.append([rec(0), young])
        store.next_batch(10)
        store.acknowledge([(1, 2)])
        clock.t += 60 * DAY - 1  # acknowledged 60 days ago less a second: neither goes
        assert store.prune().records == 0
        clock.t += 1
        assert store.prune().records == 1  # rec(0); the young window ended < 60 days ago
        clock.t += 3599
        assert store.prune().records == 0
        clock.t += 1
        assert store.prune().records == 1


def test_a_retention_below_60_days_is_refused_by_the_store_and_the_config(
        tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="legal minimum is 60 days"):
        Store(tmp_path / "o.db", retention_s=LEGAL_RETENTION_S - 1)
    assert not (tmp_path / "o.db").exists()
    path = tmp_path / "station.toml"
    path.write_text(STATION.replace('state_dir = "state"',
                                    'state_dir = "state"\nrecord_retention_days = 30'))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "record_retention_days" in str(err.value) and "60" in str(err.value)
