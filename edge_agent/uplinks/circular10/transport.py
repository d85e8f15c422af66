"""What the Circular 10 uplink needs of a province's file server, whatever carries the files.

Provinces run plain FTP (most; often upload-only accounts from a whitelisted IP), SFTP (some)
and FTPS (rare). The uplink's policy (which file, into which dated folder, rename or direct
STOR, pacing, back-off) must not depend on which; so each transport is a small class with the
five operations below, and the uplink only ever talks to :class:`RemoteFiles`.

Errors are sorted by what retrying can achieve, because that decides what the uplink does:

* :class:`LinkDown`: the network or the server is away (refused connection, timeout, reset,
  a 4xx reply). Transient: back off and try again; nothing is lost, files wait in the spool.
* :class:`PermanentRefusal`: the server answered and said no in a way that will not change by
  itself (530 login refused, 550 on a folder, an unknown or changed SSH host key, permission
  denied). Loud in ``quantrac status`` with :attr:`PermanentRefusal.fix`, logged once, retried
  slowly; never in a tight loop.
* :class:`RenameRefused`: the account may store but not rename (upload-only accounts are
  common). Not a failure of the file: the uplink falls back to a direct STOR and remembers.

Paths are POSIX, relative to the login folder unless they start with ``/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class TransferError(Exception):
    """Base of everything a transport raises on purpose."""


class LinkDown(TransferError):
    """Transient: the link or the server is away; try again after a back-off."""


class PermanentRefusal(TransferError):
    """The server refused in a way retrying will not fix; ``fix`` says what a person must do."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


class RenameRefused(TransferError):
    """The server refused RNFR/RNTO (or SFTP rename) but stores files: use direct uploads."""


class RemoteFiles(Protocol):
    """One open session on the province's server."""

    def make_dirs(self, path: str) -> None:
        """``path`` and its parents exist afterwards (a folder already there is fine)."""

    def size(self, path: str) -> int | None:
        """The file's size in bytes, or None when there is no such file."""

    def store(self, path: str, data: bytes) -> None:
        """Write ``data`` as ``path`` (replacing a file of that name)."""

    def rename(self, src: str, dst: str) -> None:
        """Rename within the server; :class:`RenameRefused` when the account may not."""

    def list_names(self, path: str) -> list[str]:
        """The names (not paths) of the entries in folder ``path``."""

    def close(self) -> None:
        """End the session; never raises."""


Connect = Callable[[], RemoteFiles]
"""Opens a session: raises :class:`LinkDown` or :class:`PermanentRefusal`."""
