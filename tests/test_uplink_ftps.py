"""The legacy uplink over FTPS against a real, strict FTPS server (pyftpdlib + pyOpenSSL) on
loopback: TLS required on the control and the data connections, and (like vsftpd's default
``require_ssl_reuse=YES``) every data connection must resume the control connection's TLS
session. The uplink delivers with the centre's CA from ``ca_file``; it refuses a server whose
certificate does not verify, keeps the file spooled and says so in one log line."""

from __future__ import annotations

import ftplib
import io
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from buffer import Store
from edge_agent.config.model import StationConfig
from edge_agent.uplinks.circular10.settings import Circular10Settings
from edge_agent.uplinks.circular10.uplink import Circular10Uplink
from tests.ftp_server import PASSWORD, USER, FtpServer, TlsFiles, make_tls
from tests.test_uplink_ftp import (
    Clock,
    closed_starts,
    config,
    on_server,
    part_of,
    path_of,
    rendered,
    window,
)


def ftps_config(tmp_path: Path, port: int, ca_file: str) -> StationConfig:
    """The station config of tests/test_uplink_ftp.py with ``transport = "ftps"`` and
    ``ca_file`` relative to the config file, as a technician would write it."""
    return config(tmp_path, port, extra=f'ca_file = "{ca_file}"', transport="ftps")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "outbox.sqlite", Clock())
    try:
        yield s
    finally:
        s.close()


def start_server(tmp_path: Path, tls: TlsFiles, **kw: Any) -> FtpServer:
    home = tmp_path / "ftp"
    (home / "incoming").mkdir(parents=True)
    server = FtpServer(home, tls=tls, **kw)
    server.start()
    return server


def uplink(cfg: StationConfig, store: Store, **overrides: Any) -> Circular10Uplink:
    settings = replace(Circular10Settings.from_config(cfg), timeout_s=5.0, **overrides)
    return Circular10Uplink(settings, store, cfg.agent.state_dir / "circular10", Clock())


@pytest.mark.parametrize("tls12_only", [False, True], ids=["tls1.3", "tls1.2"])
def test_ftps_delivers_to_a_server_requiring_tls_and_session_reuse(
        tmp_path: Path, store: Store, tls12_only: bool) -> None:
    server = start_server(tmp_path, make_tls(tmp_path / "tls"), require_session_reuse=True,
                          tls12_only=tls12_only)
    try:
        cfg = ftps_config(tmp_path, server.port, "tls/ca.crt")
        assert cfg.circular10 is not None and cfg.circular10.transport == "ftps"
        assert cfg.circular10.ca_file == tmp_path / "tls" / "ca.crt"
        starts = closed_starts(Clock(), 2)
        for s in starts:
            store.append(window(s))
        up = uplink(cfg, store)
        up.step()
    finally:
        server.stop()
    assert on_server(server) == [path_of(s) for s in starts]
    assert up.link_up is True and up.stats.files_sent == 2 and up.stats.pending == 0
    for s in starts:
        assert (server.home / "incoming" / path_of(s)).read_bytes() == \
            rendered(cfg, s, window(s)).data
    assert server.journal.stored == [part_of(s) for s in starts]
    assert server.journal.renamed == [(part_of(s), path_of(s).rsplit("/", 1)[1])
                                      for s in starts]
    # one protected data connection per STOR, each resuming the control session
    assert server.journal.data_tls_resumed == [True, True]


def test_the_test_server_really_requires_tls_and_session_reuse(tmp_path: Path) -> None:
    """Without this, the test above could pass against a lenient server: plain FTP, a clear
    data channel and the stdlib's FTP_TLS (a fresh TLS session per data connection) are all
    refused by it."""
    tls = make_tls(tmp_path / "tls")
    server = start_server(tmp_path, tls, require_session_reuse=True)
    context = ssl.create_default_context(cafile=str(tls.ca))
    try:
        plain = ftplib.FTP(timeout=5)
        plain.connect("127.0.0.1", server.port)
        with pytest.raises(ftplib.error_perm, match="SSL/TLS required on the control channel"):
            plain.login(USER, PASSWORD)
        plain.close()
        stdlib = ftplib.FTP_TLS(context=context, timeout=5)
        stdlib.connect("127.0.0.1", server.port)
        stdlib.login(USER, PASSWORD)
        with pytest.raises(ftplib.error_perm, match="SSL/TLS required on the data channel"):
            stdlib.storbinary("STOR incoming/probe", io.BytesIO(b"x"))  # no PROT P yet
        stdlib.prot_p()
        with pytest.raises((OSError, ftplib.Error)):  # 522, or the reset that goes with it
            stdlib.storbinary("STOR incoming/probe", io.BytesIO(b"x"))
        stdlib.close()
    finally:
        server.stop()
    assert server.journal.data_tls_resumed == [False]
    assert server.journal.stored == []


def test_an_untrusted_server_certificate_is_refused_and_the_file_stays_spooled(
        tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    ours = make_tls(tmp_path / "tls")  # the CA the station trusts (ca_file)
    theirs = make_tls(tmp_path / "other", "some other CA")  # what the server presents
    server = start_server(tmp_path, theirs, require_session_reuse=True)
    try:
        cfg = ftps_config(tmp_path, server.port, "tls/ca.crt")
        start = closed_starts(Clock(), 1)[0]
        store.append(window(start))
        up = uplink(cfg, store)
        with caplog.at_level("DEBUG", logger="quantrac"):
            up.step()
        # not a flaky link: a permanent refusal, with what to fix
        assert up.status()["state"] == "refused" and up.stats.refusals == 1
        assert up.stats.pending == 1 and len(up.spool.pending_keys()) == 1
        assert on_server(server) == []  # refused before USER: not even a .part
        [rec] = [r for r in caplog.records if r.getMessage() == "circular10_refused"]
        assert rec.levelname == "ERROR"
        assert "SSLCertVerificationError" in rec.__dict__["error"]
        assert "CERTIFICATE_VERIFY_FAILED" in rec.__dict__["error"]
        assert rec.__dict__["fix"] == up.status()["fix"] == (
            f"the server's certificate is not trusted: it does not verify against "
            f"{ours.ca}; set ca_file to the CA that signed it")
        text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
        assert PASSWORD not in text
        # the operator fixes ca_file: the file still in the spool goes, once
        fixed = uplink(cfg, store, ca_file=theirs.ca)
        assert fixed.send_pending() == 1
    finally:
        server.stop()
    assert on_server(server) == [path_of(start)] and fixed.spool.pending_keys() == []
    assert len(server.journal.stored) == 1 and server.journal.data_tls_resumed == [True]
