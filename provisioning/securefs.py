"""Files that hold private keys: a 0700 directory, 0600 files, never overwritten.

The checks refuse rather than repair: a key that has been readable by others may already have
been copied, so the installer must see it and decide (chmod, or a fresh identity).

A dir owned by another user is refused too, root included, with the command to run instead
(``sudo -u quantrac quantrac provision ...``). Letting root write there and chown the files to
the dir's owner was the other choice, and the worse one: the owner can swap names in its own
dir between root's check and root's write (a symlink to /etc/shadow, say), so root would write
or chown where the service user chose; and a file root forgot to chown locks the service out.
Run as the owner, every file is born with the right owner and the kernel checks each step.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from pathlib import Path

from provisioning.errors import ProvisioningError


def ensure_private_dir(path: Path, what: str = "state dir") -> None:
    """Create ``path`` as 0700 if missing; refuse if it exists and others can read it."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        return
    check_private_dir(path, what)


def check_private_dir(
    path: Path, what: str = "state dir", create_with: str = "quantrac provision init"
) -> None:
    """Refuse a key dir that is not a directory, not ours, or group/other accessible."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ProvisioningError(
            f"{path}: {what} does not exist; run `{create_with}` first"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ProvisioningError(f"{path}: {what} is not a directory")
    _check_mode(path, st, what, "700")


def check_private_file(path: Path) -> None:
    """Refuse a key file that is group/other accessible or not owned by us."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise ProvisioningError(f"{path}: key file missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise ProvisioningError(f"{path}: key file is not a regular file")
    _check_mode(path, st, "key file", "600")


def _check_mode(path: Path, st: os.stat_result, what: str, wanted: str) -> None:
    # The owner first: for another user's file "chmod" is the wrong advice.
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise ProvisioningError(
            f"{path}: {what} belongs to {_user(st.st_uid)}, not to this user "
            f"({_user(os.getuid())}); run quantrac as its owner, the user the service runs as: "
            f"`sudo -u {_name(st.st_uid)} quantrac ...`"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ProvisioningError(
            f"{path}: {what} has mode {mode:04o}, readable or writable by other users; "
            f"refusing to use it (if no one else could have copied it: chmod {wanted} {path})"
        )


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"  # sudo's way to name a uid with no account


def _user(uid: int) -> str:
    return f"user {_name(uid)} (uid {uid})"


def write_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a file that must not exist yet (a key is never overwritten), durably.

    The content goes to a temporary file first and is linked into place, so a crash leaves
    either no file or the whole file, and an existing file makes this fail instead of losing it.
    """
    tmp = _write_temp(path, data, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise ProvisioningError(f"{path}: already exists; refusing to overwrite it") from None
    finally:
        tmp.unlink()
    sync_dir(path.parent)


def write_replace(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically replace a non-secret file (metadata, certificates, the bundle)."""
    tmp = _write_temp(path, data, mode)
    os.replace(tmp, path)
    sync_dir(path.parent)


def write_public(path: Path, data: bytes, again: str) -> None:
    """A request or bundle for the USB stick: public content, written whole or not at all.

    A stick that is not mounted, full or read-only is the installer's to fix; the message
    names the file and says what running the command again will do (``again``): by then the
    keys or the registry entry exist, and each command writes the same file again.
    """
    try:
        write_replace(path, data, mode=0o644)
    except OSError as exc:
        raise ProvisioningError(
            f"{path}: cannot write it ({exc.strerror or exc}); is the USB stick mounted and "
            f"writable? {again}") from None


def check_out_folder(path: Path) -> None:
    """Refuse before anything is made when the file's folder is not there (a stick that is
    not mounted): ``/media/usb/req.json`` must not leave keys behind and a temp-file error."""
    if not path.parent.is_dir():
        raise ProvisioningError(
            f"{path}: folder {path.parent} does not exist (is the USB stick mounted?); "
            "nothing was made")


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits; set exactly
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def sync_dir(path: Path) -> None:
    """fsync a directory, so a rename or a new link in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
