"""A real FTP server for tests: pyftpdlib on loopback, in a thread of the test process.

Why a module and not only a fixture: the link-down test stops the server and starts it again on
the same port and directory. Each server has its own IOLoop (pyftpdlib's default is one per
process, which two servers in two threads would share). The handler records what the uplink
did (every STOR and RNTO, in order), so a test can tell "stored under a temp name, then
renamed" from "stored in place", and count deliveries.

With ``tls`` it is an explicit-FTPS server (pyftpdlib's ``TLS_FTPHandler``, on pyOpenSSL) that
refuses USER/PASS before ``AUTH TLS`` and PASV before ``PROT P``. With
``require_session_reuse`` as well, a data connection whose TLS handshake did not resume the
control connection's session is refused with vsftpd's 522 (its default
``require_ssl_reuse=YES``), so the stdlib's ``FTP_TLS`` fails against it; the journal notes,
for each protected data connection, whether its session was resumed.

``perm`` is the account's pyftpdlib permissions: :data:`FULL` by default; :data:`UPLOAD_ONLY`
is what many provinces give a station (list, make folders, store; no rename, no delete), and
:data:`NO_MKDIR` one that may not even make its dated folders.

``on_rename``, when set, is called in the server's thread with the new path once a rename is
done on disk and before the client is answered: a test can SIGKILL the client at the one moment
when the server has the file under its final name and the client cannot know it yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import lib as _ossl  # SSL_session_reused: pyOpenSSL has no public call
from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
from pyftpdlib.filesystems import AbstractedFS  # type: ignore[import-untyped]
from pyftpdlib.handlers import (  # type: ignore[import-untyped]
    FTPHandler,
    TLS_DTPHandler,
    TLS_FTPHandler,
)
from pyftpdlib.ioloop import IOLoop  # type: ignore[import-untyped]
from pyftpdlib.log import logger  # type: ignore[import-untyped]
from pyftpdlib.servers import FTPServer  # type: ignore[import-untyped]

from provisioning import certs

USER = "station1"
PASSWORD = "s3cret-ftp-pass"
FULL = "elradfmw"
UPLOAD_ONLY = "elmw"  # CWD, LIST, MKD, STOR: no RNFR/RNTO ('f'), no DELE ('d')
NO_MKDIR = "elw"


@dataclass
class Journal:
    """What the server saw, in order (shared across restarts of one test's server)."""

    stored: list[str] = field(default_factory=list)  # STOR targets, base names
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (from, to), base names
    data_tls_resumed: list[bool] = field(default_factory=list)  # per protected data connection
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate for 127.0.0.1 and the CA that signed it (the client's ``ca_file``)."""

    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path, ca_name: str = "quantrac test FTP CA") -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it, as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    now = time.time()
    ca_key, ca_pem = certs.make_ca(ca_name, now, days=2)
    key = certs.new_tls_key()
    cert = certs.issue_server_cert(ca_key, ca_pem, key, ["127.0.0.1"], now, days=2)
    files = TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    files.ca.write_bytes(ca_pem)
    files.cert.write_bytes(cert)
    files.key.write_bytes(certs.tls_key_pem(key))
    return files


class FtpServer:
    """``start()`` / ``stop()`` a pyftpdlib server rooted at ``home`` on 127.0.0.1:``port``."""

    def __init__(self, home: Path, port: int = 0, tls: TlsFiles | None = None,
                 require_session_reuse: bool = False, tls12_only: bool = False,
                 perm: str = FULL) -> None:
        self.home = home
        self.perm = perm
        self.port = port
        self.tls = tls
        self.require_session_reuse = require_session_reuse
        self.tls12_only = tls12_only  # session-id / TLS 1.2 ticket resumption, not TLS 1.3's
        self.journal = Journal()
        self.on_rename: Callable[[str], None] | None = None
        self._server: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        journal = self.journal
        require_reuse = self.require_session_reuse

        class Data(TLS_DTPHandler):  # type: ignore[misc]
            def handle_ssl_established(self) -> None:
                resumed = bool(_ossl.SSL_session_reused(self.socket._ssl))
                with journal.lock:
                    journal.data_tls_resumed.append(resumed)
                if require_reuse and not resumed:  # what vsftpd answers
                    self._resp = ("522 SSL connection failed: session reuse required", logger.info)
                    self._error = True  # close at once, no TLS shutdown
                    self.close()

        server = self

        class Files(AbstractedFS):  # type: ignore[misc]
            def rename(self, src: str, dst: str) -> None:
                super().rename(src, dst)
                if server.on_rename is not None:  # done on disk, not answered yet
                    server.on_rename(dst)

        base: Any = FTPHandler
        if self.tls is not None:
            base = type("TlsHandler", (TLS_FTPHandler,), {
                "certfile": str(self.tls.cert), "keyfile": str(self.tls.key),
                "tls_control_required": True, "tls_data_required": True,
                "dtp_handler": Data, "ssl_options": TLS_FTPHandler.ssl_options
                | (SSL.OP_NO_TLSv1_3 if self.tls12_only else 0)})

        class Handler(base):  # type: ignore[misc]
            def on_file_received(self, file: str) -> None:
                with journal.lock:
                    journal.stored.append(Path(file).name)

            def ftp_RNTO(self, path: str) -> Any:
                result = super().ftp_RNTO(path)
                if result is not None:  # (source, destination) when the rename happened
                    with journal.lock:
                        journal.renamed.append((Path(result[0]).name, Path(result[1]).name))
                return result

        auth = DummyAuthorizer()
        auth.add_user(USER, PASSWORD, str(self.home), perm=self.perm)
        Handler.authorizer = auth
        Handler.abstracted_fs = Files
        Handler.passive_ports = None
        self._server = FTPServer(("127.0.0.1", self.port), Handler, ioloop=IOLoop())
        self.port = self._server.address[1]
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="ftp-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        server = self._server
        while not self._stop.is_set():
            server.serve_forever(timeout=0.02, blocking=False, handle_exit=False)
        server.close_all()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None
