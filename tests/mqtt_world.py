"""A whole little world for the MQTT tests and bench/drain.py: centre, broker, provisioned stations.

Everything real: the centre's keys and CA from ``centre.authority``; stations provisioned
through files (``identity.init`` -> ``authority.enrol`` -> ``identity.import_bundle``); a
Mosquitto broker whose certificates come from the centre's CA; outboxes are ``buffer.Store``
files; the centre receiver and the uplinks run as real processes (``quantrac centre serve``,
``python -m edge_agent.uplinks.mqtt.run``) so tests can kill them.
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from buffer import Store
from centre import authority
from protocol.model import Record, RecordFlag, Status
from provisioning import identity
from tests.mosquitto import Mosquitto

CHANNELS = (("pH", ""), ("COD", "mg/L"), ("TSS", "mg/L"), ("Flow", "m3/h"), ("Temp", "°C"))
T0 = 1_790_000_100 - 1_790_000_100 % 300  # a 5-minute boundary in 2026


def wait_for(cond: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    """Wait until ``cond()`` holds, or fail naming ``what`` (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def make_records(n: int, salt: int = 0) -> list[Record]:
    """``n`` distinct, realistic records (5-min windows over 5 channels, some offline/NaN)."""
    out: list[Record] = []
    for i in range(n):
        channel, unit = CHANNELS[i % len(CHANNELS)]
        start = T0 + (i // len(CHANNELS)) * 300
        if i % 97 == 13:  # an offline window: no value, never a made-up one
            out.append(
                Record(
                    channel,
                    start,
                    start + 300,
                    math.nan,
                    math.nan,
                    math.nan,
                    math.nan,
                    0,
                    30,
                    False,
                    Status.OFFLINE,
                    unit,
                )
            )
            continue
        mean = 7.0 + ((i * 7919 + salt * 104729) % 1000) / 137.0
        out.append(
            Record(
                channel,
                start,
                start + 300,
                mean,
                mean - 0.25,
                mean + 0.5,
                0.125,
                30,
                30,
                True,
                Status.MEASURING,
                unit,
                RecordFlag.CLOCK_UNSYNCED if i % 50 == 7 else RecordFlag.NONE,
            )
        )
    return out


@dataclass
class StationHandle:
    """A provisioned station and its outbox file."""

    station_id: str
    state_dir: Path
    outbox: Path

    def fill(self, records: list[Record]) -> list[int]:
        with Store(self.outbox) as store:
            seqs: list[int] = []
            for i in range(0, len(records), 5000):
                seqs += store.append(records[i : i + 5000])
            return seqs

    def identity(self) -> identity.StationIdentity:
        return identity.load(self.state_dir)

    def unacked(self) -> int:
        with Store(self.outbox) as store:
            return store.status().unacked


class World:
    """Centre keys, a running broker trusting the centre CA, and a receiver config."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.centre_dir = root / "centre"
        self.centre = authority.init(self.centre_dir)
        self.broker = Mosquitto(root / "broker", self.centre.ca_key, self.centre.ca_pem)
        self.receiver_cert = self.broker.receiver
        self.store_path = root / "records.sqlite"
        self.stations: dict[str, StationHandle] = {}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> World:
        self.broker.start()
        return self

    def add_station(self, station_id: str) -> StationHandle:
        state_dir = self.root / f"station-{station_id}"
        init = identity.init(state_dir, station_id, serial=lambda: None)
        issued = authority.enrol(
            self.centre, init.request, "request", broker=f"{self.broker.host}:{self.broker.port}"
        )
        identity.import_bundle(state_dir, issued.bundle, "bundle", self.centre.fingerprint)
        handle = StationHandle(station_id, state_dir, self.root / f"outbox-{station_id}.sqlite")
        self.stations[station_id] = handle
        return handle

    def centre_config(
        self, name: str = "centre.toml", client_id: str = "receiver-1", **receiver: object
    ) -> Path:
        """A receiver config using the broker's receiver identity ``client_id`` (one of
        ``tests.mosquitto.RECEIVER_NAMES``): each receiver process needs its own certificate,
        the broker makes its CN the MQTT client id."""
        if client_id not in self.broker.receivers:
            raise KeyError(f"client_id {client_id!r}: not one of {sorted(self.broker.receivers)}")
        cert = self.broker.receivers[client_id]
        lines = [
            f'centre_dir = "{self.centre_dir}"',
            f'store = "{self.store_path}"',
            "[broker]",
            f'host = "{self.broker.host}"',
            f"port = {self.broker.port}",
            f'cert = "{cert.cert}"',
            f'key = "{cert.key}"',
            f'client_id = "{client_id}"',
            "[receiver]",
            'group = "test"',
            "gap_scan_every_s = 0.2",
        ]
        for key, value in receiver.items():
            lines.append(
                f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"'
            )
        path = self.root / name
        path.write_text("\n".join(lines) + "\n")
        return path

    # --- processes -------------------------------------------------------------------------
    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = (self.root / log_name).open("ab")
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        log.close()
        self.procs.append(proc)
        return proc

    def start_centre(
        self, config: Path | None = None, log_name: str = "centre.log"
    ) -> subprocess.Popen[bytes]:
        config = config or self.centre_config()
        argv = [sys.executable, "-m", "edge_agent.daemon.cli", "centre", "serve", "--config",
                str(config)]
        proc = self._spawn(argv, log_name)
        wait_for(
            lambda: "receiver_connected" in self.log(log_name) or proc.poll() is not None,
            20,
            "the centre receiver to connect",
        )
        assert proc.poll() is None, self.log(log_name)
        return proc

    def start_uplink(
        self, station: StationHandle, *extra: str, log_name: str | None = None
    ) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "edge_agent.uplinks.mqtt.run",
            "--state-dir",
            str(station.state_dir),
            "--outbox",
            str(station.outbox),
            *extra,
        ]
        return self._spawn(argv, log_name or f"uplink-{station.station_id}.log")

    def log(self, name: str) -> str:
        try:
            return (self.root / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.broker.stop()

    # --- what the centre holds (read straight from its SQLite file) --------------------------
    def stored(self, station_id: str) -> list[tuple[int, Record]]:
        from centre.store import CentreStore

        with CentreStore(self.store_path) as store:
            return store.by_seq(station_id)

    def stored_count(self, station_id: str | None = None) -> int:
        if not self.store_path.exists():
            return 0
        conn = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True, timeout=10)
        try:
            if station_id is None:
                return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
            return int(
                conn.execute(
                    "SELECT count(*) FROM records WHERE station = ?", (station_id,)
                ).fetchone()[0]
            )
        except sqlite3.OperationalError:  # schema not created yet
            return 0
        finally:
            conn.close()

    def security_events(self) -> list[tuple[str, str]]:
        if not self.store_path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True, timeout=10)
        try:
            return [
                (str(s), str(r))
                for s, r in conn.execute("SELECT station, reason FROM security_events ORDER BY id")
            ]
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()


def world_at(root: Path) -> Iterator[World]:
    """Body of the ``world`` fixtures: start, yield, always stop every process."""
    world = World(root).start()
    try:
        yield world
    finally:
        world.stop_all()


def publish_as(
    world: World,
    cert: Path,
    key: Path,
    topic: str,
    payload: bytes,
    client_id: str = "test-publisher",
) -> None:
    """Publish once at QoS 1 with the given client certificate (the broker's ACL applies)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=str(world.broker.ca_path), certfile=str(cert), keyfile=str(key))
    client.connect(world.broker.host, world.broker.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def seal_as(station: StationHandle, pairs: list[tuple[int, Record]]) -> bytes:
    """A genuine packet of ``pairs`` sealed with the station's own key, as its uplink would."""
    from protocol.envelope import (
        SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305,
        VERSION,
        Header,
        encode_records,
        seal,
    )

    ident = station.identity()
    header = Header(
        VERSION,
        SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305,
        ident.station_id,
        ident.key_id,
        ident.centre_packet_key_id,
        pairs[0][0],
        pairs[-1][0],
        int(time.time() * 1000),
    )
    return seal(header, encode_records(pairs), ident.signing_key, ident.centre_packet_public)
