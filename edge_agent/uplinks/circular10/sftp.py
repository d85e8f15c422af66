"""SFTP to the province's server: :class:`SftpFiles`, one :class:`RemoteFiles` session.

Some provinces take the Circular 10 files over SFTP instead of FTP. The uplink's policy (which
file, which dated folder, rename or direct upload) is the same whatever the transport, so this
module only opens a session and maps what the server says onto the three errors of
:mod:`~edge_agent.uplinks.circular10.transport`.

**Library: paramiko.** Its API is blocking, like ftplib's, so it runs as it is on the uplink's
own thread; asyncssh would need an event loop on that thread for five calls per file. It is
maintained, speaks what current OpenSSH servers require (curve25519, ed25519, rsa-sha2
signatures), and its native parts (cryptography, bcrypt, PyNaCl) ship wheels for the armv7 and
aarch64 boards the gateway runs on, so nothing is compiled on a Raspberry Pi.

**The host key is pinned, never learnt.** SSH's usual trust on first use would accept whoever
answers the first time (a wrong DNS entry, a hotel Wi-Fi, a man in the middle) and then send
that party the station's password and the legal record. So the key must be given beforehand:
``host_key``, the OpenSSH public-key line on the province's sheet (``ssh-ed25519 AAAA...``),
and/or ``known_hosts``, an OpenSSH known_hosts file with an entry for ``host`` (or
``[host]:port`` off port 22; hashed entries too). Neither given, or a key the server offers
that matches neither, is a :class:`PermanentRefusal` whose fix shows the offered key's
``SHA256:`` fingerprint (public, the form ``ssh-keygen -lf`` prints and sheets carry) so a
person can compare it with the sheet before trusting anything. The key types we hold a pin for
are asked for first, so a server with several host keys offers the one we can check.

**Errors.** A refused login, a folder or file the account may not write, an encrypted or
unreadable key file: :class:`PermanentRefusal` with what to fix. A refused rename (upload-only
accounts; OpenSSH's ``internal-sftp -P rename,posix-rename``): :class:`RenameRefused`, so the
uplink stores directly from then on. A refused connection, a timeout, a reset, an EOF or a
transport that died: :class:`LinkDown`. SFTP reports a refusal and a broken session alike as
an ``OSError``; which one it was is told by whether the session is still up afterwards.

Renames use OpenSSH's ``posix-rename@openssh.com`` (replaces the target, as FTP's RNTO does on
most servers): plain SFTP rename fails when the target exists, which would look like a refusal
after a ``.part`` left by a cut link. Servers without the extension get the plain rename.

Secrets (the password, the private key) are never put in a message. Text the server sends (its
error strings) is escaped before it goes into one, as is the user name from the config.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import socket
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NoReturn

import paramiko

from edge_agent.uplinks.circular10.transport import LinkDown, PermanentRefusal, RenameRefused
from protocol.safe_text import escape_controls

# paramiko logs every connection and login at INFO ("Connected (version 2.0 ...)",
# "Authentication (publickey) successful!"): two lines per 5-minute cycle, nothing the uplink's
# own events do not say better. Its warnings and errors still come through.
logging.getLogger("paramiko").setLevel(logging.WARNING)

#: host-key types we can pin -> the algorithm names that carry them in the key exchange (an RSA
#: key is offered as rsa-sha2-512/256; plain ssh-rsa signatures are SHA-1, refused since 8.8)
_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}

_PIN_FIX = ("set host_key to the server's public key line from the province's sheet "
            "(\"ssh-ed25519 AAAA...\") or known_hosts to an OpenSSH known_hosts file that "
            "holds it; the station never trusts a key on first use")


@dataclass(frozen=True)
class HostKey:
    """A pinned server key: its type and its public blob (the base64 part, decoded)."""

    type: str
    blob: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)


def fingerprint(blob: bytes) -> str:
    """OpenSSH's ``SHA256:`` fingerprint of a public key blob (as ``ssh-keygen -lf`` shows)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_host_key(line: str) -> HostKey:
    """The key of an OpenSSH public-key line (``TYPE BASE64 [comment]``; a known_hosts line's
    leading host field is skipped). ValueError, naming what is wrong, otherwise; pure, so a
    config check can call it."""
    words = line.split()
    if len(words) >= 3 and words[0] not in _ALGORITHMS and words[1] in _ALGORITHMS:
        words = words[1:]  # "host ssh-ed25519 AAAA...": a line copied from known_hosts
    if len(words) < 2:
        raise ValueError(f"{escape_controls(line)!r} is not an OpenSSH public key line "
                         "(TYPE BASE64, e.g. \"ssh-ed25519 AAAAC3Nza...\")")
    kind, text = words[0], words[1]
    if kind not in _ALGORITHMS:
        raise ValueError(f"key type {escape_controls(kind)!r} is not one of "
                         f"{', '.join(_ALGORITHMS)}")
    try:
        blob = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the key's base64 part does not decode ({exc})") from None
    # the blob starts with its own type name (uint32 length, name): a truncated or mixed-up
    # copy from a sheet is caught here, not as a "changed key" at the first connection
    n = int.from_bytes(blob[:4], "big")
    if len(blob) < 4 + n + 4 or blob[4:4 + n] != kind.encode():
        raise ValueError(f"the key's base64 part is not a {kind} key (truncated or mistyped?)")
    return HostKey(kind, blob)


def pinned_keys(host: str, port: int, host_key: str | None,
                known_hosts: Path | None) -> list[HostKey]:
    """The keys the server at ``host:port`` may present; PermanentRefusal when none is given
    or the given ones cannot be read."""
    server = f"{host}:{port}"
    pins: list[HostKey] = []
    if host_key is not None:
        try:
            pins.append(parse_host_key(host_key))
        except ValueError as exc:
            raise PermanentRefusal(f"{server}: host_key: {exc}", _PIN_FIX) from None
    if known_hosts is not None:
        known = paramiko.HostKeys()
        try:
            known.load(str(known_hosts))
        except (OSError, UnicodeDecodeError) as exc:
            raise PermanentRefusal(
                f"{server}: known_hosts {known_hosts}: cannot be read ({exc})", _PIN_FIX) from None
        # OpenSSH's own naming: the bare host on port 22, "[host]:port" elsewhere
        entry = known.lookup(host if port == 22 else f"[{host}]:{port}")
        if entry is not None:
            pins.extend(HostKey(k.get_name(), k.asbytes()) for k in entry.values()
                        if k.get_name() in _ALGORITHMS)
        if not pins:
            name = host if port == 22 else f"[{host}]:{port}"
            raise PermanentRefusal(
                f"{server}: known_hosts {known_hosts} has no key for {escape_controls(name)}",
                _PIN_FIX)
    if not pins:
        raise PermanentRefusal(f"{server}: no host key pinned (host_key or known_hosts)",
                               _PIN_FIX)
    return pins


def _load_key(key_file: Path) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(key_file)
    except FileNotFoundError:
        raise PermanentRefusal(f"key_file {key_file}: no such file",
                               "set key_file to the station's private key file") from None
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        raise PermanentRefusal(
            f"key_file {key_file}: the key is encrypted with a passphrase",
            "give the station a key without a passphrase (the gateway starts unattended): "
            "ssh-keygen -p -N '' -f KEYFILE, or a new one with ssh-keygen -t ed25519 -N ''"
        ) from None
    except (OSError, ValueError, paramiko.SSHException) as exc:
        raise PermanentRefusal(
            f"key_file {key_file}: not a private key paramiko can read "
            f"({type(exc).__name__})",
            "use an OpenSSH ed25519, ECDSA or RSA private key (ssh-keygen -t ed25519)") from None


class SftpFiles:
    """One SFTP session; open it with :meth:`connect`."""

    def __init__(self, transport: paramiko.Transport, sftp: paramiko.SFTPClient,
                 server: str) -> None:
        self._transport = transport
        self._sftp = sftp
        self.server = server

    @classmethod
    def connect(cls, *, host: str, port: int = 22, user: str, password: str | None = None,
                key_file: Path | None = None, host_key: str | None = None,
                known_hosts: Path | None = None, timeout_s: float = 30.0) -> SftpFiles:
        """Connect, check the host key against the pins, log in (key first, then password),
        open SFTP. :class:`LinkDown` or :class:`PermanentRefusal` (see the module)."""
        server = f"{host}:{port}"
        pins = pinned_keys(host, port, host_key, known_hosts)
        pkey = _load_key(key_file) if key_file is not None else None
        if pkey is None and password is None:
            raise PermanentRefusal(f"{server}: no password and no key_file for SFTP",
                                   "set password or key_file as the province's sheet says")
        try:
            sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            raise LinkDown(f"{server}: cannot connect: {exc}") from exc
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = timeout_s
            transport.handshake_timeout = timeout_s
            transport.auth_timeout = timeout_s
            transport.channel_timeout = timeout_s
            options = transport.get_security_options()
            ours = [a for pin in pins for a in _ALGORITHMS[pin.type] if a in options.key_types]
            options.key_types = list(dict.fromkeys(ours)) + [
                a for a in options.key_types if a not in ours]
            transport.start_client(timeout=timeout_s)
            _check_host_key(transport.get_remote_server_key(), pins, server)
            _authenticate(transport, server, user, password, pkey)
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:  # the server refused the sftp subsystem
                raise PermanentRefusal(f"{server}: the server offers no SFTP subsystem",
                                       "ask the province whether this account has SFTP")
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(timeout_s)
        except (PermanentRefusal, LinkDown):
            transport.close()
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            transport.close()
            raise LinkDown(f"{server}: SSH session failed: {_text(exc)}") from exc
        except BaseException:
            transport.close()
            raise
        return cls(transport, sftp, server)

    # --- RemoteFiles -------------------------------------------------------------------------
    def make_dirs(self, path: str) -> None:
        """Each missing level of ``path`` is made in turn (SFTP's mkdir makes one)."""
        if self._kind(path) == "dir":
            return
        p = PurePosixPath(path)
        for level in [*reversed(p.parents), p]:
            name = str(level)
            if name in (".", "/"):
                continue
            kind = self._kind(name)
            if kind == "dir":
                continue
            if kind == "file":
                raise PermanentRefusal(f"{self.server}: {_q(name)} is a file, not a folder",
                                       "ask the province to remove it, or change remote_dir")
            try:
                self._sftp.mkdir(name)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                self._raise_if_link_down(exc, f"mkdir {name}")
                if self._kind(name) == "dir":  # made meanwhile (a second uplink, a person)
                    continue
                raise PermanentRefusal(
                    f"{self.server}: may not create folder {_q(name)}: {_text(exc)}",
                    "ask the province to allow this account to create its dated folders, or "
                    "to create them; check directory and remote_dir") from None

    def size(self, path: str) -> int | None:
        try:
            attrs = self._sftp.stat(path)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._raise_if_link_down(exc, f"stat {path}")
            return None  # no such file, or the account may not look: upload it (as FTP's 550)
        return attrs.st_size

    def store(self, path: str, data: bytes) -> None:
        try:
            with self._sftp.open(path, "wb") as f:
                f.write(data)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._raise_if_link_down(exc, f"store {path}")
            if isinstance(exc, FileNotFoundError):
                raise PermanentRefusal(
                    f"{self.server}: cannot store {_q(path)}: its folder does not exist",
                    "check directory and remote_dir against the province's sheet") from None
            raise PermanentRefusal(
                f"{self.server}: may not store {_q(path)}: {_text(exc)}",
                "ask the province whether this account may write there (and whether the "
                "server's disk or quota is full); check directory and remote_dir") from None

    def rename(self, src: str, dst: str) -> None:
        """posix-rename, else (a server without the extension, or one that refuses only it)
        the plain rename; :class:`RenameRefused` when both are refused."""
        try:
            self._sftp.posix_rename(src, dst)
            return
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._raise_if_link_down(exc, f"rename {src}")
            self._raise_if_vanished(exc, src)
        try:
            self._sftp.rename(src, dst)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._raise_if_link_down(exc, f"rename {src}")
            self._raise_if_vanished(exc, src)
            raise RenameRefused(f"{self.server}: rename {_q(src)} -> {_q(dst)} refused: "
                                f"{_text(exc)}") from None

    def _raise_if_vanished(self, exc: BaseException, src: str) -> None:
        """No such file: the upload went missing between store and rename (a person or a
        clean-up job on the server). Not a refusal, or the uplink would stop renaming for
        good: LinkDown, so it backs off and uploads the file again."""
        if isinstance(exc, FileNotFoundError):
            raise LinkDown(f"{self.server}: {_q(src)} vanished before its rename; "
                           "it will be uploaded again") from None

    def list_names(self, path: str) -> list[str]:
        try:
            return self._sftp.listdir(path or ".")
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._raise_if_link_down(exc, f"list {path}")
            raise PermanentRefusal(f"{self.server}: may not list {_q(path)}: {_text(exc)}",
                                   "check directory and remote_dir against the province's "
                                   "sheet") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._sftp.close()
        with contextlib.suppress(Exception):
            self._transport.close()

    # --- helpers -----------------------------------------------------------------------------
    def _kind(self, path: str) -> str | None:
        """"dir", "file", or None (not there, or not ours to see); LinkDown on a dead link."""
        try:
            mode = self._sftp.stat(path).st_mode
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._raise_if_link_down(exc, f"stat {path}")
            return None
        return "dir" if mode is not None and stat.S_ISDIR(mode) else "file"

    def _raise_if_link_down(self, exc: BaseException, doing: str) -> None:
        """LinkDown unless ``exc`` is the server's answer on a session that is still up.

        paramiko raises the server's status (no such file, permission denied, failure) as an
        OSError, and a closed channel or socket as one too; a timeout is an OSError
        (TimeoutError) as well. What tells them apart: the session after it."""
        channel = self._sftp.get_channel()
        dead = (not self._transport.is_active() or channel is None or channel.closed
                or isinstance(exc, TimeoutError | ConnectionError | EOFError
                              | paramiko.SSHException))
        if dead:
            raise LinkDown(f"{self.server}: link lost during {_q(doing)}: "
                           f"{type(exc).__name__}: {_text(exc)}") from exc


def _check_host_key(offered: paramiko.PKey, pins: list[HostKey], server: str) -> None:
    blob = offered.asbytes()
    if any(pin.blob == blob for pin in pins):
        return
    pinned = ", ".join(f"{p.type} {p.fingerprint}" for p in pins)
    raise PermanentRefusal(
        f"{server}: the server's host key {offered.get_name()} {fingerprint(blob)} is not the "
        f"pinned one ({pinned})",
        f"compare {fingerprint(blob)} with the host key fingerprint on the province's sheet: "
        "if they differ, do not connect (someone else may be answering) and call the "
        "province; if they match (the province changed its key), put the new key line in "
        "host_key or known_hosts")


def _authenticate(transport: paramiko.Transport, server: str, user: str,
                  password: str | None, pkey: paramiko.PKey | None) -> None:
    """Key first when there is one, then the password (also when the server asks for both)."""
    who = _q(user)
    tried: list[str] = []
    try:
        remaining: list[str] = []
        if pkey is not None:
            tried.append(f"key {pkey.get_name()} {pkey.fingerprint}")
            try:
                remaining = transport.auth_publickey(user, pkey)
            except paramiko.AuthenticationException:
                if password is None or not transport.is_active():
                    raise
                remaining = ["password"]
        if not transport.is_authenticated() and password is not None and (
                pkey is None or "password" in remaining):
            tried.append("password")
            transport.auth_password(user, password)
    except paramiko.BadAuthenticationType as exc:
        _login_failed(transport, exc, server, f"login refused for user {who}: the server "
                      f"does not accept {' or '.join(tried)} (it accepts "
                      f"{', '.join(exc.allowed_types) or 'nothing'})")
    except paramiko.AuthenticationException as exc:
        _login_failed(transport, exc, server, f"login refused for user {who} "
                      f"({', '.join(tried)})")
    if not transport.is_authenticated():
        raise PermanentRefusal(f"{server}: login incomplete for user {who}: the server also "
                               "wants another method", _LOGIN_FIX)


_LOGIN_FIX = ("check user, password and key_file against the province's sheet (and that the "
              "province has this station's public key, for key login)")


def _login_failed(transport: paramiko.Transport, exc: Exception, server: str,
                  message: str) -> NoReturn:
    """A dead transport or paramiko's "Authentication timeout." is the link, not a refusal."""
    if not transport.is_active() or "timeout" in str(exc).lower():
        raise LinkDown(f"{server}: link lost during login: {_text(exc)}") from exc
    raise PermanentRefusal(f"{server}: {message}", _LOGIN_FIX) from None


def _q(text: str) -> str:
    return repr(escape_controls(text))


def _text(exc: BaseException) -> str:
    """The server's words (an SFTP status text, an SSH disconnect reason), escaped."""
    if isinstance(exc, OSError) and exc.strerror:
        return escape_controls(exc.strerror)
    return escape_controls(str(exc)) or type(exc).__name__
