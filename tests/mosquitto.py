"""A real Mosquitto broker for tests: TLS client certificates, the per-station ACL, persistence.

Why a module and not only a fixture: the fault tests stop and restart the same broker (same
port, same persistence file), and ``bench/drain.py`` and other packages' tests start one too.

Nothing here invents its own certificates or configuration: the CA, server and client
certificates come from ``provisioning.certs`` (the centre's CA when one is given, so a
provisioned station verifies the broker with the CA its bundle carries), and the ACL and
``mosquitto.conf`` are ``centre.broker``'s, the very ones an operator's broker runs with. The
one test-only difference: the broker runs as the current user (``user`` line), so it can read
files under ``tmp_path`` even when the tests run as root.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from centre.broker import RECEIVER_NAME, BrokerSetup, receiver_cn, render_acl, render_config
from provisioning import certs

DAYS = 2
#: The receiver identities every test broker knows (in its ACL). Each receiver process needs
#: its own: the broker makes a certificate's CN the MQTT client id, so two receivers sharing
#: one certificate would close each other's connection.
RECEIVER_NAMES = (RECEIVER_NAME, "receiver-1", "receiver-2", "receiver-3")


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


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


class Mosquitto:
    """One ``mosquitto -c`` process on a free loopback port; stop() and start() keep its state.

    ``ca_key``/``ca_pem``: the CA that issues the broker's and the clients' certificates and
    that the broker checks client certificates against (a centre's CA); a throwaway one if
    not given.
    """

    def __init__(
        self,
        root: Path,
        ca_key: ec.EllipticCurvePrivateKey | None = None,
        ca_pem: bytes | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        now = time.time()
        if ca_key is None or ca_pem is None:
            ca_key, ca_pem = certs.make_ca("quantrac test CA", now, days=DAYS)
        self.ca_key = ca_key
        self.ca_pem = ca_pem
        self.ca_path = _write(root / "ca.crt", ca_pem)
        self.host = "127.0.0.1"
        self.port = free_port()
        server_key = certs.new_tls_key()
        server_pem = certs.issue_server_cert(
            ca_key, ca_pem, server_key, [self.host, "localhost"], now, DAYS
        )
        self._issued = 0
        self.receivers = {n: self.client_cert(receiver_cn(n)) for n in RECEIVER_NAMES}
        self.receiver = self.receivers[RECEIVER_NAME]
        acl = render_acl([receiver_cn(n) for n in RECEIVER_NAMES])
        data_dir = root / "data"
        data_dir.mkdir(exist_ok=True)
        self.setup = BrokerSetup(
            directory=root,
            host=self.host,
            port=self.port,
            conf=root / "mosquitto.conf",
            acl=_write(root / "acl", acl.encode()),
            server_key=_write(root / "server.key", certs.tls_key_pem(server_key), 0o600),
            server_cert=_write(root / "server.crt", server_pem),
            ca=self.ca_path,
            crl=_write(root / "crl.pem", certs.make_crl(ca_key, ca_pem, [], now, DAYS)),
            receiver_key=self.receiver.key,
            receiver_cert=self.receiver.cert,
            data_dir=data_dir,
            log_file=root / "mosquitto.log",
            receivers=tuple((n, c.cert, c.key) for n, c in self.receivers.items()),
        )
        self.log_path = self.setup.log_file
        self._proc: subprocess.Popen[bytes] | None = None

    # --- certificates --------------------------------------------------------------------
    def client_cert(self, cn: str) -> ClientCert:
        """A client certificate for ``cn`` (a station id, or the receivers' CN) from the CA."""
        key = certs.new_tls_key()
        cert = certs.issue_client_cert(
            self.ca_key, self.ca_pem, key.public_key(), cn, time.time(), DAYS
        )
        self._issued += 1
        stem = self.root / f"client-{self._issued}"
        return ClientCert(
            _write(stem.with_suffix(".crt"), cert.public_bytes(certs.PEM)),
            _write(stem.with_suffix(".key"), certs.tls_key_pem(key), 0o600),
        )

    def use_crl(self, crl_pem: Path) -> None:
        """Refuse client certificates revoked in ``crl_pem`` (read again at every start)."""
        self._crl_source = crl_pem

    # --- process -------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and return once its TLS listener completes a handshake."""
        if self._proc is not None:
            raise RuntimeError("mosquitto already running")
        source = getattr(self, "_crl_source", None)
        if source is not None:
            _write(self.setup.crl, Path(source).read_bytes())
        user = pwd.getpwuid(os.getuid()).pw_name
        self.setup.conf.write_text(render_config(self.setup, user=user))
        self._proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.setup.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                self._proc = None
                raise RuntimeError(f"mosquitto exited at start: {err} {self.log()}")
            if self._tls_ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"mosquitto not accepting TLS on {self.port}: {self.log()}")
            time.sleep(0.02)

    def _tls_ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        ctx.load_cert_chain(str(self.receiver.cert), str(self.receiver.key))
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
