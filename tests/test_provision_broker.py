"""Provisioned certificates against a real Mosquitto, judged by mosquitto_pub (a peer tool)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from mosquitto import Mosquitto
from test_provision_helpers import make_world, quantrac

from provisioning import identity


def _publish(broker: Mosquitto, ident: identity.StationIdentity, topic: str) -> int:
    return subprocess.run(
        ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1",
         "--cafile", str(ident.ca_cert_path), "--cert", str(ident.cert_path),
         "--key", str(ident.tls_key_path), "-i", ident.station_id, "-t", topic, "-m", "x"],
        capture_output=True, text=True, timeout=30,
    ).returncode


def test_bundle_certificates_reach_the_broker_until_the_station_is_revoked(
    tmp_path: Path,
) -> None:
    now = time.time()
    w = make_world(tmp_path, now=now)
    identity.import_bundle(w.state_dir, w.bundle, "b.json", w.centre.fingerprint,
                           clock=lambda: now)
    ident = identity.load(w.state_dir)
    broker = Mosquitto(tmp_path / "broker", w.centre.ca_key, w.centre.ca_pem)
    broker.use_crl(w.centre.crl_path)
    broker.start()
    try:
        assert _publish(broker, ident, ident.topics.up) == 0, broker.log()
    finally:
        broker.stop()

    r = quantrac("centre", "revoke", ident.station_id, "--dir", w.centre_dir)
    assert r.returncode == 0, r.stderr
    broker.start()  # mosquitto reads its crlfile at start
    try:
        assert _publish(broker, ident, ident.topics.up) != 0
    finally:
        broker.stop()
    assert "certificate verify failed" in broker.log()


def test_broker_cert_command_writes_what_mosquitto_needs(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    out = tmp_path / "broker-tls"
    r = quantrac("centre", "broker-cert", "127.0.0.1", "mqtt.example", "--out-dir", out,
                 "--dir", w.centre_dir)
    assert r.returncode == 0, r.stderr
    assert f"keyfile {out / 'broker.key'}" in r.stdout
    assert (out.stat().st_mode & 0o777) == 0o700
    assert ((out / "broker.key").stat().st_mode & 0o777) == 0o600
    check = subprocess.run(
        ["openssl", "verify", "-purpose", "sslserver", "-CAfile", out / "ca.crt",
         out / "broker.crt"], capture_output=True, text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    text = subprocess.run(["openssl", "x509", "-in", out / "broker.crt", "-noout", "-text"],
                          capture_output=True, text=True).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:mqtt.example" in text
    again = quantrac("centre", "broker-cert", "127.0.0.1", "--out-dir", out,
                     "--dir", w.centre_dir)
    assert again.returncode == 1 and "broker.key: already exists" in again.stderr
