"""A real SFTP server for tests: Debian's OpenSSH ``sshd`` on a loopback port.

Why the real one: what a province runs for SFTP is OpenSSH (or something that imitates it), and
what matters here is exactly its behaviour: the host key it offers, how it refuses a password,
what ``internal-sftp`` answers to a refused rename, what a dead session looks like.

Each server lives in its own folder (made by :func:`server_dir`, world-traversable because the
account that logs in is not the one running the tests): its config, a fresh ed25519 host key,
the client's ed25519 and RSA keys, their ``authorized_keys``, and ``home/``, the folder the
account starts in (``sftp-server -d``), where uploads land. ``ForceCommand`` runs OpenSSH's
``sftp-server`` whatever the client asks for: SFTP only, no shell. It is the separate program,
not ``internal-sftp``, so that its log (``-e -l INFO``: every mkdir, open, close with the bytes
written, rename) goes to a file, :meth:`SshdServer.journal`, which tells "stored as a temp name,
then renamed" from "stored in place" and counts deliveries (``internal-sftp`` logs through
sshd's privilege-separated child, whose log does not reach ``sshd -e``'s output). With
``refuse_rename`` the account is upload-only, as many provincial ones are: ``sftp-server -P
rename,posix-rename`` answers both rename requests "permission denied".

The account: run as root (as CI is), ``sshd`` logs in a throw-away system account
(:data:`USER`, made by :func:`ensure_account` with ``useradd`` and a known password, removed by
:func:`remove_account`; its shell is ``/bin/sh`` because sshd runs a ForceCommand through the
account's shell), so password login is real (sshd checks it against ``/etc/shadow``, as
on the province's server). Not root, sshd can only log in the user running it, by key, and has
no password to check (:attr:`SshdServer.password` is None). ``/run/sshd`` (the privilege
separation folder sshd insists on when root) is made if missing.

``start`` waits, with a deadline, for sshd's own "Server listening" line; ``stop`` ends the
listener and every session process it forked (sshd's per-connection children outlive the
listener otherwise, and a test of a dead link needs the sessions gone too). A restart reuses the
port, the keys and the folder.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

SSHD = "/usr/sbin/sshd"  # an absolute path: sshd re-executes itself for each connection
SSH_KEYGEN = "ssh-keygen"
USERADD = "useradd"
USERDEL = "userdel"
CHPASSWD = "chpasswd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"  # started by sshd (ForceCommand), not by a test
USER = "qtrac-sftp-test"  # the throw-away account (only made when the tests run as root)
PASSWORD = "s3cret-sftp-pass"
START_DEADLINE_S = 20.0


def is_root() -> bool:
    return os.geteuid() == 0


def server_dir() -> Path:
    """A fresh folder for one server, traversable by the throw-away account (a pytest tmp_path
    sits under a 0700 folder of root's, which that account cannot enter)."""
    d = Path(tempfile.mkdtemp(prefix="quantrac-sshd-"))
    d.chmod(0o755)
    return d


def ensure_account() -> None:
    """The throw-away account with :data:`PASSWORD` (kept if a killed run left it)."""
    try:
        if pwd.getpwnam(USER).pw_shell != "/bin/sh":  # left by an older version of this file
            remove_account()
    except KeyError:
        pass
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run([USERADD, "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/bin/sh", "--user-group", USER],
                       check=True, capture_output=True, timeout=30)
    subprocess.run([CHPASSWD], input=f"{USER}:{PASSWORD}\n", text=True, check=True,
                   capture_output=True, timeout=30)


def remove_account() -> None:
    with contextlib.suppress(KeyError):
        pwd.getpwnam(USER)
        subprocess.run([USERDEL, USER], check=False, capture_output=True, timeout=30)


def keygen(path: Path, kind: str = "ed25519") -> str:
    """A new key pair without passphrase at ``path`` (and ``path.pub``); the public line."""
    extra = ["-b", "2048"] if kind == "rsa" else []
    subprocess.run([SSH_KEYGEN, "-q", "-t", kind, *extra, "-N", "", "-C", f"test-{kind}",
                    "-f", str(path)], check=True, capture_output=True, timeout=60)
    return path.with_name(path.name + ".pub").read_text().strip()


def openssh_fingerprint(pub: Path) -> str:
    """``SHA256:...`` of a public key file, as OpenSSH itself computes it (``ssh-keygen -lf``)."""
    out = subprocess.run([SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(pub)], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return out.split()[1]


def _descendants(pid: int) -> list[int]:
    """Processes whose parent chain leads to ``pid`` (read from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class SshdServer:
    """``start()`` / ``stop()`` an OpenSSH sshd for one account on 127.0.0.1:``port``."""

    def __init__(self, root: Path, *, refuse_rename: bool = False, port: int = 0,
                 extra_host_keys: tuple[str, ...] = ()) -> None:
        self.root = root
        self.refuse_rename = refuse_rename
        self.port = port or _free_port()
        self.home = root / "home"
        self.home.mkdir(exist_ok=True)
        if is_root():
            ensure_account()
            self.user: str = USER
            self.password: str | None = PASSWORD
            account = pwd.getpwnam(USER)
            os.chown(self.home, account.pw_uid, account.pw_gid)
        else:
            self.user = pwd.getpwuid(os.getuid()).pw_name
            self.password = None
        self.host_key_file = root / "ssh_host_ed25519_key"
        self.host_key_line = " ".join(keygen(self.host_key_file).split()[:2])
        self.host_fingerprint = openssh_fingerprint(root / "ssh_host_ed25519_key.pub")
        # more host keys (e.g. "rsa", "ecdsa"), offered after the ed25519 one: type -> line
        self.extra_host_keys = {kind: " ".join(keygen(root / f"ssh_host_{kind}_key", kind)
                                                .split()[:2]) for kind in extra_host_keys}
        self.user_key = root / "id_ed25519"
        self.user_rsa_key = root / "id_rsa"
        authorized = [keygen(self.user_key), keygen(self.user_rsa_key, "rsa")]
        self.authorized_keys = root / "authorized_keys"
        self.authorized_keys.write_text("\n".join(authorized) + "\n")
        self.authorized_keys.chmod(0o644)
        self.log_file = root / "sshd.log"
        self.journal_file = root / "sftp.log"  # what sftp-server did, written as the account
        self.journal_file.touch()
        self.journal_file.chmod(0o666)
        self._proc: subprocess.Popen[bytes] | None = None

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key_line}"

    def _config(self) -> Path:
        sftp = f"exec {SFTP_SERVER} -e -l INFO -d {self.home}"
        if self.refuse_rename:
            sftp += " -P rename,posix-rename"
        sftp += f" 2>>{self.journal_file}"
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key_file}",
            *(f"HostKey {self.root}/ssh_host_{kind}_key" for kind in self.extra_host_keys),
            "PidFile none",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "StrictModes no",  # the test folders are not the account's own ~/.ssh
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PermitEmptyPasswords no",
            f"AllowUsers {self.user}",
            "MaxAuthTries 6",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
            f"ForceCommand {sftp}",
            "",
        ]))
        return config

    def start(self) -> None:
        if is_root():
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        config = self._config()
        check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 0, f"sshd -t: {check.stderr}"
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config),
                                           "-p", str(self.port)],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_DEADLINE_S
        ready = f"Server listening on 127.0.0.1 port {self.port}".encode()
        while ready not in self.log_file.read_bytes()[offset:]:
            if self._proc.poll() is not None:
                raise AssertionError(f"sshd exited ({self._proc.returncode}): {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"sshd not listening after {START_DEADLINE_S} s: "
                                     f"{self.log()}")
            time.sleep(0.02)

    def journal(self) -> list[tuple[str, str]]:
        """What sftp-server did, in order: ("stored", path) for each file written and closed,
        ("renamed", "old -> new"), ("refused", status text) for a refusal, ("mkdir", path)."""
        out: list[tuple[str, str]] = []
        for line in self.journal_file.read_text(errors="replace").splitlines():
            if m := re.fullmatch(r'close "(.*)" bytes read \d+ written \d+', line):
                out.append(("stored", m[1]))
            elif m := re.fullmatch(r'(?:posix-)?rename old "(.*)" new "(.*)"', line):
                out.append(("renamed", f"{m[1]} -> {m[2]}"))
            elif m := re.fullmatch(r'mkdir name "(.*)" mode \d+', line):
                out.append(("mkdir", m[1]))
            elif line == "sent status Permission denied":
                out.append(("refused", "Permission denied"))
        return out

    def log(self) -> str:
        """What sshd said so far (``-e``: its log lines end in CRLF)."""
        if not self.log_file.exists():
            return ""
        return self.log_file.read_bytes().decode(errors="replace")

    def stop(self) -> None:
        """The listener and every session it forked (deepest first), by their own pids."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pid in reversed(_descendants(proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def serving(*, refuse_rename: bool = False, extra_host_keys: tuple[str, ...] = ()
            ) -> Iterator[SshdServer]:
    """A started server in a fresh :func:`server_dir`; stopped and its folder removed after."""
    root = server_dir()
    server = SshdServer(root, refuse_rename=refuse_rename, extra_host_keys=extra_host_keys)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
