"""SftpFiles against a real OpenSSH sshd (tests/sshd_server.py): the five operations, host-key
pinning, password and key login, and each server answer sorted into the error the uplink
acts on (LinkDown, PermanentRefusal with its fix, RenameRefused)."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from buffer import Store
from edge_agent.config.model import StationConfig
from edge_agent.config.reader import load_config
from edge_agent.uplinks.circular10.sftp import SftpFiles, fingerprint, parse_host_key
from edge_agent.uplinks.circular10.transport import LinkDown, PermanentRefusal, RenameRefused
from edge_agent.uplinks.circular10.uplink import part_name
from tests.mqtt_world import wait_for
from tests.receiver_emulation import Receiver
from tests.sshd_server import (
    SSH_KEYGEN,
    SshdServer,
    keygen,
    remove_account,
    serving,
)
from tests.test_circular10 import STATION
from tests.test_uplink_ftp import (
    PREFIX,
    Clock,
    W,
    closed_starts,
    path_of,
    rendered,
    runner,
    window,
)


@pytest.fixture(scope="module", autouse=True)
def _account() -> Iterator[None]:
    yield
    remove_account()  # every server of the module is stopped by now


def _server(refuse_rename: bool = False) -> Iterator[SshdServer]:
    with serving(refuse_rename=refuse_rename) as server:
        yield server


@pytest.fixture
def sshd() -> Iterator[SshdServer]:
    yield from _server()


@pytest.fixture
def upload_only() -> Iterator[SshdServer]:
    yield from _server(refuse_rename=True)


def _password(server: SshdServer) -> str:
    if server.password is None:  # no skip: CI runs as root, and so must whoever runs this
        pytest.fail("password login needs the throw-away account: run the tests as root")
    return server.password


def connect_key(server: SshdServer, **kw: object) -> SftpFiles:
    args: dict[str, object] = {"host": "127.0.0.1", "port": server.port, "user": server.user,
                               "key_file": server.user_key, "host_key": server.host_key_line,
                               "timeout_s": 10.0}
    args.update(kw)
    return SftpFiles.connect(**args)  # type: ignore[arg-type]


def test_store_size_rename_list_and_dated_folders_with_a_password(sshd: SshdServer) -> None:
    files = SftpFiles.connect(host="127.0.0.1", port=sshd.port, user=sshd.user,
                              password=_password(sshd), host_key=sshd.host_key_line)
    try:
        files.make_dirs("2025/07/14")  # three missing levels
        files.make_dirs("2025/07/14")  # all there: fine
        files.make_dirs("2025/07/15")  # one missing
        data = b"TSS\t12.5\tmg/L\t20250714100500\t00\r\n"
        files.store("2025/07/14/HN_X_20250714100500.txt.part", data)
        assert files.size("2025/07/14/HN_X_20250714100500.txt.part") == len(data)
        assert files.size("2025/07/14/HN_X_20250714100500.txt") is None
        name = "2025/07/14/HN_X_20250714100500.txt"
        files.rename(f"{name}.part", name)
        assert files.list_names("2025/07/14") == ["HN_X_20250714100500.txt"]
        assert sorted(files.list_names("2025/07")) == ["14", "15"]
        assert files.list_names("") == ["2025"]
    finally:
        files.close()
    on_disk = sshd.home / "2025" / "07" / "14" / "HN_X_20250714100500.txt"
    assert on_disk.read_bytes() == data
    files.close()  # twice: never raises


def test_store_replaces_and_rename_overwrites_a_target_left_by_a_cut_link(
        sshd: SshdServer) -> None:
    files = connect_key(sshd)
    try:
        files.store("f.txt", b"half")  # what a cut link may have left under the final name
        files.store("f.txt.part", b"first, longer")
        files.store("f.txt.part", b"whole file")  # replaced, not appended
        assert files.size("f.txt.part") == len(b"whole file")
        files.rename("f.txt.part", "f.txt")  # plain SFTP rename would fail: the target exists
        assert sorted(files.list_names(".")) == ["f.txt"]
    finally:
        files.close()
    assert (sshd.home / "f.txt").read_bytes() == b"whole file"


def test_absolute_paths_and_a_file_in_the_way(sshd: SshdServer) -> None:
    files = connect_key(sshd)
    try:
        files.make_dirs(f"{sshd.home}/a/b")
        assert (sshd.home / "a" / "b").is_dir()
        files.store("a/b/c", b"x")
        with pytest.raises(PermanentRefusal, match="is a file, not a folder"):
            files.make_dirs("a/b/c/d")
    finally:
        files.close()


def test_refused_folder_and_store_are_permanent(sshd: SshdServer) -> None:
    locked = sshd.home / "locked"
    locked.mkdir()
    locked.chmod(0o555)  # as root: owned by root, not the account's; either way not writable
    files = connect_key(sshd)
    try:
        with pytest.raises(PermanentRefusal, match="may not create folder 'locked/2025'") as e1:
            files.make_dirs("locked/2025/07")
        assert "dated folders" in e1.value.fix
        with pytest.raises(PermanentRefusal, match=r"may not store 'locked/f\.txt'") as e2:
            files.store("locked/f.txt", b"x")
        assert "may write there" in e2.value.fix
        with pytest.raises(PermanentRefusal, match="its folder does not exist"):
            files.store("nowhere/f.txt", b"x")
        assert files.size("locked/f.txt") is None
        files.store("ok.txt", b"the session is still usable after refusals")
        assert files.size("ok.txt") == 42
    finally:
        files.close()


def test_key_login_ed25519_and_rsa_with_known_hosts_plain_and_hashed(sshd: SshdServer) -> None:
    known = sshd.root / "known_hosts"
    known.write_text(f"other.example ssh-ed25519 {sshd.host_key_line.split()[1][:-4]}AAAA\n"
                     f"{sshd.known_hosts_line()}\n")
    for key in (sshd.user_key, sshd.user_rsa_key):
        files = connect_key(sshd, key_file=key, host_key=None, known_hosts=known)
        files.store(f"{key.name}.txt", b"k")
        files.close()
    assert "Accepted publickey" in sshd.log() and " RSA SHA256:" in sshd.log()
    subprocess.run([SSH_KEYGEN, "-H", "-f", str(known)], check=True, capture_output=True,
                   timeout=30)
    assert str(sshd.port) not in known.read_text()  # hashed: the host name is gone
    files = connect_key(sshd, host_key=None, known_hosts=known)
    assert sorted(files.list_names("")) == ["id_ed25519.txt", "id_rsa.txt"]
    files.close()


def test_our_fingerprint_is_openssh_s(sshd: SshdServer) -> None:
    pin = parse_host_key(sshd.host_key_line + " comment words")
    assert pin.type == "ssh-ed25519"
    assert fingerprint(pin.blob) == sshd.host_fingerprint  # as ssh-keygen -lf prints it
    assert parse_host_key(sshd.known_hosts_line()) == pin  # a known_hosts line, host and all


def test_a_wrong_pinned_key_is_refused_before_login_showing_the_offered_fingerprint(
        sshd: SshdServer) -> None:
    other = keygen(sshd.root / "other_host_key")
    with pytest.raises(PermanentRefusal) as err:
        SftpFiles.connect(host="127.0.0.1", port=sshd.port, user=sshd.user,
                          password="never-sent", host_key=other)
    assert sshd.host_fingerprint in str(err.value)  # what the server offered
    assert sshd.host_fingerprint in err.value.fix  # ... to compare with the province's sheet
    assert fingerprint(parse_host_key(other).blob) in str(err.value)  # what we pinned
    log = sshd.log()
    assert "Connection from 127.0.0.1" in log  # it did reach the server ...
    assert "password" not in log and "Accepted" not in log  # ... and offered no credential


def test_a_server_with_several_host_keys_is_asked_for_the_pinned_kind() -> None:
    """paramiko would take the ed25519 key first; pinned to the RSA one, it must ask for that."""
    with serving(extra_host_keys=("rsa", "ecdsa")) as server:
        for kind in ("rsa", "ecdsa"):
            connect_key(server, host_key=server.extra_host_keys[kind]).close()
        connect_key(server).close()  # the ed25519 pin, as before


def test_a_known_hosts_entry_for_another_port_is_no_pin(sshd: SshdServer) -> None:
    known = sshd.root / "known_hosts"
    known.write_text(f"127.0.0.1 {sshd.host_key_line}\n")  # port 22's entry, not this port's
    with pytest.raises(PermanentRefusal, match=rf"no key for \[127.0.0.1\]:{sshd.port}"):
        connect_key(sshd, host_key=None, known_hosts=known)


def test_no_pin_at_all_is_refused_without_connecting(sshd: SshdServer) -> None:
    with pytest.raises(PermanentRefusal, match="no host key pinned") as err:
        connect_key(sshd, host_key=None)
    assert "never trusts a key on first use" in err.value.fix
    assert "Connection from" not in sshd.log()
    with pytest.raises(PermanentRefusal, match=r"known_hosts .*missing.*cannot be read"):
        connect_key(sshd, host_key=None, known_hosts=sshd.root / "missing")


@pytest.mark.parametrize("line, problem", [
    ("", "not an OpenSSH public key line"),
    ("AAAAC3NzaC1lZDI1NTE5AAAAI", "not an OpenSSH public key line"),
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "key type 'ssh-dss' is not one of"),
    ("ssh-ed25519 AAAA$$$", "does not decode"),
    ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGZha2VmYWtlZmFrZWZha2VmYWtlZmFrZWZha2VmYWtl",
     "is not a ssh-rsa key"),
    ("ssh-ed25519 AAAAC3NzaC1l", "is not a ssh-ed25519 key"),
])
def test_a_malformed_host_key_names_what_is_wrong(line: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_host_key(line)
    with pytest.raises(PermanentRefusal, match=f"host_key: .*{problem}"):
        SftpFiles.connect(host="127.0.0.1", port=1, user="u", password="p", host_key=line)


def test_a_wrong_password_is_a_permanent_login_refusal(sshd: SshdServer) -> None:
    with pytest.raises(PermanentRefusal, match=rf"login refused for user '{sshd.user}'") as err:
        SftpFiles.connect(host="127.0.0.1", port=sshd.port, user=sshd.user,
                          password="wrong-pass-123", host_key=sshd.host_key_line)
    assert "password" in err.value.fix
    assert "wrong-pass-123" not in str(err.value) + err.value.fix
    assert "Failed password" in sshd.log()


def test_an_unknown_key_then_the_right_password(sshd: SshdServer) -> None:
    stranger = sshd.root / "stranger"
    keygen(stranger)
    files = connect_key(sshd, key_file=stranger, password=_password(sshd))
    files.close()
    with pytest.raises(PermanentRefusal, match=r"login refused .*\(key ssh-ed25519 SHA256:"):
        connect_key(sshd, key_file=stranger)


def test_an_encrypted_or_missing_key_file_is_permanent(sshd: SshdServer) -> None:
    locked = sshd.root / "locked_key"
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(locked)],
                   check=True, capture_output=True, timeout=60)
    with pytest.raises(PermanentRefusal, match="encrypted with a passphrase"):
        connect_key(sshd, key_file=locked)
    with pytest.raises(PermanentRefusal, match="no such file"):
        connect_key(sshd, key_file=sshd.root / "nope")
    with pytest.raises(PermanentRefusal, match="no password and no key_file"):
        connect_key(sshd, key_file=None)


def test_a_stopped_server_is_a_dead_link_mid_session_and_at_connect(sshd: SshdServer) -> None:
    files = connect_key(sshd)
    files.store("before.txt", b"1")
    sshd.stop()
    with pytest.raises(LinkDown):
        files.store("during.txt", b"2")
    with pytest.raises(LinkDown):
        files.size("before.txt")
    files.close()
    with pytest.raises(LinkDown, match="cannot connect"):
        connect_key(sshd)
    sshd.start()  # back on the same port with the same key: the pin still holds
    files = connect_key(sshd)
    assert files.list_names("") == ["before.txt"]
    files.close()


def test_a_server_that_never_answers_is_a_dead_link() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        accepted: list[socket.socket] = []
        t = threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True)
        t.start()
        with pytest.raises(LinkDown, match="SSH session failed"):
            SftpFiles.connect(host="127.0.0.1", port=port, user="u", password="p",
                              host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZha2VmYWtlZmFr"
                              "ZWZha2VmYWtlZmFrZWZha2VmYWtl", timeout_s=0.5)
        t.join(5)
        for s in accepted:
            s.close()


def test_an_upload_only_account_refuses_the_rename_but_takes_direct_uploads(
        upload_only: SshdServer) -> None:
    files = connect_key(upload_only)
    try:
        files.make_dirs("2025/07/14")
        files.store("2025/07/14/a.txt.part", b"data")
        with pytest.raises(RenameRefused, match=r"rename '2025/07/14/a\.txt\.part' -> "):
            files.rename("2025/07/14/a.txt.part", "2025/07/14/a.txt")
        files.store("2025/07/14/a.txt", b"data")  # the uplink's fallback: direct
        assert sorted(files.list_names("2025/07/14")) == ["a.txt", "a.txt.part"]
        assert files.size("2025/07/14/a.txt") == 4
    finally:
        files.close()
    journal = upload_only.journal()
    assert ("refused", "Permission denied") in journal  # the server said no, both renames
    assert not [e for e in journal if e[0] == "renamed"]
    assert [p for kind, p in journal if kind == "stored"] == ["2025/07/14/a.txt.part",
                                                              "2025/07/14/a.txt"]


def test_a_rename_of_a_file_that_vanished_is_not_a_refusal(sshd: SshdServer) -> None:
    files = connect_key(sshd)
    try:
        with pytest.raises(LinkDown, match="vanished before its rename"):
            files.rename("gone.part", "gone")
    finally:
        files.close()



# --- end to end: the real uplink (its policy, the connector's "sftp") over this server ------

DEADLINE_S = 60.0


def sftp_config(tmp_path: Path, server: SshdServer, pin: str) -> StationConfig:
    """A station whose Circular 10 files go by SFTP to ``server``, key login, the host key
    pinned by ``pin`` (a ``host_key = ...`` or ``known_hosts = ...`` line)."""
    path = tmp_path / "station.toml"
    path.write_text(STATION + f"""\
[uplink.circular10]
host = "127.0.0.1"
port = {server.port}
user = "{server.user}"
key_file = "{server.user_key}"
{pin}
directory = "incoming"
[uplink.circular10.receiver]
file_prefix = "{PREFIX}"
transport = "sftp"
remote_dir = "/{{yyyy}}/{{MM}}/{{dd}}"
""")
    return load_config(path)


def on_server(server: SshdServer) -> list[str]:
    base = server.home / "incoming"
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())


def test_a_24_hour_outage_then_recovery_delivers_every_file_once_oldest_first_over_sftp(
        tmp_path: Path, sshd: SshdServer) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line() + "\n")
    cfg = sftp_config(tmp_path, sshd, f'known_hosts = "{known}"')
    assert cfg.circular10 is not None and cfg.circular10.transport == "sftp"
    clock = Clock()
    store = Store(tmp_path / "outbox.sqlite", clock)
    [first] = closed_starts(clock, 1)
    store.append(window(first))
    run = runner(cfg, store, clock)
    run.start()
    try:
        wait_for(lambda: on_server(sshd) == [path_of(first)], DEADLINE_S, "the first file")
        sshd.stop()  # the link dies for a day: 288 windows of 5 minutes close meanwhile
        outage = [first + W * (i + 1) for i in range(288)]
        for s in outage:
            store.append(window(s, ph=7.0 + (s // W) % 10 / 10))
        clock.offset += 86400
        wait_for(lambda: run.uplink.stats.pending == 288 and run.uplink.stats.upload_failures
                 >= 1, DEADLINE_S, "the day's files spooled while the link is down")
        assert run.status()["state"] == "retrying"
        assert on_server(sshd) == [path_of(first)]
        sshd.start()  # back: the spool drains on the next attempt
        wait_for(lambda: run.uplink.stats.pending == 0, DEADLINE_S, "the backlog delivered")
    finally:
        run.stop()
        store.close()
    starts = [first, *outage]
    assert on_server(sshd) == sorted(path_of(s) for s in starts)
    assert len({path_of(s).rsplit("/", 1)[0] for s in starts}) >= 2  # a day spans two folders
    assert cfg.circular10 is not None
    for s in starts:  # byte for byte what the renderer made of the stored window
        made = rendered(cfg, s, window(s, ph=7.2 if s == first else 7.0 + (s // W) % 10 / 10))
        assert (sshd.home / "incoming" / path_of(s)).read_bytes() == made.data
    journal = sshd.journal()
    renamed = [target.split(" -> ")[1] for kind, target in journal if kind == "renamed"]
    stored = [p for kind, p in journal if kind == "stored"]
    finals = [f"incoming/{path_of(s)}" for s in starts]
    assert renamed == finals  # each exactly once, oldest first
    assert len(stored) == len(starts) and all(p.rsplit("/", 1)[1].startswith(".")
                                              and p.endswith(".part") for p in stored)
    assert run.uplink.stats.files_sent == 289 and run.uplink.stats.files_found_on_server == 0
    scan = Receiver(sshd.home / "incoming", PREFIX).scan()
    assert scan.names == [p.rsplit("/", 1)[1] for p in sorted(finals)]
    assert scan.refused == {} and scan.unseen == [] and scan.ignored == []  # no .part left


def test_an_upload_only_sftp_account_gets_direct_uploads_after_the_first_refused_rename(
        tmp_path: Path, upload_only: SshdServer) -> None:
    cfg = sftp_config(tmp_path, upload_only, f'host_key = "{upload_only.host_key_line}"')
    clock = Clock()
    store = Store(tmp_path / "outbox.sqlite", clock)
    starts = closed_starts(clock, 3)
    for s in starts:
        store.append(window(s))
    run = runner(cfg, store, clock)
    run.start()
    try:
        wait_for(lambda: run.uplink.stats.pending == 0 and run.uplink.stats.files_sent == 3,
                 DEADLINE_S, "three files delivered")
        assert run.status()["upload"] == "direct"
    finally:
        run.stop()
    finals = [f"incoming/{path_of(s)}" for s in starts]
    part = finals[0].rsplit("/", 1)[0] + "/" + part_name(finals[0].rsplit("/", 1)[1])
    journal = upload_only.journal()
    assert [p for kind, p in journal if kind == "stored"] == [part, *finals]
    assert [e for e in journal if e[0] == "refused"] == [("refused", "Permission denied")] * 2
    assert not [e for e in journal if e[0] == "renamed"]
    # a restart remembers (the spool's upload_mode): the next file goes direct at once
    nxt = starts[-1] + W
    store.append(window(nxt))
    clock.offset += W
    run = runner(cfg, store, clock)
    run.start()
    try:
        wait_for(lambda: run.uplink.stats.files_sent == 1, DEADLINE_S, "the fourth file")
    finally:
        run.stop()
        store.close()
    journal = upload_only.journal()
    assert [p for kind, p in journal if kind == "stored"][-1] == f"incoming/{path_of(nxt)}"
    assert len([e for e in journal if e[0] == "refused"]) == 2  # no rename tried again
    scan = Receiver(upload_only.home / "incoming", PREFIX).scan()
    assert scan.names == [p.rsplit("/", 1)[1] for p in [*finals, f"incoming/{path_of(nxt)}"]]
    # the temp file an upload-only account cannot delete is one no receiver takes for data
    assert scan.ignored == [part.removeprefix("incoming/")] and scan.refused == {}
    assert part.removeprefix("incoming/") in on_server(upload_only)  # left there, and harmless


def test_a_changed_host_key_is_a_refusal_the_status_shows_with_the_fingerprint(
        tmp_path: Path, sshd: SshdServer) -> None:
    """The province's server answers with a key we did not pin: nothing is sent, the files
    wait, and ``status`` says refused with the offered fingerprint, at the first attempt."""
    other = keygen(tmp_path / "old_host_key")  # the key on the sheet is not what answers
    cfg = sftp_config(tmp_path, sshd, f'host_key = "{other}"')
    clock = Clock()
    store = Store(tmp_path / "outbox.sqlite", clock)
    for s in closed_starts(clock, 2):
        store.append(window(s))
    run = runner(cfg, store, clock)
    run.start()
    try:
        wait_for(lambda: run.status()["state"] == "refused", DEADLINE_S, "state refused")
        status = run.status()
    finally:
        run.stop()
        store.close()
    assert sshd.host_fingerprint in status["fix"]
    assert sshd.host_fingerprint in status["stats"]["last_error"]
    assert status["stats"]["pending"] == 2 and status["stats"]["refusals"] == 1
    assert not (sshd.home / "incoming").exists()  # not even a folder made
    assert "Accepted" not in sshd.log()  # no login was even tried
