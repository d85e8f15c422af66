"""A province's reconnect storm at the centre: 1,000 stations against Mosquitto and the store.

What it measures, on loopback, per store backend (SQLite, the embedded baseline, and
PostgreSQL) and per number of receivers (1, 2 and 4 ``quantrac centre serve`` processes in one
shared subscription):

* **steady state**: every station sends its newest 5-minute window (one packet of its 5-10
  channels), spread over ``--steady-s`` seconds (1,000 stations in 5 s is 60 times the real
  rate of one packet per station per 5 minutes); p50/p99 ack latency;
* **the storm**: all stations come back at once with ``--backlog-hours`` of records each and
  drain them the way the uplink does (at most ``--window`` packets unacknowledged per
  station, the next sent when an ack arrives); ingest records/s from the first packet to the
  last ack, time to drain, p50/p99 ack latency (publish to signed ack), p50/p99
  commit-to-ack (the ack's signed time, taken after the store's commit, to its arrival here:
  what the ack path adds, apart from the wait for a receiver), and the CPU the
  broker, the receivers, the database server and this load generator used (from
  ``/proc/<pid>/stat``: utime + stime, children included for PostgreSQL's postmaster), as
  cores busy on average.

Real parts: each station has its own Ed25519 key registered in the centre's registry (through
``Registry.enrol``, without the TLS certificate and bundle files of ``quantrac provision``,
which cost 90 ms a station and play no part here); packets are batched by the uplink's own
``batch_records`` (64 KiB packets) and sealed by ``protocol.envelope.seal``; acks are verified
with the centre's key by ``open_command``, as a station does. What is not a station: the
1,000 stations' packets reach the broker through one MQTT connection (and their acks come
back on a second) holding a provincial bridge identity (``bridge:bench``: the rights
``broker-config --bridge-identity`` gives, write every station's ``up``, read every
``down``), which is exactly what a national broker sees from a bridged province; 1,000 TLS
sessions in one Python process would measure the load generator. The receivers do the same
work either way.

How to read the storm's ack latency: every station sends its window at once, so the broker
holds the whole backlog (a 2 h one is one packet a station) and the last packet waits for a
receiver the whole drain: p99 is the drain time by construction, p50 about half of it, and
only a faster drain shortens them. Commit-to-ack is the receiver's and the broker's part, and
stays in milliseconds. It did not before: the receiver's paho client held an ack back while
100 were unconfirmed by the broker, whose PUBACKs come behind the packets it is streaming to
the receiver, so acks left at the end of the drain (commit-to-ack p50 1.6 s of a 4.5 s
drain; see ``centre.receiver``). The one connection here for every station's acks is no
bottleneck: acks reach it within the commit-to-ack figure, tens of milliseconds.

Each run gets a new broker (no receiver session of an earlier run left in the group) and a
new store (a new SQLite file, a new PostgreSQL database on a server started by
``tests.pg_server``). After each run the store must hold every record exactly once.

Usage: ``.venv/bin/python bench/centre_scale.py [--stations 1000] [--backlog-hours 2]
[--receivers 1,2,4] [--backends sqlite,postgresql]``; ``make bench`` runs the defaults (a 2 h
backlog: minutes, not the hour a 24 h backlog of 1,000 stations takes for six runs).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.*

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from centre.broker import bridge_cn, receiver_cn, render_acl
from protocol.envelope import (
    SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305,
    VERSION,
    EnvelopeError,
    Header,
    batch_records,
    key_id,
    open_command,
    parse_ranges,
    seal,
)
from protocol.model import Record, RecordFlag, Status
from protocol.mqtt_client import tls_client
from protocol.payload import encode_records
from protocol.topics import DOWN_FILTER, Topics, station_of
from provisioning.keys import raw_public
from tests.mosquitto import RECEIVER_NAMES, Mosquitto
from tests.mqtt_world import World

TARGET = 30_000.0  # records/s with 2 receivers (issue 18)
WINDOW_S = 300
# Thanh Hoa's 105 stations: 24 wastewater, 64 stack gas, 14 groundwater, 3 ambient
KINDS: tuple[tuple[int, tuple[tuple[str, str], ...]], ...] = (
    (24, (("pH", ""), ("COD", "mg/L"), ("TSS", "mg/L"), ("NH4", "mg/L"), ("Flow", "m3/h"),
          ("Temp", "°C"), ("TN", "mg/L"))),
    (64, (("SO2", "mg/Nm3"), ("NOx", "mg/Nm3"), ("CO", "mg/Nm3"), ("O2", "%"),
          ("Dust", "mg/Nm3"), ("Temp", "°C"), ("P", "kPa"), ("Flow", "m3/h"), ("H2O", "%"))),
    (14, (("Level", "m"), ("Flow", "m3/h"), ("Temp", "°C"), ("EC", "uS/cm"), ("V_W1", "m3"))),
    (3, (("PM10", "ug/m3"), ("PM2_5", "ug/m3"), ("SO2", "ug/m3"), ("NO2", "ug/m3"),
         ("CO", "ug/m3"), ("O3", "ug/m3"), ("Temp", "°C"), ("RH", "%"), ("WS", "m/s"),
         ("WD", "deg"))),
)  # fmt: skip


def channels_of(i: int) -> tuple[tuple[str, str], ...]:
    """Station ``i``'s channels, in the proportions of one real province."""
    k = i % sum(n for n, _ in KINDS)
    for n, chans in KINDS:
        if k < n:
            return chans
        k -= n
    raise AssertionError("unreachable")


@dataclass
class Packet:
    first: int
    last: int
    records: int
    data: bytes


@dataclass
class Station:
    sid: str
    steady: Packet
    backlog: list[Packet]
    next_index: int = 0
    inflight: dict[int, tuple[Packet, float]] = field(default_factory=dict)


def make_stations(world: World, n: int, hours: float, now: float) -> list[Station]:
    """Keys registered with the centre, and every station's packets sealed ahead of time."""
    centre = world.centre
    centre_pub = centre.packet_private.public_key()
    centre_kid = key_id(centre_pub)
    windows = max(1, round(hours * 3600 / WINDOW_S))
    end0 = int(now) - int(now) % WINDOW_S
    out: list[Station] = []
    with centre.registry() as registry:
        for i in range(n):
            sid = f"BENCH-{i:04d}"
            sk = Ed25519PrivateKey.generate()
            kid = key_id(sk.public_key())
            registry.enrol(sid, kid, raw_public(sk.public_key()), None, os.urandom(16), i + 1,
                           "", now + 365 * 86400)  # fmt: skip
            chans = channels_of(i)
            pairs: list[tuple[int, Record]] = []
            seq = 0
            # oldest first: the first window is the steady state's (sent before the outage),
            # the rest the backlog that piled up during it, so seqs grow as time does
            for w in range(windows, -1, -1):
                start = end0 - (w + 1) * WINDOW_S
                for c, (name, unit) in enumerate(chans):
                    seq += 1
                    mean = 10.0 + (i * 31 + c * 7 + w) % 400 / 8.0
                    pairs.append((seq, Record(name, start, start + WINDOW_S, mean, mean - 1.0,
                                              mean + 1.5, 0.25, 30, 30, True, Status.MEASURING,
                                              unit, RecordFlag.NONE)))  # fmt: skip
            steady_pairs = pairs[: len(chans)]

            def sealed(batch: list[tuple[int, Record]], sid: str = sid, kid: bytes = kid,
                       sk: Ed25519PrivateKey = sk) -> Packet:  # fmt: skip
                header = Header(VERSION, SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305, sid, kid,
                                centre_kid, batch[0][0], batch[-1][0], int(time.time() * 1000))
                data = seal(header, encode_records(batch), sk, centre_pub)
                return Packet(batch[0][0], batch[-1][0], len(batch), data)

            backlog = [sealed(b) for b in batch_records(pairs[len(chans) :],
                                                        station_id_len=len(sid))]  # fmt: skip
            out.append(Station(sid, sealed(steady_pairs), backlog))
    return out


class Loader:
    """The stations' side: publishes through one bridge connection, verifies acks."""

    def __init__(self, broker: Mosquitto, certs: list[tuple[Path, Path]], world: World,
                 stations: list[Station], window: int) -> None:  # fmt: skip
        self.verify = world.centre.signing_private.public_key()
        self.stations = {s.sid: s for s in stations}
        self.window = window
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.transits: list[float] = []  # ack's signing (after the commit) to its arrival
        self.acked_records = 0
        self.expected = 0
        self.done = threading.Event()
        self.resends = 0
        self.bad_acks = 0
        self.last_ack = 0.0
        # Two connections: packets out on one, acks in on the other. On one connection the
        # PUBACKs for the acks queue behind megabytes of packets in paho's outgoing FIFO, the
        # broker stops sending acks after 100 unconfirmed ones, and every ack seems to arrive
        # at the end of the storm. Each real station has its own connection and never sees it.
        self.client = tls_client("bench-out", ca_cert=broker.ca_path, cert=certs[0][0],
                                 key=certs[0][1], persistent=False, max_inflight=2000)  # fmt: skip
        self.acks = tls_client("bench-acks", ca_cert=broker.ca_path, cert=certs[1][0],
                               key=certs[1][1], persistent=False)  # fmt: skip
        subscribed = threading.Event()
        self.acks.on_connect = lambda c, u, f, rc, p: c.subscribe(DOWN_FILTER, qos=1)
        self.acks.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        self.acks.on_message = self._on_message
        for client in (self.client, self.acks):
            client.connect(broker.host, broker.port)
            client.loop_start()
        if not subscribed.wait(20):
            raise RuntimeError("the load generator could not subscribe to the acks")

    def close(self) -> None:
        for client in (self.client, self.acks):
            client.disconnect()
            client.loop_stop()

    def _publish(self, st: Station, packet: Packet) -> None:
        st.inflight[packet.first] = (packet, time.perf_counter())
        self.client.publish(Topics.for_station(st.sid).up, packet.data, qos=1)

    def _on_message(self, client: object, userdata: object, msg: object) -> None:
        topic, payload = msg.topic, bytes(msg.payload)  # type: ignore[attr-defined]
        sid = station_of(topic)
        st = self.stations.get(sid or "")
        if st is None:
            return
        try:
            cmd = open_command(payload, self.verify, st.sid, 0)
        except EnvelopeError:
            self.bad_acks += 1
            return
        if cmd.kind != "ack":
            self.resends += 1
            return
        now = time.perf_counter()
        ranges = parse_ranges(cmd.body)
        transit = time.time() - cmd.created / 1000  # same host, same clock as the receivers'
        with self.lock:
            self.transits.append(transit)
            for first, (packet, sent) in list(st.inflight.items()):
                if any(a <= packet.first and packet.last <= b for a, b in ranges):
                    del st.inflight[first]
                    self.latencies.append(now - sent)
                    self.acked_records += packet.records
            self._fill(st)
            self.last_ack = now
            if self.acked_records >= self.expected:
                self.done.set()

    def _fill(self, st: Station) -> None:
        while len(st.inflight) < self.window and st.next_index < len(st.backlog):
            st.next_index += 1
            self._publish(st, st.backlog[st.next_index - 1])

    def steady(self, seconds: float) -> list[float]:
        """Each station's newest window once, evenly over ``seconds``; the ack latencies."""
        with self.lock:
            self.latencies, self.acked_records, self.done = [], 0, threading.Event()
            self.transits = []
            self.expected = sum(s.steady.records for s in self.stations.values())
        gap = seconds / len(self.stations)
        t0 = time.perf_counter()
        for k, st in enumerate(self.stations.values()):
            delay = t0 + k * gap - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # the load's own pacing, not a wait for a result
            with self.lock:
                st.next_index = len(st.backlog)  # nothing else to send in this phase
                self._publish(st, st.steady)
        if not self.done.wait(120):
            raise RuntimeError(f"steady state: {self.acked_records} of {self.expected} acked")
        return list(self.latencies)

    def storm(self, timeout: float) -> tuple[float, list[float]]:
        """Every station at once with its backlog; (seconds to the last ack, latencies)."""
        with self.lock:
            self.latencies, self.acked_records, self.done = [], 0, threading.Event()
            self.transits = []
            self.expected = sum(p.records for s in self.stations.values() for p in s.backlog)
            t0 = time.perf_counter()
            for st in self.stations.values():
                st.next_index = 0
                st.inflight.clear()
                self._fill(st)
        if not self.done.wait(timeout):
            raise RuntimeError(f"storm: {self.acked_records} of {self.expected} acked")
        return self.last_ack - t0, list(self.latencies)


# --- CPU from /proc --------------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def cpu_s(pid: int, children: bool = False) -> float:
    """utime + stime of ``pid`` (and of its waited-for children), seconds; 0 once gone."""
    f = _stat(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if children else 0)
    return ticks / TICK


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            f = _stat(int(entry.name))
            if f is not None and int(f[1]) == pid:
                out.append(int(entry.name))
    return out


def pid_running(cmd_part: str) -> int:
    """The pid of the one process whose command line contains ``cmd_part``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmd_part in cmd and "centre_scale" not in cmd:
                return int(entry.name)
    raise RuntimeError(f"no process running {cmd_part!r}")


class Cpu:
    """CPU seconds of a set of processes between two points of the run."""

    def __init__(self, broker: int, receivers: list[int], postmaster: int | None) -> None:
        self.broker, self.receivers, self.postmaster = broker, receivers, postmaster

    def sample(self) -> dict[str, float]:
        db = 0.0
        if self.postmaster is not None:
            db = cpu_s(self.postmaster, children=True)
            db += sum(cpu_s(c) for c in children_of(self.postmaster))
        t = os.times()
        return {"broker": cpu_s(self.broker), "receivers": sum(map(cpu_s, self.receivers)),
                "db": db, "loader": t.user + t.system}  # fmt: skip


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Result:
    backend: str
    receivers: int
    steady_p50: float
    steady_p99: float
    records: int
    packets: int
    drain_s: float
    p50: float
    p99: float
    transit_p50: float
    transit_p99: float
    cores: dict[str, float]
    resends: int
    bytes_per_record: float


def store_bytes(location: str) -> int:
    """What the store takes on disk now: the SQLite file and its WAL, or the database."""
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            return int(row[0]) if row else 0
    return sum(os.path.getsize(p) for p in (location, location + "-wal") if os.path.exists(p))


def run_once(
    world: World, root: Path, stations: list[Station], backend: str, location: str,
    n_receivers: int, args: argparse.Namespace, postmaster: int | None,
) -> Result:  # fmt: skip
    broker = Mosquitto(root / "broker", world.centre.ca_key, world.centre.ca_pem)
    bridges = [bridge_cn("bench"), bridge_cn("bench-acks")]
    broker.setup.acl.write_text(render_acl([receiver_cn(n) for n in RECEIVER_NAMES], bridges))
    loader_certs = [(c.cert, c.key) for c in map(broker.client_cert, bridges)]
    broker.start()
    procs: list[subprocess.Popen[bytes]] = []
    loader: Loader | None = None
    try:
        for name in RECEIVER_NAMES[:n_receivers]:
            cert = broker.receivers[name]
            config = root / f"{name}.toml"
            config.write_text("\n".join([
                f'centre_dir = "{world.centre_dir}"', f'store = "{location}"', "[broker]",
                f'host = "{broker.host}"', f"port = {broker.port}", f'cert = "{cert.cert}"',
                f'key = "{cert.key}"', f'client_id = "{name}"', "[receiver]",
                'group = "scale"']) + "\n")  # fmt: skip
            procs.append(world.start_centre(config, f"{root.name}-{name}.log"))
        cpu = Cpu(pid_running(str(broker.setup.conf)), [p.pid for p in procs], postmaster)
        empty = store_bytes(location)  # the schema, before any record
        loader = Loader(broker, loader_certs, world, stations, args.window)
        steady = loader.steady(args.steady_s)
        before, t0 = cpu.sample(), time.perf_counter()
        drain_s, lat = loader.storm(args.timeout)
        after, wall = cpu.sample(), time.perf_counter() - t0
        transits = list(loader.transits)
        records = loader.expected
        packets = len(lat)
        resends = loader.resends
    finally:
        if loader is not None:
            loader.close()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        broker.stop()
    from centre.store import CentreStore

    want = records + sum(s.steady.records for s in stations)
    with CentreStore(location, read_only=True) as store:
        held = sum(s.records for s in store.summaries())
    if held != want:
        raise RuntimeError(f"{backend}, {n_receivers} receivers: {held} records held, {want} sent")
    per_record = (store_bytes(location) - empty) / held
    cores = {k: (after[k] - before[k]) / wall for k in after}
    return Result(backend, n_receivers, pct(steady, 50), pct(steady, 99), records, packets,
                  drain_s, pct(lat, 50), pct(lat, 99), pct(transits, 50), pct(transits, 99),
                  cores, resends, per_record)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--backlog-hours", type=float, default=2.0,
                        help="each station's backlog after the outage (the issue: 24)")
    parser.add_argument("--receivers", default="1,2,4", help="receiver counts to run")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--steady-s", type=float, default=5.0)
    parser.add_argument("--window", type=int, default=8, help="packets in flight per station")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    counts = [int(x) for x in args.receivers.split(",")]
    if max(counts) > len(RECEIVER_NAMES):
        parser.error(f"at most {len(RECEIVER_NAMES)} receivers (the test broker's identities)")
    backends = args.backends.split(",")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="quantrac-scale-") as tmp:
        root = Path(tmp)
        world = World(root / "world")  # the centre's keys and registry; its broker is unused
        t = time.perf_counter()
        stations = make_stations(world, args.stations, args.backlog_hours, time.time())
        n_records = sum(p.records for s in stations for p in s.backlog)
        n_packets = sum(len(s.backlog) for s in stations)
        per_station = sum(len(channels_of(i)) for i in range(args.stations)) / args.stations
        print(f"{args.stations} stations ({per_station:.1f} channels on average), "
              f"{args.backlog_hours:g} h backlog: {n_records:,} records "
              f"in {n_packets:,} packets of ~{n_records / n_packets:.0f} records; keys, registry "
              f"and sealing {time.perf_counter() - t:.1f} s", flush=True)  # fmt: skip
        pg = None
        try:
            for backend in backends:
                postmaster = None
                if backend == "postgresql":
                    from tests.pg_server import PgServer

                    pg = PgServer()
                    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
                for k, n in enumerate(counts):
                    run_root = root / f"{backend}-{n}"
                    run_root.mkdir()
                    if backend == "postgresql":
                        assert pg is not None
                        pg.admin(f"CREATE DATABASE scale_{k}", "postgres")
                        location = pg.dsn(f"scale_{k}")
                    else:
                        location = str(run_root / "records.sqlite")
                    r = run_once(world, run_root, stations, backend, location, n, args, postmaster)
                    results.append(r)
                    print(f"  {backend:<10} {n} receiver(s): {r.records / r.drain_s:>9,.0f} "
                          f"records/s, drained in {r.drain_s:6.1f} s, ack p50/p99 "
                          f"{r.p50:5.2f}/{r.p99:5.2f} s, commit-to-ack p50/p99 "
                          f"{r.transit_p50 * 1000:.0f}/{r.transit_p99 * 1000:.0f} ms",
                          flush=True)  # fmt: skip
                if pg is not None:
                    pg.close()
                    pg = None
        finally:
            if pg is not None:
                pg.close()
    print()
    print("backend     recv  steady ack p50/p99 ms  storm rec/s  drain s  ack p50/p99 s  "
          "commit-to-ack p50/p99 ms  CPU cores: broker recv  db  loader  resend req")
    for r in results:
        c = r.cores
        db = f"{c['db']:4.2f}" if r.backend == "postgresql" else " (in recv)"
        print(f"{r.backend:<11} {r.receivers:>4}  {r.steady_p50 * 1000:8.1f} / "
              f"{r.steady_p99 * 1000:7.1f}  {r.records / r.drain_s:11,.0f}  {r.drain_s:7.1f}  "
              f"{r.p50:5.2f} / {r.p99:5.2f}  {r.transit_p50 * 1000:9.0f} / "
              f"{r.transit_p99 * 1000:6.0f}"
              f"        {c['broker']:4.2f}  {c['receivers']:4.2f} {db}  {c['loader']:4.2f}"
              f"  {r.resends}")  # fmt: skip
    for r in results:
        if r.receivers == 2:
            rate = r.records / r.drain_s
            verdict = "met" if rate >= TARGET else f"MISSED by {TARGET / rate:.1f}x"
            print(f"target >= {TARGET:,.0f} records/s with 2 receivers on {r.backend}: "
                  f"{rate:,.0f}, {verdict}")
    for backend in backends:
        sizes = [r.bytes_per_record for r in results if r.backend == backend]
        year = sizes[-1] * 105_120 * 8  # 5-minute windows in a year x 8 channels
        print(f"store on disk, {backend}: {min(sizes):.0f}-{max(sizes):.0f} bytes a record "
              f"(indexes included): a station of 8 channels, 5-minute records, "
              f"{year / 1e6:.0f} MB a year")
    print(f"machine: {os.cpu_count()} cores shared by everything above (broker, receivers, "
          "database, this load generator)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
