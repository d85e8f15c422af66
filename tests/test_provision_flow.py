"""The offline provisioning flow end to end, key rotation, revocation, and no secret in output."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from test_provision_helpers import T0, World, make_world, packet, quantrac

from centre import authority
from protocol.envelope import REVOKED, EnvelopeError
from provisioning import identity


def test_offline_flow_through_files_ends_with_a_packet_the_centre_opens(tmp_path: Path) -> None:
    centre_dir, state_dir = tmp_path / "centre", tmp_path / "station"
    stick = tmp_path / "usb"
    stick.mkdir()
    r = quantrac("centre", "init", "--dir", centre_dir, "--broker", "mqtt.centre.test:8883")
    assert r.returncode == 0, r.stderr
    fp = quantrac("centre", "fingerprint", "--dir", centre_dir).stdout.strip()
    assert len(fp) == 24 and fp.count("-") == 4

    r = quantrac("provision", "init", "--station-id", "HN-WW-001", "--out",
                 stick / "request.json", "--state-dir", state_dir)
    assert r.returncode == 0, r.stderr
    request = json.loads((stick / "request.json").read_text())
    assert request["body"]["station_id"] == "HN-WW-001"
    assert request["body"]["tls_csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")

    r = quantrac("centre", "enrol", stick / "request.json", "--out", stick / "bundle.json",
                 "--dir", centre_dir, "--valid-days", "365")
    assert r.returncode == 0, r.stderr
    r = quantrac("provision", "import", stick / "bundle.json", "--centre-fingerprint",
                 fp.lower().replace("-", " "), "--state-dir", state_dir, "--yes")
    assert r.returncode == 0, r.stderr
    assert f"centre fingerprint: {fp}" in r.stdout

    shown = quantrac("provision", "show", "--json", "--state-dir", state_dir)
    info = json.loads(shown.stdout)
    assert info["enrolled"] is True
    assert info["centre_fingerprint"] == fp
    assert info["broker"] == "mqtt.centre.test:8883"
    assert info["topics"]["up"] == "quantrac/v1/HN-WW-001/up"
    assert info["certificate_expires"].startswith(str(int(info["created"][:4]) + 1))

    ident = identity.load(state_dir)
    centre = authority.load(centre_dir)
    with centre.registry() as registry:
        opened = registry.open_packet(packet(ident, 1), centre.packet_private)
    assert opened.header.station_id == "HN-WW-001"
    assert opened.header.key_id == ident.key_id
    assert [seq for seq, _ in opened.records] == [1]

    # The broker-facing half: the certificate chains to the centre CA, for TLS client use.
    check = subprocess.run(
        ["openssl", "verify", "-purpose", "sslclient", "-CAfile", ident.ca_cert_path,
         ident.cert_path], capture_output=True, text=True,
    )
    assert check.returncode == 0 and ": OK" in check.stdout, check.stdout + check.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in state_dir.iterdir()}
    assert (state_dir.stat().st_mode & 0o777) == 0o700
    assert set(modes.values()) == {0o600}, modes


def test_reinit_refuses_without_force_and_force_keeps_the_old_keys(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    identity.import_bundle(w.state_dir, w.bundle, "b.json", w.centre.fingerprint,
                           clock=lambda: T0)
    before = {p.name: p.read_bytes() for p in w.state_dir.iterdir() if p.is_file()}

    r = quantrac("provision", "init", "--station-id", "HN-WW-001", "--out",
                 tmp_path / "again.json", "--state-dir", w.state_dir)
    assert r.returncode == 1
    assert "already holds station HN-WW-001's identity, enrolled" in r.stderr
    assert "--force" in r.stderr
    assert {p.name: p.read_bytes() for p in w.state_dir.iterdir() if p.is_file()} == before
    assert not (tmp_path / "again.json").exists()

    r = quantrac("provision", "init", "--station-id", "HN-WW-001", "--out",
                 tmp_path / "again.json", "--state-dir", w.state_dir, "--force", "--yes")
    assert r.returncode == 0, r.stderr
    moved = [p for p in w.state_dir.iterdir() if p.name.startswith("replaced-")]
    assert len(moved) == 1 and "previous identity kept in" in r.stdout
    assert (moved[0].stat().st_mode & 0o777) == 0o700
    kept = {p.name: p.read_bytes() for p in moved[0].iterdir()}
    assert kept == before  # every old file, byte for byte, keys included
    new_key = next(w.state_dir.glob("station-*.key")).read_bytes()
    old_keys = [v for k, v in before.items() if k.startswith("station-")]
    assert new_key not in old_keys


def _enrolled(tmp_path: Path) -> tuple[World, identity.StationIdentity]:
    w = make_world(tmp_path)
    identity.import_bundle(w.state_dir, w.bundle, "b.json", w.centre.fingerprint,
                           clock=lambda: T0)
    return w, identity.load(w.state_dir)


def test_rotation_overlap_both_keys_verify_then_only_the_new(tmp_path: Path) -> None:
    w, old = _enrolled(tmp_path)
    registry = w.centre.registry()
    private = w.centre.packet_private
    registry.open_packet(packet(old, 1), private)

    r = quantrac("provision", "rotate", "--out", tmp_path / "rotate.json",
                 "--state-dir", w.state_dir)
    assert r.returncode == 0, r.stderr
    # Until the centre's answer is imported the station still signs with the old key.
    assert identity.load(w.state_dir).key_id == old.key_id
    r = quantrac("centre", "rotate", tmp_path / "rotate.json", "--out", tmp_path / "b2.json",
                 "--dir", w.centre_dir)
    assert r.returncode == 0, r.stderr
    in_flight = packet(old, 2)  # sealed with the old key, not yet delivered
    r = quantrac("provision", "import", tmp_path / "b2.json", "--centre-fingerprint",
                 w.centre.fingerprint, "--state-dir", w.state_dir, "--yes")
    assert r.returncode == 0, r.stderr
    new = identity.load(w.state_dir)
    assert new.key_id != old.key_id and new.pending_key_id is None
    assert (w.state_dir / "retired" / f"station-{old.key_id.hex()}.key").exists()

    # Overlap: old and new both verify, in any order, until a new-key packet has verified.
    assert registry.open_packet(in_flight, private).header.key_id == old.key_id
    registry.open_packet(packet(old, 3), private)
    assert registry.open_packet(packet(new, 4), private).header.key_id == new.key_id
    # Seen: from now on only the new key.
    with pytest.raises(EnvelopeError) as err:
        registry.open_packet(packet(old, 5), private)
    assert err.value.reason == REVOKED
    assert registry.open_packet(packet(new, 6), private).header.key_id == new.key_id
    record = registry.station("HN-WW-001")
    assert record is not None
    assert record.keys == {old.key_id.hex(): "retired", new.key_id.hex(): "active"}
    registry.close()


def test_rotate_again_while_pending_reissues_the_same_new_key(tmp_path: Path) -> None:
    w, old = _enrolled(tmp_path)
    first = identity.rotate(w.state_dir, clock=lambda: T0)
    second = identity.rotate(w.state_dir, clock=lambda: T0)
    assert second.reused and second.new_key_id == first.new_key_id != old.key_id
    issued = authority.rotate(w.centre, second.request, "rot.json", clock=lambda: T0)
    assert issued.key_id == first.new_key_id
    # The bundle got lost: the same rotation asked again gets the same answer, not a new key.
    third = identity.rotate(w.state_dir, clock=lambda: T0)
    again = authority.rotate(w.centre, third.request, "rot.json", clock=lambda: T0)
    assert again.key_id == first.new_key_id
    identity.import_bundle(w.state_dir, again.bundle, "b.json", w.centre.fingerprint,
                           clock=lambda: T0)
    assert identity.load(w.state_dir).key_id == first.new_key_id


def test_revoked_station_packets_rejected_and_certificate_on_the_crl(tmp_path: Path) -> None:
    w, ident = _enrolled(tmp_path)
    with w.centre.registry() as registry:
        registry.open_packet(packet(ident, 1), w.centre.packet_private)
    r = quantrac("centre", "revoke", "HN-WW-001", "--dir", w.centre_dir)
    assert r.returncode == 0, r.stderr
    assert "revoked; CRL written" in r.stdout
    with w.centre.registry() as registry, pytest.raises(EnvelopeError) as err:
        registry.open_packet(packet(ident, 2), w.centre.packet_private)
    assert err.value.reason == REVOKED
    # The broker's view, judged by OpenSSL: the CRL is the CA's, and it revokes this cert.
    crl = w.centre_dir / "crl.pem"
    ok = subprocess.run(["openssl", "crl", "-in", crl, "-CAfile", w.centre_dir / "ca.crt",
                         "-noout"], capture_output=True, text=True)
    assert ok.returncode == 0 and "verify OK" in ok.stderr + ok.stdout
    verdict = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CAfile", w.centre_dir / "ca.crt", "-CRLfile",
         crl, ident.cert_path], capture_output=True, text=True,
    )
    assert verdict.returncode != 0 and "certificate revoked" in verdict.stdout + verdict.stderr
    again = quantrac("centre", "revoke", "HN-WW-001", "--dir", w.centre_dir)
    assert again.returncode == 0 and "was already revoked" in again.stdout


def test_a_fresh_crl_does_not_revoke_an_enrolled_station(tmp_path: Path) -> None:
    w, ident = _enrolled(tmp_path)
    verdict = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CAfile", w.centre_dir / "ca.crt", "-CRLfile",
         w.centre_dir / "crl.pem", ident.cert_path], capture_output=True, text=True,
    )
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr


def _private_forms(pem_file: Path) -> list[str]:
    """A private key in every form it could leak in: PEM body, raw hex/base64, DER base64."""
    key = serialization.load_pem_private_key(pem_file.read_bytes(), None)
    pem = pem_file.read_text()
    body = "".join(pem.strip().splitlines()[1:-1])
    forms = [body]
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    forms += [der.hex(), base64.b64encode(der).decode()]
    try:
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    except ValueError:  # ECDSA: the private scalar
        raw = key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    forms += [raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(),
              base64.urlsafe_b64encode(raw).decode().rstrip("="), repr(raw)[2:-1]]
    return forms


def test_no_private_key_in_any_output_or_log_line(tmp_path: Path) -> None:
    c, s, stick = tmp_path / "c", tmp_path / "s", tmp_path
    outputs: list[str] = []

    def run(*args: object) -> None:
        r = quantrac(*map(str, args))
        outputs.append(r.stdout + r.stderr)
        assert r.returncode == 0, r.stderr

    run("centre", "init", "--dir", c, "--broker", "b.test:8883")
    fp = quantrac("centre", "fingerprint", "--dir", c).stdout.strip()
    run("provision", "init", "--station-id", "S1", "--out", stick / "req.json", "--state-dir", s)
    run("centre", "enrol", stick / "req.json", "--out", stick / "b.json", "--dir", c)
    run("provision", "import", stick / "b.json", "--centre-fingerprint", fp, "--state-dir", s,
        "--yes")
    run("provision", "show", "--state-dir", s)
    run("provision", "show", "--json", "--state-dir", s)
    run("provision", "rotate", "--out", stick / "rot.json", "--state-dir", s)
    run("centre", "rotate", stick / "rot.json", "--out", stick / "b2.json", "--dir", c)
    run("provision", "import", stick / "b2.json", "--centre-fingerprint", fp, "--state-dir", s,
        "--yes")
    run("provision", "init", "--station-id", "S1", "--out", stick / "r2.json",
        "--state-dir", s, "--force", "--yes")
    run("centre", "revoke", "S1", "--dir", c)
    run("centre", "crl", "--dir", c)
    # Failures print too: each must not leak either.
    outputs.append(quantrac("provision", "import", stick / "b.json", "--centre-fingerprint",
                            "AAAA-AAAA-AAAA-AAAA-AAAA", "--state-dir", s, "--yes").stderr)
    outputs.append(quantrac("provision", "init", "--station-id", "S1", "--out",
                            stick / "r3.json", "--state-dir", s).stderr)
    text = "\n".join(outputs)
    assert "level=debug" in text  # DEBUG logging really was on
    keys = [*c.glob("*.key"), *s.rglob("*.key")]
    assert len(keys) >= 7  # centre x3, station keys (old, rotated, re-initialised), tls keys
    public_files = [stick / n for n in ("req.json", "b.json", "rot.json", "b2.json")]
    for key_file in keys:
        for form in _private_forms(key_file):
            assert form not in text, f"{key_file.name} leaked in output"
            for public in public_files:
                assert form not in public.read_text(), f"{key_file.name} in {public.name}"


def test_rotation_renews_the_certificate_and_revocation_lists_every_one(tmp_path: Path) -> None:
    w, old = _enrolled(tmp_path)
    later = T0 + 700 * 86400  # 30 days before the first certificate runs out
    rot = identity.rotate(w.state_dir, clock=lambda: later)
    issued = authority.rotate(w.centre, rot.request, "rot.json", clock=lambda: later)
    assert issued.expires > later + 729 * 86400
    identity.import_bundle(w.state_dir, issued.bundle, "b2.json", w.centre.fingerprint,
                           clock=lambda: later)
    new = identity.load(w.state_dir)
    assert new.cert_not_after == issued.expires > old.cert_not_after
    assert new.tls_key_path.read_bytes() == old.tls_key_path.read_bytes()  # same TLS key
    authority.revoke(w.centre, "HN-WW-001", clock=lambda: later)
    crl = authority.read_crl(w.centre.crl_path)
    serials = {r.serial_number for r in crl}
    assert len(serials) == 2
    assert x509.load_pem_x509_certificate(new.cert_path.read_bytes()).serial_number in serials
