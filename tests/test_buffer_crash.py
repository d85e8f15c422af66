"""Kill -9 at 100 random moments: nothing committed is lost, duplicated or renumbered.

A forked child appends records, sends, acknowledges, requeues and prunes in a loop on a real
SQLite file, reporting each operation on a pipe only after the call returned (i.e. after the
commit). The test SIGKILLs it at a random moment, reopens the store and checks every report
against the file. A fork, not a fresh interpreter, keeps 100 lives well under a minute.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from pathlib import Path

import pytest

from buffer import Store
from protocol.model import Record, Status

LIVES = 100
K_PER_LIFE = 10_000_000


def rec(k: int) -> Record:
    """Record number ``k``: its identity is its window start, unique over all lives."""
    return Record("COD", k, k + 1, float(k), 0.0, 1.0, 0.5, 1, 1, True, Status.MEASURING, "mg/L")


def child(path: Path, life: int, seed: int, fd: int) -> None:
    """The writer: every report is written after the call it reports has returned."""
    rnd = random.Random(seed)
    skew = [0.0]  # the retention is 60 days at least: prune jumps the writer's clock past it
    store = Store(path, lambda: time.time() + skew[0])
    os.write(fd, b"R\n")
    k = life * K_PER_LIFE
    while True:
        n = rnd.randint(1, 20)
        seqs = store.append([rec(k + i) for i in range(n)])
        os.write(fd, f"A {seqs[0]} {k} {n}\n".encode())
        k += n
        batch = store.next_batch(rnd.randint(1, 30))
        if batch and rnd.random() < 0.8:
            first, last = batch[0][0], batch[-1][0]
            store.acknowledge([(first, last)])
            os.write(fd, f"K {first} {last}\n".encode())
        if rnd.random() < 0.1:
            store.requeue()
        if rnd.random() < 0.05:
            skew[0] += 61 * 86400.0
            store.prune()


def read_all(fd: int) -> list[str]:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode().splitlines()


def wait_ready(fd: int, deadline_s: float) -> bytes:
    """Wait (with a deadline) until the child has opened the store, and return what it said."""
    ready, _, _ = select.select([fd], [], [], deadline_s)
    if not ready:
        raise AssertionError(f"child not ready within {deadline_s} s")
    return os.read(fd, 2)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigkill_at_100_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    seed = int(os.environ.get("CRASH_SEED", time.time_ns() % 1_000_000))
    rnd = random.Random(seed)
    print(f"CRASH_SEED={seed}")
    committed: dict[int, int] = {}  # seq -> k, of every append reported back
    acked: set[int] = set()  # seqs whose acknowledgement was reported back
    max_seq_seen = 0
    appended_total = 0
    for life in range(1, LIVES + 1):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 0
            try:
                os.close(read_fd)
                child(path, life, seed * 1000 + life, write_fd)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write_fd)
        try:
            if rnd.random() < 0.1:
                time.sleep(rnd.uniform(0, 0.005))  # sometimes while it is opening the store
            else:
                assert wait_ready(read_fd, 30.0) == b"R\n"
                time.sleep(rnd.uniform(0, 0.03))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status), f"life {life}: child exited by itself ({status})"
            lines = read_all(read_fd)
        finally:
            os.close(read_fd)

        life_seqs: list[int] = []
        for line in lines:
            kind, *nums = line.split()
            if kind == "A":
                first, k, n = map(int, nums)
                for i in range(n):
                    committed[first + i] = k + i
                    life_seqs.append(first + i)
                appended_total += n
            elif kind == "K":
                first, last = map(int, nums)
                acked.update(s for s in range(first, last + 1) if s in committed)
        if life_seqs:  # strictly increasing within the life and above every earlier life
            assert life_seqs == sorted(set(life_seqs)), f"life {life}: seqs not increasing"
            assert life_seqs[0] > max_seq_seen, f"life {life}: seq {life_seqs[0]} reused"

        with Store(path) as store:
            assert store.moved_aside is None, f"life {life}: the store was found corrupt"
            assert store.integrity_check(full=True) == ["ok"], f"life {life}"
            rows = store.query('SELECT seq, start, acked_at IS NOT NULL FROM records ORDER BY seq')
            last_seq = store.status().last_seq
        on_disk = {seq: (k, is_acked) for seq, k, is_acked in rows}
        ks = [k for _, k, _ in rows]
        assert len(ks) == len(set(ks)), f"life {life}: a record is stored twice"
        assert ks == sorted(ks), f"life {life}: seq order differs from append order"
        for seq, k in committed.items():
            if seq in on_disk:
                assert on_disk[seq][0] == k, f"life {life}: seq {seq} holds another record"
                if seq in acked:
                    assert on_disk[seq][1], f"life {life}: ack of seq {seq} lost"
            else:  # only an acknowledged record may be gone (pruned)
                assert seq in acked, f"life {life}: committed seq {seq} (k={k}) lost"
        # an ack committed just before the kill, its report never written, is seen here;
        # a later life may prune that record, which is no loss
        acked.update(seq for seq, (_, is_acked) in on_disk.items() if is_acked)
        max_seq_seen = max(max_seq_seen, last_seq, *on_disk, *committed, 0)

    assert appended_total > 1000, f"the children appended only {appended_total} records"
    assert len(acked) > 100
