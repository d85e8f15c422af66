"""FTP and FTPS sessions as :class:`~edge_agent.uplinks.circular10.transport.RemoteFiles`.

Every ``ftplib`` reply is sorted here into what a retry can do, so the uplink's policy never
looks at an FTP code:

* 530 at login -> :class:`PermanentRefusal` ("check user/password with the province"); a
  certificate that does not verify -> :class:`PermanentRefusal` (set ``ca_file``);
* 550 (and the other 5xx) on CWD, MKD or STOR -> :class:`PermanentRefusal`: the account may
  not write there, which only the province can change;
* 550/502/553/504 on RNFR/RNTO -> :class:`RenameRefused`: upload-only accounts are common;
* a 4xx, a refused or reset connection, a timeout, EOF -> :class:`LinkDown`.

FTPS is explicit (``AUTH TLS``) with a protected data channel that resumes the control
connection's TLS session (:class:`SessionReuseFTP_TLS`). Binary transfers, so ``SIZE`` is
bytes and the file arrives byte for byte as rendered.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from edge_agent.uplinks.circular10.transport import (
    LinkDown,
    PermanentRefusal,
    RenameRefused,
)

T = TypeVar("T")
_LINK_ERRORS = (OSError, EOFError, ftplib.error_temp, ftplib.error_reply, ftplib.error_proto)


class SessionReuseFTP_TLS(ftplib.FTP_TLS):
    """``FTP_TLS`` whose data connections resume the control connection's TLS session.

    Why: the stdlib's ``FTP_TLS`` opens a fresh TLS session on every data connection, and
    servers that guard against data-connection theft refuse that (vsftpd's default
    ``require_ssl_reuse=YES``: "522 SSL connection failed: session reuse required"; many
    FileZilla servers likewise), so the transfer fails although login worked. Offering the
    control connection's session proves the data connection comes from the same client.
    A server that does not care simply does a full handshake instead.
    """

    def ntransfercmd(self, cmd: str, rest: int | str | None = None
                     ) -> tuple[socket.socket, int | None]:
        # FTP.ntransfercmd, not FTP_TLS's (which would wrap without the session)
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            control = self.sock
            session = control.session if isinstance(control, ssl.SSLSocket) else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=session)
        return conn, size


_NOT_ALLOWED = ("ask the province to allow it (the account may not do this), or fix "
                "directory/remote_dir")


@contextlib.contextmanager
def _sorted_errors(what: str, fix: str = _NOT_ALLOWED,
                   trusted: str = "the system's CA store") -> Iterator[None]:
    """Transient errors as LinkDown; a 5xx reply as PermanentRefusal naming ``what``."""
    try:
        yield
    except ssl.SSLCertVerificationError as exc:  # not a flaky link: say what to fix
        raise PermanentRefusal(f"{what}: SSLCertVerificationError: {exc}",
                               "the server's certificate is not trusted: it does not verify "
                               f"against {trusted}; set ca_file to the CA that signed it"
                               ) from exc
    except ftplib.error_perm as exc:
        if str(exc).startswith("530"):
            fix = "check user/password with the province"
        raise PermanentRefusal(f"{what}: {exc}", fix) from exc
    except _LINK_ERRORS as exc:
        raise LinkDown(f"{what}: {type(exc).__name__}: {exc}") from exc


class FtpFiles:
    """One logged-in FTP or FTPS session (open it with :meth:`connect`)."""

    def __init__(self, ftp: ftplib.FTP) -> None:
        self.ftp = ftp
        self._made: set[str] = set()  # folders known to exist in this session

    @classmethod
    def connect(cls, *, host: str, port: int, user: str, password: str, tls: bool,
                ca_file: Path | None, passive: bool, timeout_s: float) -> FtpFiles:
        ftp: ftplib.FTP
        if tls:
            context = ssl.create_default_context(
                cafile=str(ca_file) if ca_file is not None else None)
            ftp = SessionReuseFTP_TLS(context=context, timeout=timeout_s, encoding="utf-8")
        else:
            ftp = ftplib.FTP(timeout=timeout_s, encoding="utf-8")
        trusted = str(ca_file) if ca_file is not None else "the system's CA store"
        try:
            with _sorted_errors(f"connect {host}:{port}"):
                ftp.connect(host, port)
            with _sorted_errors(f"login as {user}", "the server refuses this client: check "
                                "transport (ftp or ftps) and the account with the province",
                                trusted):
                ftp.login(user, password)  # FTP_TLS.login sends AUTH TLS first
                if isinstance(ftp, ftplib.FTP_TLS):
                    ftp.prot_p()  # the data channel too
                ftp.set_pasv(passive)
                ftp.voidcmd("TYPE I")  # binary: bytes as rendered, and SIZE means bytes
        except BaseException:
            with contextlib.suppress(*_LINK_ERRORS, ftplib.Error):
                ftp.close()
            raise
        return cls(ftp)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with _sorted_errors(what):
            return fn()

    def make_dirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        lead = "/" if path.startswith("/") else ""
        for i in range(1, len(parts) + 1):
            folder = lead + "/".join(parts[:i])
            if folder in self._made:
                continue
            try:
                with _sorted_errors(f"MKD {folder}"):
                    self.ftp.mkd(folder)
            except PermanentRefusal:  # 550: there already, or not allowed: which one?
                if not self._exists(folder):
                    raise PermanentRefusal(
                        f"MKD {folder}: refused and the folder is not there",
                        f"ask the province to create {folder} or to allow this account to "
                        "make folders (or fix directory/remote_dir)") from None
            self._made.add(folder)

    def _exists(self, folder: str) -> bool:
        here = self._call("PWD", self.ftp.pwd)
        try:
            with _sorted_errors(f"CWD {folder}"):
                self.ftp.cwd(folder)
        except PermanentRefusal:
            return False
        self._call(f"CWD {here}", lambda: self.ftp.cwd(here))
        return True

    def size(self, path: str) -> int | None:
        try:
            with _sorted_errors(f"SIZE {path}"):
                return self.ftp.size(path)
        except PermanentRefusal:  # 550: not there (or SIZE refused): upload it
            return None

    def store(self, path: str, data: bytes) -> None:
        self._call(f"STOR {path}", lambda: self.ftp.storbinary(f"STOR {path}", io.BytesIO(data)))

    def rename(self, src: str, dst: str) -> None:
        try:
            with _sorted_errors(f"RNFR {src} / RNTO {dst}"):
                self.ftp.rename(src, dst)
        except PermanentRefusal as exc:
            raise RenameRefused(str(exc)) from exc

    def list_names(self, path: str) -> list[str]:
        try:
            with _sorted_errors(f"NLST {path}"):
                names = self.ftp.nlst(path)
        except PermanentRefusal:  # many servers answer 550 for an empty folder
            return []
        return [n.rsplit("/", 1)[-1] for n in names]

    def close(self) -> None:
        try:
            self.ftp.quit()
        except (*_LINK_ERRORS, ftplib.Error):
            with contextlib.suppress(OSError):
                self.ftp.close()
