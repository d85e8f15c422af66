"""Enrolment and rotation requests: what the station writes to the USB stick for the centre.

Both are signed documents (see ``signed``). An enrolment request is signed by the new station
key (proof the device holds it). A rotation request is signed twice: by the key the centre has
on record (it is really this station) and by the new key (proof of possession).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.envelope import key_id
from provisioning.certs import check_csr
from provisioning.errors import ProvisioningError
from provisioning.keys import ed25519_public, raw_public
from provisioning.signed import (
    Document,
    Reader,
    b64,
    iso,
    parse_document,
    sign_document,
)

ENROLMENT_FORMAT = "quantrac-enrolment-request/1"
ROTATION_FORMAT = "quantrac-rotation-request/1"


def _key_entry(key: Ed25519PublicKey) -> dict[str, str]:
    return {"alg": "Ed25519", "key_id": key_id(key).hex(), "public": b64(raw_public(key))}


def _read_key(r: Reader, name: str) -> tuple[Ed25519PublicKey, bytes]:
    entry = r.obj(name)
    entry.exact_keys({"alg", "key_id", "public"})
    if entry.text("alg") != "Ed25519":
        raise entry.fail("alg", "must be 'Ed25519'")
    public = ed25519_public(entry.b64("public", 32))
    kid = entry.hex("key_id", 8)
    if kid != key_id(public):
        raise entry.fail(
            "key_id", f"does not match the public key (which has {key_id(public).hex()})"
        )
    return public, kid


def make_enrolment(
    station_id: str,
    station_key: Ed25519PrivateKey,
    csr_pem: bytes,
    hardware_serial: str | None,
    now: float,
) -> bytes:
    """The enrolment request file, signed by the station key."""
    body = {
        "format": ENROLMENT_FORMAT,
        "station_id": station_id,
        "created": iso(now),
        "nonce": b64(secrets.token_bytes(16)),
        "hardware_serial": hardware_serial,
        "station_key": _key_entry(station_key.public_key()),
        "tls_csr": csr_pem.decode("ascii"),
    }
    return sign_document(body, [station_key])


@dataclass(frozen=True)
class Enrolment:
    """A verified enrolment request."""

    station_id: str
    station_key: Ed25519PublicKey
    key_id: bytes
    csr: x509.CertificateSigningRequest
    hardware_serial: str | None
    nonce: bytes
    created: float


def read_enrolment(data: bytes, source: str) -> Enrolment:
    """Parse and verify an enrolment request; any doubt is a refusal naming the field."""
    doc = parse_document(data, source, ENROLMENT_FORMAT)
    body = doc.body
    body.exact_keys(
        {"format", "station_id", "created", "nonce", "hardware_serial", "station_key", "tls_csr"}
    )
    station_id = body.station_id()
    public, kid = _read_key(body, "station_key")
    doc.verify(public, "station key named in station_key")
    return Enrolment(
        station_id=station_id,
        station_key=public,
        key_id=kid,
        csr=check_csr(body.text("tls_csr"), station_id, source),
        hardware_serial=body.optional_str("hardware_serial"),
        nonce=body.b64("nonce", 16),
        created=body.time("created"),
    )


def make_rotation(
    station_id: str, old_key: Ed25519PrivateKey, new_key: Ed25519PrivateKey, now: float
) -> bytes:
    """The rotation request file, signed by the old and the new station key."""
    body = {
        "format": ROTATION_FORMAT,
        "station_id": station_id,
        "created": iso(now),
        "nonce": b64(secrets.token_bytes(16)),
        "old_key_id": key_id(old_key.public_key()).hex(),
        "new_key": _key_entry(new_key.public_key()),
    }
    return sign_document(body, [old_key, new_key])


@dataclass(frozen=True)
class Rotation:
    """A parsed rotation request; ``verify_old`` must pass before it means anything."""

    doc: Document
    station_id: str
    old_key_id: bytes
    new_key: Ed25519PublicKey
    new_key_id: bytes
    nonce: bytes

    def verify_old(self, old_public: Ed25519PublicKey) -> None:
        """Check the signature by the key the centre has on record for this station."""
        if key_id(old_public) != self.old_key_id:
            raise ProvisioningError(f"{self.doc.source}: field body.old_key_id: mismatch")
        self.doc.verify(old_public, "station's current key")


def read_rotation(data: bytes, source: str) -> Rotation:
    """Parse a rotation request and verify the new key's own signature."""
    doc = parse_document(data, source, ROTATION_FORMAT)
    body = doc.body
    body.exact_keys({"format", "station_id", "created", "nonce", "old_key_id", "new_key"})
    new_key, new_kid = _read_key(body, "new_key")
    old_kid = body.hex("old_key_id", 8)
    if old_kid == new_kid:
        raise body.fail("old_key_id", "is the new key: nothing to rotate")
    doc.verify(new_key, "new key named in new_key")
    body.time("created")
    return Rotation(doc, body.station_id(), old_kid, new_key, new_kid, body.b64("nonce", 16))
