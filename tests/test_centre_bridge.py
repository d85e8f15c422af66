"""Federated brokers: a provincial Mosquitto bridged to the national one, both real processes.

The station is enrolled with the national centre but connects only to its province's broker;
the national receiver stores its records and its acks come back through the bridge. A
subscriber on the provincial broker sees exactly what the bridge forwards, and the test checks
that those bytes carry none of the records' plaintext (channel names, units, values): the
province relays sealed packets it cannot read.
"""

from __future__ import annotations

import queue
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from centre import authority
from centre.broker import Bridge, bridge_cn, receiver_cn, render_acl
from protocol.mqtt_client import tls_client
from protocol.payload import encode_records
from protocol.topics import UP_FILTER
from provisioning import identity
from tests.mosquitto import RECEIVER_NAMES, Mosquitto
from tests.mqtt_world import StationHandle, World, make_records

PROVINCE = "thanhhoa"


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[tuple[World, Mosquitto]]:
    """The national world (centre, broker, store) and a provincial broker bridged to it."""
    national = World(tmp_path / "national")
    # the national broker lets the province's bridge in, by its certificate
    national.broker.setup.acl.write_text(
        render_acl([receiver_cn(n) for n in RECEIVER_NAMES], [bridge_cn(PROVINCE)])
    )
    issued = national.broker.client_cert(bridge_cn(PROVINCE))
    province = Mosquitto(tmp_path / "province", national.centre.ca_key, national.centre.ca_pem)
    province.setup = replace(province.setup, bridge=Bridge(
        PROVINCE, national.broker.host, national.broker.port, national.broker.ca_path,
        issued.cert, issued.key))  # fmt: skip
    national.start()
    try:
        province.start()
        try:
            yield national, province
        finally:
            province.stop()
    finally:
        national.stop_all()


def _station_on(world: World, broker: Mosquitto, station_id: str) -> StationHandle:
    """A station enrolled with the national centre whose bundle names the provincial broker."""
    state_dir = world.root / f"station-{station_id}"
    init = identity.init(state_dir, station_id, serial=lambda: None)
    issued = authority.enrol(world.centre, init.request, "request",
                             broker=f"{broker.host}:{broker.port}")  # fmt: skip
    identity.import_bundle(state_dir, issued.bundle, "bundle", world.centre.fingerprint)
    handle = StationHandle(station_id, state_dir, world.root / f"outbox-{station_id}.sqlite")
    world.stations[station_id] = handle
    return handle


def _spy(broker: Mosquitto) -> tuple[mqtt.Client, queue.Queue[bytes]]:
    """Every ``up`` payload on the provincial broker (what its bridge forwards)."""
    seen: queue.Queue[bytes] = queue.Queue()
    subscribed: queue.Queue[int] = queue.Queue()
    cert = broker.receivers["receiver-3"]
    client = tls_client("spy", ca_cert=broker.ca_path, cert=cert.cert, key=cert.key,
                        persistent=False)  # fmt: skip
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(UP_FILTER, qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.put(mid)
    client.on_message = lambda c, u, msg: seen.put(bytes(msg.payload))
    client.connect(broker.host, broker.port)
    client.loop_start()
    subscribed.get(timeout=10)
    return client, seen


def test_a_station_on_the_provincial_broker_is_stored_nationally_and_acked_back(
    federation: tuple[World, Mosquitto],
) -> None:
    national, province = federation
    station = _station_on(national, province, "THA-WW-01")
    records = make_records(600, salt=18)
    seqs = station.fill(records)
    national.start_centre()
    spy, seen = _spy(province)
    try:
        uplink = national.start_uplink(station, "--until-drained", "--max-packet", "4096")
        assert uplink.wait(120) == 0, national.log("uplink-THA-WW-01.log") + province.log()
    finally:
        spy.loop_stop()
        spy.disconnect()
    # stored by the national receiver, every seq once; acked back (the outbox is drained)
    assert [seq for seq, _ in national.stored(station.station_id)] == seqs
    assert station.unacked() == 0
    assert national.security_events() == []
    # what crossed the provincial broker is ciphertext
    payloads = []
    while not seen.empty():
        payloads.append(seen.get())
    assert len(payloads) >= 2, "the spy saw the station's packets"
    # needles of 4+ bytes (a length-prefixed name, an 8-byte double), so that random
    # ciphertext matches one by chance about once in 10^4 runs, not every few runs as "pH" did
    plain = [bytes([len(n)]) + n.encode() for n in ("COD", "TSS", "Flow", "Temp", "mg/L")]
    for rec in records[:50]:
        if rec.valid:
            plain += [struct.pack(">d", rec.mean), struct.pack("<d", rec.mean)]
    # the needles do find the plaintext encoding of these records (the check can fail)
    clear = encode_records(list(zip(seqs[:50], records[:50], strict=True)))
    assert all(p in clear for p in plain[:5]) and any(p in clear for p in plain[5:])
    leaked = [p for p in plain for data in payloads if p in data]
    assert leaked == [], f"plaintext in a bridged packet: {leaked[:5]}"


def test_broker_config_writes_the_bridge_and_the_national_side_identity(tmp_path: Path) -> None:
    """The two halves through the CLI: the national side issues the bridge's certificate and
    lets it in; the provincial side's config carries the bridge section naming them."""
    authority.init(tmp_path / "centre", "127.0.0.1:8883")
    base = [sys.executable, "-m", "edge_agent.daemon.cli", "centre", "broker-config", "--dir",
            str(tmp_path / "centre")]  # fmt: skip
    out = subprocess.run([*base, "--out-dir", str(tmp_path / "nat"), "--listen",
                          "127.0.0.1:8883", "--bridge-identity", PROVINCE],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    cert = tmp_path / "nat" / f"bridge-{PROVINCE}.crt"
    key = tmp_path / "nat" / f"bridge-{PROVINCE}.key"
    assert f"bridge in     {PROVINCE}: cert {cert}" in out.stdout
    acl = (tmp_path / "nat" / "acl").read_text()
    assert f"user bridge:{PROVINCE}\ntopic write quantrac/v1/+/up\n" in acl
    assert "topic read quantrac/v1/+/down" in acl.split(f"user bridge:{PROVINCE}")[1]
    assert oct(key.stat().st_mode & 0o777) == "0o600"

    out = subprocess.run([*base, "--out-dir", str(tmp_path / "prov"), "--listen",
                          "127.0.0.1:18883", "--bridge", "national.example:8883",
                          "--bridge-name", PROVINCE, "--bridge-cert", str(cert),
                          "--bridge-key", str(key)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    conf = (tmp_path / "prov" / "mosquitto.conf").read_text()
    section = conf.split(f"connection {PROVINCE}\n", 1)[1]
    for line in ("address national.example:8883", "topic quantrac/v1/+/up out 1",
                 "topic quantrac/v1/+/state out 1", "topic quantrac/v1/+/down in 1",
                 f"bridge_certfile {cert}", f"bridge_keyfile {key}",
                 f"bridge_cafile {tmp_path / 'centre' / 'ca.crt'}", "bridge_insecure false",
                 "cleansession false", f"remote_clientid bridge:{PROVINCE}"):  # fmt: skip
        assert line + "\n" in section, line

    # half a bridge is refused by name, before any file is written
    out = subprocess.run([*base, "--out-dir", str(tmp_path / "half"), "--bridge",
                          "national.example:8883"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--bridge needs --bridge-name, --bridge-cert, --bridge-key" in out.stderr
    assert not (tmp_path / "half").exists()
