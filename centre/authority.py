"""The centre's provisioning authority: its keys, its CA, enrolment, rotation, re-key,
revocation.

Centre dir layout (0700; private keys 0600)::

    packet.key      X25519: stations seal packets to it (HPKE)
    signing.key     Ed25519: signs bundles and commands; its fingerprint is what installers check
    ca.key, ca.crt  the CA for broker client certificates
    crl.pem         revoked station certificates, for the broker's ``crlfile``
    centre.json     public facts: key ids, fingerprint, default broker address
    registry.sqlite stations and their keys (``centre.registry``)
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from centre.registry import Registry, StationRecord
from protocol.clock import Clock
from protocol.envelope import key_id
from provisioning import certs
from provisioning.bundle import make_bundle, parse_broker
from provisioning.errors import ProvisioningError
from provisioning.keys import (
    fingerprint,
    load_ed25519_private,
    load_x25519_private,
    normalise_fingerprint,
    private_pem,
    raw_public,
)
from provisioning.request import Enrolment, read_enrolment, read_rotation
from provisioning.securefs import (
    check_private_dir,
    check_private_file,
    ensure_private_dir,
    write_new,
    write_replace,
)
from provisioning.signed import iso

log = logging.getLogger("quantrac.centre.authority")

DEFAULT_CENTRE_DIR = Path(os.environ.get("QUANTRAC_CENTRE_DIR", "/var/lib/quantrac-centre"))
DEFAULT_VALID_DAYS = 730
_PRIVATE = ("packet.key", "signing.key", "ca.key")


@dataclass(frozen=True)
class Centre:
    """The loaded centre: what ``centre serve`` opens packets with and signs commands with."""

    dir: Path
    packet_private: X25519PrivateKey = field(repr=False)
    signing_private: Ed25519PrivateKey = field(repr=False)
    ca_key: ec.EllipticCurvePrivateKey = field(repr=False)
    ca_pem: bytes = field(repr=False)
    fingerprint: str
    broker: tuple[str, int] | None

    @property
    def registry_path(self) -> Path:
        return self.dir / "registry.sqlite"

    @property
    def crl_path(self) -> Path:
        return self.dir / "crl.pem"

    def registry(self, clock: Clock = time.time) -> Registry:
        """Open this centre's station registry."""
        return Registry(self.registry_path, clock)


def init(directory: Path, broker: str | None = None, *, clock: Clock = time.time) -> Centre:
    """Create the centre's keys and CA; refuses if the directory already holds any."""
    address = parse_broker(broker) if broker else None
    ensure_private_dir(directory, "centre dir")
    present = [n for n in (*_PRIVATE, "centre.json") if (directory / n).exists()]
    if present:
        raise ProvisioningError(
            f"{directory}: already holds centre keys ({', '.join(present)}); refusing to "
            "replace them: every enrolled station trusts these keys"
        )
    now = clock()
    packet = X25519PrivateKey.generate()
    signing = Ed25519PrivateKey.generate()
    fp = fingerprint(signing.public_key())
    ca_key, ca_pem = certs.make_ca(f"quantrac centre CA {fp}", now)
    write_new(directory / "packet.key", private_pem(packet))
    write_new(directory / "signing.key", private_pem(signing))
    write_new(directory / "ca.key", certs.tls_key_pem(ca_key))
    write_new(directory / "ca.crt", ca_pem, mode=0o644)
    info = {
        "format": "quantrac-centre/1",
        "fingerprint": fp,
        "signing_key_id": key_id(signing.public_key()).hex(),
        "packet_key_id": key_id(packet.public_key()).hex(),
        "broker": f"{address[0]}:{address[1]}" if address else None,
        "created": iso(now),
    }
    write_new(directory / "centre.json", (json.dumps(info, indent=2) + "\n").encode())
    centre = load(directory)
    with centre.registry(clock):
        pass  # create the schema now, so `centre serve` finds it
    write_crl(centre, clock=clock)
    log.info("centre_initialised", extra={"dir": str(directory), "fingerprint": fp})
    return centre


def load(directory: Path = DEFAULT_CENTRE_DIR) -> Centre:
    """Load the centre's keys; refuses if the dir or a key file is readable by others."""
    check_private_dir(directory, "centre dir", "quantrac centre init")
    for name in _PRIVATE:
        check_private_file(directory / name)
    info_path = directory / "centre.json"
    try:
        info: dict[str, Any] = json.loads(info_path.read_text())
    except (OSError, ValueError) as exc:
        raise ProvisioningError(f"{info_path}: unreadable ({exc})") from None
    signing = load_ed25519_private(directory / "signing.key")
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ProvisioningError(f"{directory / 'ca.key'}: not an ECDSA key")
    broker = info.get("broker")
    log.debug(
        "centre_loaded", extra={"dir": str(directory), "fingerprint": info.get("fingerprint")}
    )
    return Centre(
        dir=directory,
        packet_private=load_x25519_private(directory / "packet.key"),
        signing_private=signing,
        ca_key=ca_key,
        ca_pem=(directory / "ca.crt").read_bytes(),
        fingerprint=fingerprint(signing.public_key()),
        broker=parse_broker(broker, f"{info_path}: field broker") if broker else None,
    )


def _broker(centre: Centre, broker: str | None) -> tuple[str, int]:
    if broker:
        return parse_broker(broker)
    if centre.broker is None:
        raise ProvisioningError(
            "--broker: no broker address given and none set at `quantrac centre init`; "
            "pass --broker HOST:PORT"
        )
    return centre.broker


@dataclass(frozen=True)
class Issued:
    """A bundle written for a station.

    ``reissued``: the request had been enrolled already and its bundle is written again (same
    key, same certificate); ``retired_keys``: the key ids a re-key revoked.
    """

    bundle: bytes
    station_id: str
    key_id: bytes
    expires: float
    reissued: bool = False
    retired_keys: tuple[str, ...] = ()


def _check_days(valid_days: int) -> None:
    if not 1 <= valid_days <= 3650:
        raise ProvisioningError(f"--valid-days: {valid_days} is not from 1 to 3650")


def _spki(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _new_certificate(
    centre: Centre, req: Enrolment, now: float, valid_days: int
) -> tuple[x509.Certificate, bytes, float]:
    """The station's client certificate for the request's TLS key: itself, PEM, not-after."""
    cert = certs.issue_client_cert(
        centre.ca_key, centre.ca_pem, req.csr.public_key(), req.station_id, now, valid_days
    )
    return cert, cert.public_bytes(serialization.Encoding.PEM), cert.not_valid_after_utc.timestamp()


def _enrolled_with(registry: Registry, req: Enrolment) -> tuple[str, float] | None:
    """The station's current certificate if ``req`` is the very request it was enrolled (or
    re-keyed) with, else None.

    "The very request": its nonce is on record for this station, its station key is the
    station's active key and its CSR's key is the current certificate's. Answering such a
    request again is what a lost USB stick needs, and it gives nothing away: the bundle is
    public, and only the device holding that station key can use it. A different request
    (another nonce, or another key) is never answered this way, so the replay guard holds.
    """
    if registry.nonce_station(req.nonce) != req.station_id:
        return None
    try:
        public, state, _ = registry.key(req.station_id, req.key_id)
    except KeyError:
        return None
    if state != "active" or raw_public(public) != raw_public(req.station_key):
        return None
    cert = registry.current_certificate(req.station_id)
    if cert is None:
        return None
    cert_key = x509.load_pem_x509_certificate(cert[0].encode("ascii")).public_key()
    return cert if _spki(cert_key) == _spki(req.csr.public_key()) else None


def _reissue(
    centre: Centre, req: Enrolment, cert: tuple[str, float], address: tuple[str, int], now: float
) -> Issued:
    """The bundle of an enrolled request, written again with the same certificate.

    The same certificate, not a new one: a re-issue then changes nothing at the centre (no
    second valid certificate for the station, nothing new to revoke), however often the stick
    is lost; its validity is the one chosen at enrolment.
    """
    log.info("bundle_reissued", extra={"station_id": req.station_id, "key_id": req.key_id.hex()})
    bundle = _bundle(centre, req.station_id, req.key_id, address, cert[0].encode("ascii"), now,
                     cert[1])
    return Issued(bundle, req.station_id, req.key_id, cert[1], reissued=True)


def enrol(
    centre: Centre,
    data: bytes,
    source: str,
    *,
    broker: str | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
    clock: Clock = time.time,
) -> Issued:
    """Verify an enrolment request, register the station, issue its certificate and bundle.

    The same request again (its bundle was lost) gets its bundle again (``Issued.reissued``).
    Any other request for a station id on record is refused: otherwise anyone with a fresh key
    could take the id over; a re-initialised station goes through ``rekey``.
    """
    _check_days(valid_days)
    address = _broker(centre, broker)
    req = read_enrolment(data, source)
    now = clock()
    with centre.registry(clock) as registry:
        known = registry.station(req.station_id)
        if known is not None:
            same = _enrolled_with(registry, req) if known.status == "active" else None
            if same is not None:
                return _reissue(centre, req, same, address, now)
            raise _already_enrolled(source, req, known)
        cert, cert_pem, not_after = _new_certificate(centre, req, now, valid_days)
        try:
            registry.enrol(
                req.station_id, req.key_id, raw_public(req.station_key), req.hardware_serial,
                req.nonce, cert.serial_number, cert_pem.decode("ascii"), not_after,
            )
        except ValueError as exc:
            raise ProvisioningError(f"{source}: field body.nonce: {exc}") from None
    bundle = _bundle(centre, req.station_id, req.key_id, address, cert_pem, now, not_after)
    return Issued(bundle, req.station_id, req.key_id, not_after)


def _already_enrolled(source: str, req: Enrolment, known: StationRecord) -> ProvisioningError:
    where = f"{source}: field body.station_id: {req.station_id!r}"
    if known.status != "active":
        return ProvisioningError(
            f"{where} is {known.status}; a revoked station id is never enrolled again: enrol "
            "the replacement gateway under a new station id"
        )
    keys = ", ".join(f"{k} {v}" for k, v in known.keys.items())
    return ProvisioningError(
        f"{where} is already enrolled with another key (keys on record: {keys}). If the "
        "station was re-initialised (`provision init --force`, a new SD card), approve its new "
        f"key with `quantrac centre rekey {source} --out BUNDLE --station-fingerprint FP`, FP "
        "as the station shows it (`provision init` printed it; `quantrac provision show` "
        "shows it): that revokes the old key. A station that still holds its enrolled key "
        "gets a new one through `quantrac provision rotate` and `quantrac centre rotate`"
    )


def rekey(
    centre: Centre,
    data: bytes,
    source: str,
    station_fingerprint: str,
    *,
    broker: str | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
    clock: Clock = time.time,
) -> Issued:
    """Give an enrolled station a new key from a fresh enrolment request; revoke the old ones.

    For a station that lost its keys (``provision init --force``, a new SD card): it cannot
    sign a rotation request, so nothing in the request proves it is the station; the proof is
    the centre operator comparing the fingerprint of the request's station key with the one
    the station shows, read out by the installer (``station_fingerprint``, what they typed).
    The old keys are retired (their packets refused as REVOKED) and the old certificates go on
    the CRL in the same step: a key that was not carried over may be in someone else's hands.
    The same request again (a lost stick) gets its bundle again.
    """
    expected = normalise_fingerprint(
        station_fingerprint, "--station-fingerprint",
        read_from="the station (`quantrac provision show` there, or what `provision init` "
        "printed)",
        what="station key fingerprint",
    )
    _check_days(valid_days)
    address = _broker(centre, broker)
    req = read_enrolment(data, source)
    if fingerprint(req.station_key) != expected:
        # Never the real one: an operator shown it could take it for the station's.
        raise ProvisioningError(
            f"{source}: field body.station_key: the request's station key does not have the "
            f"fingerprint typed ({expected}); nothing changed. Ask the installer to read the "
            "station key fingerprint again from the station (`quantrac provision show`), and "
            "check this request came from that station"
        )
    now = clock()
    with centre.registry(clock) as registry:
        known = registry.station(req.station_id)
        if known is None:
            raise ProvisioningError(
                f"{source}: field body.station_id: {req.station_id!r} is not enrolled: there "
                f"is no key to replace; enrol it with `quantrac centre enrol {source} --out "
                "BUNDLE`"
            )
        if known.status != "active":
            raise _already_enrolled(source, req, known)
        same = _enrolled_with(registry, req)
        if same is not None:
            return _reissue(centre, req, same, address, now)
        cert, cert_pem, not_after = _new_certificate(centre, req, now, valid_days)
        try:
            retired = registry.rekey(
                req.station_id, req.key_id, raw_public(req.station_key), req.hardware_serial,
                req.nonce, cert.serial_number, cert_pem.decode("ascii"), not_after,
            )
        except ValueError as exc:
            raise ProvisioningError(f"{source}: field body.nonce: {exc}") from None
    write_crl(centre, clock=clock)
    bundle = _bundle(centre, req.station_id, req.key_id, address, cert_pem, now, not_after)
    return Issued(bundle, req.station_id, req.key_id, not_after, retired_keys=tuple(retired))


def rotate(
    centre: Centre,
    data: bytes,
    source: str,
    *,
    broker: str | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
    clock: Clock = time.time,
) -> Issued:
    """Accept a station's new key (the old one stays valid until the new one is seen).

    The station's certificate is renewed for ``valid_days`` at the same time (same TLS key),
    so a periodic rotation is also how a station's certificate and bundle are kept current.
    """
    _check_days(valid_days)
    address = _broker(centre, broker)
    req = read_rotation(data, source)
    now = clock()
    with centre.registry(clock) as registry:
        known = registry.station(req.station_id)
        if known is None or known.status != "active":
            state = "not enrolled" if known is None else known.status
            raise ProvisioningError(
                f"{source}: field body.station_id: {req.station_id!r} is {state}"
            )
        try:
            old_public, old_state, successor = registry.key(req.station_id, req.old_key_id)
        except KeyError:
            old_state, successor = "unknown", None
        repeat = old_state == "retiring" and successor == req.new_key_id
        if old_state != "active" and not repeat:
            raise ProvisioningError(
                f"{source}: field body.old_key_id: {req.old_key_id.hex()} is not the active key of "
                f"{req.station_id!r} (keys: {known.keys})"
            )
        req.verify_old(old_public)
        cert = registry.current_certificate(req.station_id)
        if cert is None:
            raise ProvisioningError(f"{req.station_id!r}: no current certificate on record")
        if repeat:
            # The same rotation again (its bundle was lost on the way): answer it again.
            log.info("rotation_repeated", extra={"station_id": req.station_id,
                                                 "key_id": req.new_key_id.hex()})
        else:
            renewed = certs.issue_client_cert(
                centre.ca_key, centre.ca_pem,
                x509.load_pem_x509_certificate(cert[0].encode("ascii")).public_key(),
                req.station_id, now, valid_days,
            )
            cert = (renewed.public_bytes(serialization.Encoding.PEM).decode("ascii"),
                    renewed.not_valid_after_utc.timestamp())
            try:
                registry.rotate(
                    req.station_id, req.old_key_id, req.new_key_id, raw_public(req.new_key),
                    req.nonce, renewed.serial_number, cert[0], cert[1],
                )
            except ValueError as exc:
                raise ProvisioningError(f"{source}: {exc}") from None
    cert_pem, not_after = cert
    bundle = _bundle(
        centre, req.station_id, req.new_key_id, address, cert_pem.encode("ascii"), now, not_after
    )
    return Issued(bundle, req.station_id, req.new_key_id, not_after)


def _bundle(
    centre: Centre,
    station_id: str,
    station_key_id: bytes,
    broker: tuple[str, int],
    cert_pem: bytes,
    now: float,
    expires: float,
) -> bytes:
    return make_bundle(
        station_id=station_id,
        station_key_id=station_key_id,
        centre_signing=centre.signing_private,
        centre_packet=centre.packet_private.public_key(),
        broker=broker,
        ca_pem=centre.ca_pem,
        station_cert_pem=cert_pem,
        now=now,
        expires=expires,
    )


def revoke(centre: Centre, station_id: str, *, clock: Clock = time.time) -> bool:
    """Revoke a station: its packets are refused, its certificate goes on the CRL.

    Returns False if it was already revoked (the CRL is rewritten all the same).
    """
    with centre.registry(clock) as registry:
        if registry.station(station_id) is None:
            raise ProvisioningError(f"station {station_id!r}: not in the registry")
        changed = registry.revoke(station_id)
    write_crl(centre, clock=clock)
    return changed


@dataclass(frozen=True)
class BrokerFiles:
    """Where ``issue_broker_cert`` put the broker's TLS files (for mosquitto.conf)."""

    key: Path
    cert: Path
    ca: Path
    crl: Path


def issue_broker_cert(
    centre: Centre,
    hostnames: list[str],
    out_dir: Path,
    *,
    days: int = DEFAULT_VALID_DAYS,
    clock: Clock = time.time,
) -> BrokerFiles:
    """Key and server certificate for the broker (``keyfile``/``certfile``), from the centre CA.

    Also copies ``ca.crt`` (``cafile``: the broker checks station certificates against it)
    and the current CRL (``crlfile``). ``out_dir`` is created 0700; the key is never replaced.
    """
    if not hostnames:
        raise ProvisioningError("broker-cert: give at least one host name or IP address")
    ensure_private_dir(out_dir, "broker TLS dir")
    key = certs.new_tls_key()
    cert = certs.issue_server_cert(centre.ca_key, centre.ca_pem, key, hostnames, clock(), days)
    files = BrokerFiles(out_dir / "broker.key", out_dir / "broker.crt", out_dir / "ca.crt",
                        out_dir / "crl.pem")
    write_new(files.key, certs.tls_key_pem(key))
    write_replace(files.cert, cert, mode=0o644)
    write_replace(files.ca, centre.ca_pem, mode=0o644)
    write_replace(files.crl, centre.crl_path.read_bytes(), mode=0o644)
    log.info("broker_cert_issued", extra={"hosts": ",".join(hostnames), "dir": str(out_dir)})
    return files


def write_crl(centre: Centre, *, clock: Clock = time.time, days: int = 365) -> Path:
    """Rewrite ``crl.pem`` from the registry (signed by the CA; the broker reloads it).

    OpenSSL refuses every client once a CRL is past its next-update time, so this also runs
    as `quantrac centre crl` (from cron, well within ``days``).
    """
    with centre.registry(clock) as registry:
        revoked = registry.revoked_certificates()
    pem = certs.make_crl(centre.ca_key, centre.ca_pem, revoked, clock(), days)
    write_replace(centre.crl_path, pem, mode=0o644)
    log.info("crl_written", extra={"path": str(centre.crl_path), "revoked": len(revoked)})
    return centre.crl_path


def read_crl(path: Path) -> x509.CertificateRevocationList:
    """Parse a CRL file (for tests and `centre` tooling)."""
    return x509.load_pem_x509_crl(path.read_bytes())
