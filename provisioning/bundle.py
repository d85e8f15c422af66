"""The enrolment bundle: everything a station needs from the centre, signed by the centre.

Verification order matters: first that the bundle is signed by the key whose fingerprint the
installer typed (nothing else in an unauthenticated file is worth reading), then that it is for
this station and this key, then that it is current and its certificates fit this device.

The topics a bundle names (and that reading one insists on) are ``protocol.topics.Topics``,
the same names the centre's receiver and the broker's ACL use.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from protocol.envelope import key_id
from protocol.topics import Topics
from provisioning.certs import check_station_cert
from provisioning.errors import ProvisioningError, shown
from provisioning.keys import ed25519_public, fingerprint, raw_public, x25519_public
from provisioning.signed import Reader, b64, iso, parse_document, sign_document

BUNDLE_FORMAT = "quantrac-bundle/1"


def parse_broker(text: str, source: str = "--broker") -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) or a refusal naming the value."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProvisioningError(
            f"{source}: {shown(text)} is not HOST:PORT (e.g. mqtt.example:8883)"
        )
    return host, int(port)


def make_bundle(
    *,
    station_id: str,
    station_key_id: bytes,
    centre_signing: Ed25519PrivateKey,
    centre_packet: X25519PublicKey,
    broker: tuple[str, int],
    ca_pem: bytes,
    station_cert_pem: bytes,
    now: float,
    expires: float,
) -> bytes:
    """The bundle file, signed by the centre's Ed25519 key."""
    signing_public = centre_signing.public_key()
    topics = Topics.for_station(station_id)
    body = {
        "format": BUNDLE_FORMAT,
        "station_id": station_id,
        "station_key_id": station_key_id.hex(),
        "issued": iso(now),
        "expires": iso(expires),
        "centre": {
            "packet_key": {
                "alg": "X25519",
                "key_id": key_id(centre_packet).hex(),
                "public": b64(raw_public(centre_packet)),
            },
            "signing_key": {
                "alg": "Ed25519",
                "key_id": key_id(signing_public).hex(),
                "public": b64(raw_public(signing_public)),
            },
        },
        "broker": {"host": broker[0], "port": broker[1]},
        "ca_cert": ca_pem.decode("ascii"),
        "station_cert": station_cert_pem.decode("ascii"),
        "topics": {"up": topics.up, "down": topics.down, "state": topics.state},
    }
    return sign_document(body, [centre_signing])


@dataclass(frozen=True)
class Bundle:
    """A verified bundle, ready to install."""

    station_id: str
    station_key_id: bytes
    issued: float
    expires: float
    centre_packet: X25519PublicKey
    centre_signing: Ed25519PublicKey
    fingerprint: str
    broker_host: str
    broker_port: int
    ca_pem: str
    station_cert_pem: str
    station_cert: x509.Certificate
    topics: Topics


def read_bundle(
    data: bytes,
    source: str,
    *,
    expected_fingerprint: str,
    station_id: str,
    station_key_ids: set[bytes],
    tls_public_pem: bytes,
    now: float | None,
) -> Bundle:
    """Verify a bundle for this station; every refusal names the file and field.

    ``now=None`` skips the time checks: loading an installed bundle must not stop a station
    from buffering data just because its certificate ran out.
    """
    doc = parse_document(data, source, BUNDLE_FORMAT)
    body = doc.body
    body.exact_keys(
        {"format", "station_id", "station_key_id", "issued", "expires", "centre", "broker",
         "ca_cert", "station_cert", "topics"}
    )
    centre = body.obj("centre")
    centre.exact_keys({"packet_key", "signing_key"})
    signing_entry = centre.obj("signing_key")
    signing_entry.exact_keys({"alg", "key_id", "public"})
    signing = ed25519_public(signing_entry.b64("public", 32))
    got = fingerprint(signing)
    if got != expected_fingerprint:
        # The bundle's own fingerprint is never shown: an installer in a hurry would paste it
        # back, and the out-of-band check would then prove nothing.
        raise ProvisioningError(
            f"{source}: field body.centre.signing_key: this bundle is not signed by the centre "
            f"whose fingerprint was given ({expected_fingerprint}); nothing installed. Redo the "
            "fingerprint step: ask the centre operator to read `quantrac centre fingerprint` "
            "aloud (or take it from the centre's signed sheet), not from this bundle; and check "
            "the bundle came from that centre (the right USB stick, enrolled there)"
        )
    doc.verify(signing, f"centre signing key {got}")
    # From here on the content is the centre's word; check it is meant for us, and sane.
    _check_key_entry(signing_entry, "Ed25519", key_id(signing))
    bundle_station = body.station_id()
    if bundle_station != station_id:
        raise body.fail(
            "station_id", f"this bundle is for another station; this one is {station_id!r}"
        )
    skid = body.hex("station_key_id", 8)
    if skid not in station_key_ids:
        have = ", ".join(sorted(k.hex() for k in station_key_ids))
        raise body.fail("station_key_id", f"names a key this device does not hold (it has {have})")
    issued = body.time("issued")
    expires = body.time("expires")
    if now is not None and now >= expires:
        raise body.fail(
            "expires", f"the bundle expired; now is {iso(now)}; ask the centre for a new one"
        )
    packet_entry = centre.obj("packet_key")
    packet_entry.exact_keys({"alg", "key_id", "public"})
    packet = x25519_public(packet_entry.b64("public", 32))
    _check_key_entry(packet_entry, "X25519", key_id(packet))
    broker = body.obj("broker")
    broker.exact_keys({"host", "port"})
    host = broker.text("host")
    if not host:
        raise broker.fail("host", "empty")
    port = broker.integer("port", 1, 65535)
    topics = body.obj("topics")
    topics.exact_keys({"up", "down", "state"})
    want = Topics.for_station(station_id)
    for name in ("up", "down", "state"):
        if topics.text(name) != getattr(want, name):
            raise topics.fail(name, f"must be {getattr(want, name)!r}")
    ca_pem = body.text("ca_cert")
    cert_pem = body.text("station_cert")
    cert = check_station_cert(cert_pem, ca_pem, station_id, tls_public_pem, now, source)
    return Bundle(
        station_id=station_id,
        station_key_id=skid,
        issued=issued,
        expires=expires,
        centre_packet=packet,
        centre_signing=signing,
        fingerprint=got,
        broker_host=host,
        broker_port=port,
        ca_pem=ca_pem,
        station_cert_pem=cert_pem,
        station_cert=cert,
        topics=want,
    )


def _check_key_entry(entry: Reader, alg: str, kid: bytes) -> None:
    if entry.text("alg") != alg:
        raise entry.fail("alg", f"must be {alg!r}")
    if entry.hex("key_id", 8) != kid:
        raise entry.fail("key_id", f"does not match the public key (which has {kid.hex()})")
