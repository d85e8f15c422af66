"""X.509 for the broker: the station's TLS key and CSR, the centre's CA, certificates, the CRL.

Pure functions (keys and times in, PEM bytes out); the station and the centre do the file I/O.
ECDSA P-256 throughout, because every TLS stack a broker or a Pi runs accepts it. The
certificate's CN is the station id: Mosquitto's ``use_identity_as_username`` turns it into the
user name its ACL pattern ``quantrac/v1/%u/#`` restricts.
"""

from __future__ import annotations

import datetime as dt
import secrets

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.errors import ProvisioningError, shown

PEM = serialization.Encoding.PEM
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def _when(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(t), dt.UTC)


def new_tls_key() -> ec.EllipticCurvePrivateKey:
    """The station's broker TLS key, generated on the device."""
    return ec.generate_private_key(ec.SECP256R1())


def tls_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM for a TLS key (the file mode is its protection)."""
    return key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_csr(key: ec.EllipticCurvePrivateKey, station_id: str) -> bytes:
    """A CSR with CN = station id, signed by the TLS key (proof the device holds it)."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, station_id)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(PEM)


def check_csr(pem: str, station_id: str, source: str) -> x509.CertificateSigningRequest:
    """Parse a CSR and refuse it unless self-signed, P-256 and for ``station_id``."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode("ascii"))
    except ValueError:
        raise ProvisioningError(f"{source}: field body.tls_csr: not a PEM CSR") from None
    if not csr.is_signature_valid:
        raise ProvisioningError(f"{source}: field body.tls_csr: the CSR's own signature is invalid")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ProvisioningError(f"{source}: field body.tls_csr: key must be ECDSA P-256")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if len(cns) == 1 else None
    if cn != station_id:
        raise ProvisioningError(
            f"{source}: field body.tls_csr: subject CN {shown(cn)} is not the station id "
            f"{station_id!r}"
        )
    return csr


def make_ca(name: str, now: float, days: int = 3650) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A CA that only issues end-entity client certificates (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_when(now - 300))
        .not_valid_after(_when(now + days * 86400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(PEM)


def issue_client_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_pem: bytes,
    public: object,
    station_id: str,
    now: float,
    days: int,
) -> x509.Certificate:
    """The station's broker client certificate: CN = station id, clientAuth only.

    ``public`` is the TLS key from the station's CSR (enrolment) or from its current
    certificate (renewal at rotation: the TLS key stays on the device, only validity changes).
    """
    ca = x509.load_pem_x509_certificate(ca_pem)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ProvisioningError("the station's TLS key must be ECDSA P-256")
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, station_id)]))
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1 | 1)
        .not_valid_before(_when(now - 300))
        .not_valid_after(_when(now + days * 86400))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                _ec_public(ca.public_key())
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def issue_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_pem: bytes,
    server_key: ec.EllipticCurvePrivateKey,
    hostnames: list[str],
    now: float,
    days: int,
) -> bytes:
    """The broker's TLS server certificate (serverAuth, SAN = hostnames / IP addresses).

    Stations check the broker against the CA in their bundle, hostname included, so the
    broker's certificate comes from the same centre CA.
    """
    import ipaddress

    names: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_when(now - 300))
        .not_valid_after(_when(now + days * 86400))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(PEM)


def make_crl(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_pem: bytes,
    revoked: list[tuple[int, float]],
    now: float,
    days: int = 30,
) -> bytes:
    """A CRL (PEM) listing ``(serial, revoked_at)``, as Mosquitto's ``crlfile`` reads it."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(_when(now - 60))
        .next_update(_when(now + days * 86400))
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(_when(when))
            .build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(PEM)


def check_station_cert(
    cert_pem: str, ca_pem: str, station_id: str, tls_public_pem: bytes, now: float | None,
    source: str,
) -> x509.Certificate:
    """Refuse a bundle's certificates unless the CA issued ours, for us, and it is current."""
    try:
        ca = x509.load_pem_x509_certificate(ca_pem.encode("ascii"))
    except ValueError:
        raise ProvisioningError(f"{source}: field body.ca_cert: not a PEM certificate") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    except ValueError:
        raise ProvisioningError(
            f"{source}: field body.station_cert: not a PEM certificate"
        ) from None
    try:
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise ProvisioningError(f"{source}: field body.ca_cert: not a CA certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise ProvisioningError(
            f"{source}: field body.station_cert: not issued by the bundle's CA "
            f"({type(exc).__name__})"
        ) from None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if len(cns) == 1 else None
    if cn != station_id:
        raise ProvisioningError(
            f"{source}: field body.station_cert: CN {shown(cn)} is not this station "
            f"({station_id!r})"
        )
    if cert.public_key().public_bytes(PEM, _SPKI) != tls_public_pem:
        raise ProvisioningError(
            f"{source}: field body.station_cert: certifies another TLS key, not this "
            "device's tls.key"
        )
    start, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    if now is not None and not start - 300 <= now < end:
        raise ProvisioningError(
            f"{source}: field body.station_cert: valid {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d}, not now; check the device clock"
        )
    return cert


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of a TLS key, to compare with a certificate's."""
    return key.public_key().public_bytes(PEM, _SPKI)


def _ec_public(key: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ProvisioningError("CA key must be ECDSA P-256")
    return key
