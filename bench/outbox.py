"""Outbox and envelope throughput, each against a baseline measured in the same run.

Outbox: records/s for ``Store.append`` (batches), ``next_batch`` and ``acknowledge``, against
a bare ``sqlite3.executemany`` insert of the same rows into a table of the same columns, in
transactions of the same batch size, with the same pragmas (journal_mode=WAL,
synchronous=FULL) on the same filesystem. Target: append within 3x of the bare insert.

Envelope: packets/s and records/s for encode+seal and for open (HPKE open, signature verify,
payload decode) of 200-record packets, one thread. Target: seal+open >= 50,000 records/s.

Run: ``.venv/bin/python bench/outbox.py [--records N] [--batch B] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from buffer import Store
from buffer.rows import RECORD_COLUMNS, RECORD_COLUMNS_SQL, record_row
from protocol import envelope as env
from protocol.model import Record, Status

CHANNELS = ["pH", "COD", "TSS", "NH4", "Flow", "Temp", "SO2", "NOx", "CO", "O2"]


def make_records(n: int) -> list[Record]:
    t0 = 1_763_900_000
    return [
        Record(CHANNELS[i % 10], t0 + 300 * (i // 10), t0 + 300 * (i // 10 + 1), 7.0 + i % 13,
               6.5, 7.9, 0.12, 29, 30, True, Status.MEASURING, "mg/L")
        for i in range(n)
    ]  # fmt: skip


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def bench_outbox(records: list[Record], batch: int, workdir: Path) -> None:
    batches = [records[i : i + batch] for i in range(0, len(records), batch)]
    n = len(records)

    base = sqlite3.connect(workdir / "baseline.db", isolation_level=None)
    base.execute("PRAGMA journal_mode=WAL")
    base.execute("PRAGMA synchronous=FULL")
    base.execute(f"CREATE TABLE records (seq INTEGER PRIMARY KEY, {RECORD_COLUMNS_SQL}, "
                 "created REAL NOT NULL, sent_at REAL, acked_at REAL)")  # fmt: skip
    cols = ", ".join(RECORD_COLUMNS)
    sql = f"INSERT INTO records ({cols}, created) VALUES ({', '.join('?' * 14)})"
    now = time.time()

    def baseline() -> None:
        for b in batches:
            base.execute("BEGIN")
            base.executemany(sql, [(*record_row(r), now) for r in b])
            base.execute("COMMIT")

    t_base = timed(baseline)
    base.close()

    store = Store(workdir / "outbox.db")
    t_append = timed(lambda: [store.append(b) for b in batches])
    sent: list[tuple[int, int]] = []

    def drain() -> None:
        while got := store.next_batch(batch):
            sent.append((got[0][0], got[-1][0]))

    t_next = timed(drain)
    t_ack = timed(lambda: [store.acknowledge([r]) for r in sent])
    assert store.status().unacked == 0 and store.status().acked == n
    store.close()

    print(f"outbox: {n} records in batches of {batch}; pragmas WAL + synchronous=FULL on both")
    print(f"  baseline executemany insert  {n / t_base:12,.0f} records/s")
    for name, t in (("append", t_append), ("next_batch", t_next), ("acknowledge", t_ack)):
        print(f"  {name:<28} {n / t:12,.0f} records/s   {t / t_base:5.2f}x baseline time")
    verdict = "OK" if t_append <= 3 * t_base else "MISSED"
    print(f"  target append within 3x of the bare insert: {t_append / t_base:.2f}x  {verdict}")


def bench_envelope(records: list[Record], per_packet: int, packets: int) -> None:
    station = Ed25519PrivateKey.generate()
    centre = X25519PrivateKey.generate()
    kid = env.key_id(station.public_key())
    cid = env.key_id(centre.public_key())
    chunks = [
        [(i * per_packet + j + 1, r) for j, r in enumerate(records[:per_packet])]
        for i in range(packets)
    ]

    def lookup(station_id: str, key: bytes) -> Ed25519PublicKey:
        return station.public_key()

    sealed: list[bytes] = []

    def seal_all() -> None:
        for chunk in chunks:
            header = env.Header(env.VERSION, env.SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305,
                                "HN-KCN-01", kid, cid, chunk[0][0], chunk[-1][0],
                                1_763_900_000_000)  # fmt: skip
            sealed.append(env.seal(header, env.encode_records(chunk), station,
                                   centre.public_key()))  # fmt: skip

    def open_all() -> None:
        for p in sealed:
            env.open_packet(p, centre, lookup, centre_key_id=cid)

    t_seal = timed(seal_all)
    t_open = timed(open_all)
    n = packets * per_packet
    print(f"envelope: {packets} packets of {per_packet} records ({len(sealed[0])} bytes each)")
    print(f"  encode+seal  {packets / t_seal:9,.0f} packets/s {n / t_seal:12,.0f} records/s")
    print(f"  open+decode  {packets / t_open:9,.0f} packets/s {n / t_open:12,.0f} records/s")
    both = n / (t_seal + t_open)
    verdict = "OK" if both >= 50_000 else "MISSED"
    print(f"  seal+open    {both:12,.0f} records/s  ({both / 50_000:.1f}x the 50,000 target) "
          f"{verdict}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--packets", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite files go")
    args = parser.parse_args()
    records = make_records(max(args.records, args.batch))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        bench_outbox(records, args.batch, Path(tmp))
    bench_envelope(records, args.batch, args.packets)


if __name__ == "__main__":
    main()
