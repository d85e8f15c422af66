"""`quantrac centre broker-config` gives a real Mosquitto that enforces the per-station ACL."""

from __future__ import annotations

import os
import queue
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from mosquitto import free_port

from centre import authority
from centre.broker import RECEIVER_CN
from provisioning import identity


def _station(tmp_path: Path, centre: authority.Centre, station_id: str) -> identity.StationIdentity:
    state_dir = tmp_path / station_id
    result = identity.init(state_dir, station_id, serial=lambda: None)
    issued = authority.enrol(centre, result.request, "request.json")
    identity.import_bundle(state_dir, issued.bundle, "bundle.json", centre.fingerprint)
    return identity.load(state_dir)


def _client(client_id: str, ca: Path, cert: Path, key: Path) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key),
                   tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return client


def _wait(condition: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_generated_broker_lets_a_station_write_only_its_own_topic(tmp_path: Path) -> None:
    port = free_port()
    centre = authority.init(tmp_path / "centre", f"127.0.0.1:{port}")
    station_a = _station(tmp_path, centre, "ST-A")
    _station(tmp_path, centre, "ST-B")
    broker_dir = tmp_path / "broker"
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.daemon.cli", "centre", "broker-config", "--dir",
         str(tmp_path / "centre"), "--out-dir", str(broker_dir), "--listen", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"mosquitto -c {broker_dir / 'mosquitto.conf'}" in out.stdout
    assert oct(os.stat(broker_dir / "receiver.key").st_mode & 0o777) == "0o600"

    broker = subprocess.Popen(["mosquitto", "-c", str(broker_dir / "mosquitto.conf")],
                              stderr=subprocess.PIPE)
    received: queue.Queue[str] = queue.Queue()
    receiver = _client("centre-1", broker_dir / "ca.crt", broker_dir / "receiver.crt",
                       broker_dir / "receiver.key")
    station = _client("ST-A", station_a.ca_cert_path, station_a.cert_path, station_a.tls_key_path)
    try:
        subscribed: list[bool] = []
        receiver.on_message = lambda c, u, msg: received.put(msg.topic)
        receiver.on_subscribe = lambda *a: subscribed.append(True)
        receiver.on_connect = lambda c, u, f, rc, p: c.subscribe("quantrac/v1/+/up", qos=1)
        _wait(lambda: receiver.connect("127.0.0.1", port) == 0 if _accepting(port) else False,
              "the broker to accept TLS")
        receiver.loop_start()
        _wait(lambda: subscribed, "the receiver's subscription")

        _connect(station, port)
        # The broker acknowledges the forbidden publish and may then close the connection
        # (MQTT-3.3.5-2). Once the PUBACK is in, the broker has dealt with it: had it been
        # allowed, it would reach the receiver before anything published after it.
        station.publish("quantrac/v1/ST-B/up", b"forged", qos=1).wait_for_publish(10)
        station.loop_stop()
        station.disconnect()
        station = _client("ST-A", station_a.ca_cert_path, station_a.cert_path,
                          station_a.tls_key_path)
        _connect(station, port)
        station.publish("quantrac/v1/ST-A/up", b"own", qos=1).wait_for_publish(10)
        assert received.get(timeout=10) == "quantrac/v1/ST-A/up"
        assert received.empty()
        log = (broker_dir / "mosquitto.log").read_text()
        assert f"u'{RECEIVER_CN}'" in log  # the CN became the MQTT username
    finally:
        station.loop_stop()
        receiver.loop_stop()
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=10)
        assert broker.stderr is not None
        broker.stderr.close()


def _connect(client: mqtt.Client, port: int) -> None:
    connected: list[bool] = []
    client.on_connect = lambda c, u, f, rc, p: connected.append(not rc.is_failure)
    client.connect("127.0.0.1", port)
    client.loop_start()
    _wait(lambda: connected == [True], "a CONNACK")


def _accepting(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
