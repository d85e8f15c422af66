"""A real Mosquitto broker for tests: TLS with client certificates, a per-station ACL, persistence.

Why a module and not only a fixture: the fault tests stop and restart the same broker (same
port, same persistence file) and the benchmark in ``bench/`` starts one too, so the broker is a
small class the ``broker`` fixture (tests/conftest.py) and ``bench/drain.py`` both use.

The broker's own server certificate (for 127.0.0.1 and localhost) and a test CA are generated
here with ``cryptography.x509``. Client certificates (CN = station id, or ``centre``) come from
``client_cert``; a test that has a provisioned station can instead hand the broker its centre
CA with ``trust_client_ca`` so the broker accepts certificates provisioning issued.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CENTRE_USER = "centre"

# Station S may write only its own up/state and read only its own down; the centre reads every
# station's up/state and writes every down. %u is the username = the certificate's CN.
ACL = f"""\
pattern write quantrac/v1/%u/up
pattern write quantrac/v1/%u/state
pattern read quantrac/v1/%u/down

user {CENTRE_USER}
topic read quantrac/v1/+/up
topic read quantrac/v1/+/state
topic write quantrac/v1/+/down
"""


@dataclass(frozen=True)
class ClientCert:
    """Paths of one client's certificate and key (PEM)."""

    cert: Path
    key: Path


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (the broker binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class TestCA:
    """A CA that signs the broker's server certificate and test client certificates.

    Throwaway by default; given a centre's CA key and certificate (provisioning's CA, the one
    the station's bundle trusts) it issues from that instead, so provisioned stations verify
    the broker with the CA they were given.
    """

    def __init__(
        self,
        root: Path,
        key: ec.EllipticCurvePrivateKey | None = None,
        cert_pem: bytes | None = None,
    ) -> None:
        self.root = root
        self._issued = 0
        self.path = root / "ca.pem"
        if key is not None and cert_pem is not None:
            self.key = key
            self.cert = x509.load_pem_x509_certificate(cert_pem)
            self.path.write_bytes(cert_pem)
            return
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("quantrac test CA"))
            .issuer_name(_name("quantrac test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, server: bool = False) -> ClientCert:
        """A leaf certificate for ``cn``: a TLS server for loopback or a client (CN = identity)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        self._issued += 1
        stem = self.root / ("server" if server else f"client-{cn}-{self._issued}")
        out = ClientCert(stem.with_suffix(".crt"), stem.with_suffix(".key"))
        out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(out.key, key)
        return out


class Mosquitto:
    """One ``mosquitto -c`` process on a free loopback port; stop() and start() keep its state."""

    def __init__(
        self,
        root: Path,
        ca_key: ec.EllipticCurvePrivateKey | None = None,
        ca_pem: bytes | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.ca = TestCA(root, ca_key, ca_pem)
        self.server = self.ca.issue("127.0.0.1", server=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.client_ca = self.ca.path  # the CA the broker checks client certificates against
        self.log_path = root / "mosquitto.log"
        self.conf_path = root / "mosquitto.conf"
        self.acl_path = root / "acl"
        self.acl_path.write_text(ACL)
        (root / "data").mkdir(exist_ok=True)
        self.crl_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # --- certificates --------------------------------------------------------------------
    def client_cert(self, cn: str) -> ClientCert:
        """A client certificate for ``cn`` (a station id, or ``centre``) from the test CA."""
        return self.ca.issue(cn)

    def use_crl(self, crl_pem: Path) -> None:
        """Refuse client certificates revoked in ``crl_pem`` (takes effect at the next start)."""
        self.crl_path = crl_pem

    # --- process -------------------------------------------------------------------------
    def _write_config(self) -> None:
        lines = [
            # Run as whoever runs the tests: as root, mosquitto would otherwise drop to the
            # "mosquitto" user and could not read the files under tmp_path.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "per_listener_settings false",
            "persistence true",
            f"persistence_location {self.root / 'data'}/",
            "autosave_interval 1800",
            "max_queued_messages 0",  # no limit: a backlog of many packets must not be dropped
            "max_inflight_messages 100",
            f"acl_file {self.acl_path}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"listener {self.port} {self.host}",
            f"cafile {self.client_ca}",
            f"certfile {self.server.cert}",
            f"keyfile {self.server.key}",
            "require_certificate true",
            "use_identity_as_username true",
        ]
        if self.crl_path is not None:
            lines.append(f"crlfile {self.crl_path}")
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and return once its TLS listener completes a handshake."""
        if self._proc is not None:
            raise RuntimeError("mosquitto already running")
        self._write_config()
        self._proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        probe = self.client_cert(CENTRE_USER) if not hasattr(self, "_probe") else self._probe
        self._probe = probe
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                self._proc = None
                raise RuntimeError(f"mosquitto exited at start: {err} {self.log()}")
            if self._tls_ready(probe):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"mosquitto not accepting TLS on {self.port}: {self.log()}")
            time.sleep(0.02)

    def _tls_ready(self, probe: ClientCert) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.ca.path))
        ctx.load_cert_chain(str(probe.cert), str(probe.key))
        try:
            with (
                socket.create_connection((self.host, self.port), timeout=1.0) as raw,
                ctx.wrap_socket(raw, server_hostname=self.host),
            ):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop cleanly (SIGTERM: mosquitto writes its persistence file on the way out)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
