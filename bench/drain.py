"""Backlog drain over TLS Mosquitto on loopback: outbox -> centre -> signed ack, vs raw paho QoS 1.

One run prints:

* end to end: a 200,000-record outbox drained by the uplink process to the centre receiver
  process (open, verify, de-duplicate, store in SQLite, signed ack) until the station's outbox
  holds no unacknowledged record; records/s;
* the baseline: the raw paho QoS 1 publish rate of payloads of the same size (the sealed
  packets' average), to the same broker, in records/s equivalent;
* the ratio of the two. Target: >= 30,000 records/s end to end.

Usage: ``.venv/bin/python bench/drain.py [--records N]``.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.mqtt_world

from protocol.mqtt_client import tls_client
from protocol.topics import Topics
from tests.mqtt_world import World, make_records, wait_for

TARGET = 30_000.0


def raw_paho_rate(
    world: World, payload_size: int, packets: int, records_per_packet: float
) -> float:
    """Records/s equivalent of publishing ``packets`` payloads at QoS 1 until all PUBACKed."""
    cert = world.broker.client_cert("BENCH-RAW")
    # the uplink's own client factory and TLS, but a throw-away (clean) session
    client = tls_client(
        "bench-raw", ca_cert=world.broker.ca_path, cert=cert.cert, key=cert.key, persistent=False
    )
    client.connect(world.broker.host, world.broker.port)
    client.loop_start()
    try:
        payload = bytes(payload_size)
        topic = Topics.for_station("BENCH-RAW").up  # its own topic: the ACL lets it write there
        t0 = time.perf_counter()
        infos = [client.publish(topic, payload, qos=1) for _ in range(packets)]
        for info in infos:
            info.wait_for_publish(timeout=60)
        elapsed = time.perf_counter() - t0
    finally:
        client.disconnect()
        client.loop_stop()
    return packets * records_per_packet / elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n = args.records
    with tempfile.TemporaryDirectory(prefix="quantrac-drain-") as tmp:
        world = World(Path(tmp)).start()
        try:
            station = world.add_station("BENCH-01")
            records = make_records(n)
            t = time.perf_counter()
            station.fill(records)
            fill_s = time.perf_counter() - t
            world.start_centre()
            t0 = time.perf_counter()
            uplink = world.start_uplink(station, "--until-drained", "--log-level", "WARNING")
            code = uplink.wait(timeout=600)
            e2e_s = time.perf_counter() - t0
            if code != 0:
                print(world.log("uplink-BENCH-01.log")[-2000:], file=sys.stderr)
                return 1
            wait_for(lambda: world.stored_count("BENCH-01") == n, 60, "all records stored")
            conn = sqlite3.connect(world.store_path)
            n_packets, first, last = conn.execute(
                "SELECT count(*), min(received), max(received) FROM packets"
            ).fetchone()
            conn.close()
            stored = world.stored(station.station_id)
            assert [s for s, _ in stored] == list(range(1, n + 1)), "stored exactly once"
            e2e = n / e2e_s
            per_packet = n / n_packets
            sizes = _packet_size(per_packet)
            # At least 2,000 packets: the baseline is fast, a short run would be mostly noise.
            baseline = raw_paho_rate(world, sizes, max(n_packets, 2000), per_packet)
        finally:
            world.stop_all()
    print(f"outbox fill: {n} records in {fill_s:.2f} s ({n / fill_s:,.0f} records/s)")
    print(f"packets: {n_packets} of ~{sizes} bytes ({per_packet:.0f} records each)")
    print(
        f"end to end (outbox -> centre store -> signed ack, incl. process start): "
        f"{e2e:,.0f} records/s ({e2e_s:.2f} s)"
    )
    print(
        f"centre ingest span (first to last packet stored): "
        f"{n / max(last - first, 1e-9):,.0f} records/s"
    )
    print(f"baseline raw paho QoS 1 publish, same payload size: {baseline:,.0f} records/s")
    print(f"ratio end-to-end / baseline: {e2e / baseline:.2f}")
    print(f"target >= {TARGET:,.0f} records/s end to end: {'met' if e2e >= TARGET else 'MISSED'}")
    return 0


def _packet_size(records_per_packet: float) -> int:
    """Average sealed packet size of this run (the envelope's sizes are exact)."""
    from protocol.envelope import HEADER_FIXED, PACKET_OVERHEAD
    from protocol.payload import payload_size

    channels = [b"pH", b"COD", b"TSS", b"Flow", b"Temp"]
    units = [b"", b"mg/L", b"m3/h", "°C".encode()]
    body = payload_size(round(records_per_packet), channels, units)
    return HEADER_FIXED + len("BENCH-01") + PACKET_OVERHEAD + body


if __name__ == "__main__":
    sys.exit(main())
