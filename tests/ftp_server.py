"""A real FTP server for tests: pyftpdlib on loopback, in a thread of the test process.

Why a module and not only a fixture: the link-down test stops the server and starts it again on
the same port and directory. Each server has its own IOLoop (pyftpdlib's default is one per
process, which two servers in two threads would share). The handler records what the uplink
did (every STOR and RNTO, in order), so a test can tell "stored under a temp name, then
renamed" from "stored in place", and count deliveries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
from pyftpdlib.handlers import FTPHandler  # type: ignore[import-untyped]
from pyftpdlib.ioloop import IOLoop  # type: ignore[import-untyped]
from pyftpdlib.servers import FTPServer  # type: ignore[import-untyped]

USER = "station1"
PASSWORD = "s3cret-ftp-pass"


@dataclass
class Journal:
    """What the server saw, in order (shared across restarts of one test's server)."""

    stored: list[str] = field(default_factory=list)  # STOR targets, base names
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (from, to), base names
    lock: threading.Lock = field(default_factory=threading.Lock)


class FtpServer:
    """``start()`` / ``stop()`` a pyftpdlib server rooted at ``home`` on 127.0.0.1:``port``."""

    def __init__(self, home: Path, port: int = 0) -> None:
        self.home = home
        self.port = port
        self.journal = Journal()
        self._server: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        journal = self.journal

        class Handler(FTPHandler):  # type: ignore[misc]
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
        auth.add_user(USER, PASSWORD, str(self.home), perm="elradfmw")
        Handler.authorizer = auth
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
