"""The small parts of provisioning: fingerprints, hardware serial, documents, the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_provision_helpers import T0, make_world, packet

from centre import authority
from centre.registry import Registry
from protocol.envelope import (
    BAD_SIGNATURE,
    REVOKED,
    UNKNOWN_KEY,
    UNKNOWN_STATION,
    EnvelopeError,
    key_id,
)
from provisioning import identity
from provisioning.bundle import parse_broker
from provisioning.errors import ProvisioningError
from provisioning.hardware import hardware_serial
from provisioning.keys import fingerprint, normalise_fingerprint, raw_public
from provisioning.signed import parse_document, sign_document


def test_fingerprint_is_five_groups_of_base32_and_normalises_what_people_type() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    fp = fingerprint(key)
    groups = fp.split("-")
    assert [len(g) for g in groups] == [4] * 5
    assert set(fp.replace("-", "")) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert normalise_fingerprint(fp.lower().replace("-", " ")) == fp
    assert normalise_fingerprint(fp.replace("-", "")) == fp
    with pytest.raises(ProvisioningError, match="is not a centre fingerprint"):
        normalise_fingerprint(fp[:-1])


def test_hardware_serial_prefers_the_pi_serial(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000ABCDEF01\n")
    mid = tmp_path / "machine-id"
    mid.write_text("0123456789abcdef0123456789abcdef\n")
    assert hardware_serial(cpuinfo, mid) == "pi:10000000abcdef01"


def test_hardware_serial_falls_back_to_an_app_specific_machine_id(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: x86\n")
    mid = tmp_path / "machine-id"
    mid.write_text("0123456789abcdef0123456789abcdef\n")
    serial = hardware_serial(cpuinfo, mid)
    assert serial is not None and serial.startswith("machine-id:")
    assert "0123456789abcdef" not in serial  # the machine id itself does not leave the device
    assert serial == hardware_serial(tmp_path / "none", mid)
    assert hardware_serial(tmp_path / "none", tmp_path / "none") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("mqtt.example:8883", ("mqtt.example", 8883)), ("[::1]:8883", ("::1", 8883))],
)
def test_parse_broker(text: str, expected: tuple[str, int]) -> None:
    assert parse_broker(text) == expected


@pytest.mark.parametrize("text", ["mqtt.example", "mqtt.example:0", ":8883", "h:99999", "h:x"])
def test_parse_broker_refuses(text: str) -> None:
    with pytest.raises(ProvisioningError, match="is not HOST:PORT"):
        parse_broker(text)


def _doc() -> tuple[bytes, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    return sign_document({"format": "t/1", "n": 1, "s": "x"}, [key]), key


def test_signed_document_round_trip() -> None:
    data, key = _doc()
    doc = parse_document(data, "d.json", "t/1")
    doc.verify(key.public_key(), "test key")
    assert doc.body.integer("n", 0, 9) == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('"n": 1', '"n": 1.0'), "is not an integer"),
        (lambda t: t.replace('"n": 1,', '"n": 1, "n": 2,'), "key 'n' appears twice"),
        (lambda t: t.replace('"s": "x"', '"s": "\u00e9"'), "not ASCII"),
        (lambda t: t.replace('"format": "t/1"', '"format": "t/2"'), "field body.format"),
        (lambda t: t[:-5], "not valid JSON"),
    ],
)
def test_signed_document_strict_parsing(edit: object, message: str) -> None:
    data, _ = _doc()
    text = edit(data.decode())  # type: ignore[operator]
    with pytest.raises(ProvisioningError, match=message) as err:
        parse_document(text.encode(), "d.json", "t/1")
    assert str(err.value).startswith("d.json: ")


def test_non_canonical_base64_signature_is_refused() -> None:
    data, _ = _doc()
    doc = json.loads(data)
    value = doc["signatures"][0]["value"]
    assert value.endswith("==")
    # The last data character carries 4 unused bits: flipping one decodes to the same bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = value[-3]
    doc["signatures"][0]["value"] = value[:-3] + alphabet[alphabet.index(last) ^ 1] + "=="
    with pytest.raises(ProvisioningError, match="not canonical base64"):
        parse_document(json.dumps(doc).encode(), "d.json", "t/1")


def test_registry_lookup_reasons(tmp_path: Path) -> None:
    with Registry(tmp_path / "r.sqlite", clock=lambda: T0) as registry:
        key = Ed25519PrivateKey.generate().public_key()
        kid = key_id(key)
        with pytest.raises(EnvelopeError) as err:
            registry.lookup_station_key("S1", kid)
        assert err.value.reason == UNKNOWN_STATION
        registry.enrol("S1", kid, raw_public(key), None, b"n" * 16, 7, "PEM", T0 + 1)
        assert raw_public(registry.lookup_station_key("S1", kid)) == raw_public(key)
        with pytest.raises(EnvelopeError) as err:
            registry.lookup_station_key("S1", b"\0" * 8)
        assert err.value.reason == UNKNOWN_KEY
        assert registry.revoke("S1") is True
        with pytest.raises(EnvelopeError) as err:
            registry.lookup_station_key("S1", kid)
        assert err.value.reason == REVOKED
        assert registry.revoked_certificates() == [(7, T0)]
        assert registry.revoke("S1") is False


def test_registry_survives_reopening(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate().public_key()
    with Registry(tmp_path / "r.sqlite") as registry:
        registry.enrol("S1", key_id(key), raw_public(key), "pi:1", b"n" * 16, 7, "PEM", T0)
    with Registry(tmp_path / "r.sqlite") as registry:
        record = registry.station("S1")
    assert record is not None and record.hardware_serial == "pi:1"
    assert record.keys == {key_id(key).hex(): "active"}


def test_a_forged_packet_naming_the_new_key_does_not_retire_the_old_one(tmp_path: Path) -> None:
    """The key id in a header is public: only a verified packet may end the overlap."""
    w = make_world(tmp_path)
    identity.import_bundle(w.state_dir, w.bundle, "b.json", w.centre.fingerprint,
                           clock=lambda: T0)
    old = identity.load(w.state_dir)
    rot = identity.rotate(w.state_dir, clock=lambda: T0)
    issued = authority.rotate(w.centre, rot.request, "rot.json", clock=lambda: T0)
    identity.import_bundle(w.state_dir, issued.bundle, "b2.json", w.centre.fingerprint,
                           clock=lambda: T0)
    new = identity.load(w.state_dir)
    # An attacker's packet: right station, new key id in the header, signed by another key.
    impostor = Ed25519PrivateKey.generate()
    forged = packet(identity.StationIdentity(**{**old.__dict__, "key_id": new.key_id,
                                                "signing_key": impostor}), 1)
    with w.centre.registry() as registry:
        with pytest.raises(EnvelopeError) as err:
            registry.open_packet(forged, w.centre.packet_private)
        assert err.value.reason == BAD_SIGNATURE
        assert registry.open_packet(packet(old, 2), w.centre.packet_private)
        registry.open_packet(packet(new, 3), w.centre.packet_private)
        with pytest.raises(EnvelopeError) as err:
            registry.open_packet(packet(old, 4), w.centre.packet_private)
        assert err.value.reason == REVOKED


def test_identity_repr_shows_no_key(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    identity.import_bundle(w.state_dir, w.bundle, "b.json", w.centre.fingerprint,
                           clock=lambda: T0)
    text = repr(identity.load(w.state_dir)) + repr(w.centre)
    assert "signing_key" not in text and "packet_private" not in text and "HN-WW-001" in text
