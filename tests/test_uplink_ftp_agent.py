"""The agent with ``[uplink.circular10]``: `quantrac run` against the simulated station pushes
one Circular 10 file per closed window to a real FTP server, each the rendering of the records
in its own outbox; `quantrac config check` names the uplink; `quantrac status` shows it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from buffer.rows import RECORD_COLUMNS, row_record
from edge_agent.config.model import Circular10Receiver
from edge_agent.console import status_view
from edge_agent.console.control_client import request
from edge_agent.uplinks.circular10 import render as circular10
from tests.agent_world import WIDTH, StationWorld, station_world
from tests.ftp_server import PASSWORD, USER, FtpServer
from tests.mqtt_world import wait_for

pytestmark = pytest.mark.slow


PREFIX = "HCM_TEST_OUTF1_"


def files(home: Path) -> list[Path]:
    """The station's files in their dated folders (``in/yyyy/MM/dd/``)."""
    return sorted((home / "in").glob(f"*/*/*/{PREFIX}*.txt"))


@pytest.fixture
def sw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StationWorld]:
    yield from station_world(tmp_path, monkeypatch, uplink=False)


def test_the_agent_pushes_a_file_per_window(sw: StationWorld, tmp_path: Path) -> None:
    home = tmp_path / "ftp"
    (home / "in").mkdir(parents=True)
    server = FtpServer(home)
    server.start()
    try:
        (tmp_path / "ftp.secret").write_text(PASSWORD + "\n")
        sw.config.write_text(sw.config.read_text() + f"""
[uplink.circular10]
host = "127.0.0.1"
port = {server.port}
user = "{USER}"
password_file = "{tmp_path / 'ftp.secret'}"
directory = "in"
interval_minutes = {WIDTH / 60}
window = {WIDTH}
[uplink.circular10.receiver]
file_prefix = "{PREFIX}"
transport = "ftp"
""")
        check = subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "config", "check",
                                str(sw.config)], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout
        assert f"circular10 ftp://127.0.0.1:{server.port} every {WIDTH / 60:g} min" in \
            check.stdout
        agent = sw.start_agent()
        wait_for(lambda: len(files(home)) >= 2, 60, f"two files\n{sw.log()[-3000:]}", poll=0.2)
        status = request(sw.socket, {"op": "status"})["status"]["uplink_circular10"]
        assert status["state"] == "connected" and status["stats"]["files_sent"] >= 2
        text = subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "status", "--socket",
                               str(sw.socket)], capture_output=True, text=True, timeout=60)
        assert text.returncode == 0, text.stderr
        [line] = [ln for ln in text.stdout.splitlines() if ln.startswith("circ10  ")]
        assert line.startswith("circ10  connected, ") and len(line) <= 80
        assert line.endswith(f" pending, ftp://127.0.0.1:{server.port}/in")
        assert PASSWORD not in sw.log()
        assert sw.stop_agent(agent) == 0
    finally:
        server.stop()
    assert not [p for p in (home / "in").rglob("*") if p.is_file() and p not in files(home)]
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    receiver = Circular10Receiver(file_prefix=PREFIX, transport="ftp")
    cols = ", ".join(RECORD_COLUMNS)
    with sw.outbox() as store:
        for path in files(home)[:2]:
            when = path.stem.rsplit("_", 1)[1]
            lines = path.read_text(encoding="utf-8").splitlines()
            assert {ln.split("\t")[3] for ln in lines} == {when}
            rows = [row_record(r) for r in store.query(
                f'SELECT {cols} FROM records WHERE "end" - start = ? ORDER BY seq', (WIDTH,))]
            window = [r for r in rows
                      if circular10.local(r.end, tz).strftime("%Y%m%d%H%M%S") == when]
            assert window
            assert path.read_bytes() == circular10.render_file(
                receiver, tz, window[0].start, WIDTH, window).data
            assert [ln.split("\t")[0] for ln in lines] == \
                ["pH", "Temp", "TSS", "COD", "NH4", "TN", "TP", "Flow"]


def test_the_status_view_shows_the_legacy_uplink_in_one_line() -> None:
    base = {"started": 1000.0, "uplink": {"state": "connected", "detail": "mqtts://c:8883"}}
    assert not [ln for ln in status_view.render(base, 1010.0) if ln.startswith("circ10")]
    failing = {**base, "uplink_circular10": {
        "state": "retrying", "detail": "ftps://ftp.centre.example.vn:21/incoming/station-one",
        "stats": {"files_sent": 12, "pending": 3, "last_error":
                  "SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                  "verify failed: unable to get local issuer certificate (_ssl.c:1006)"}}}
    lines = status_view.render(failing, 1010.0)
    # counts first; the long server and error wrap under it, whole (issue 16: never cut)
    at = next(i for i, ln in enumerate(lines) if ln.startswith("circ10"))
    assert lines[at].startswith("circ10  retrying, 12 sent, 3 pending,")
    assert " ".join(ln.strip() for ln in lines[at:]) == (
        "circ10  retrying, 12 sent, 3 pending, ftps://ftp.centre.example.vn:21/incoming/"
        "station-one; SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
        "verify failed: unable to get local issuer certificate (_ssl.c:1006)")
    assert all(len(ln) <= 80 for ln in lines)


def test_the_status_view_says_what_to_fix_when_the_server_refuses() -> None:
    base = {"started": 1000.0, "uplink": {"state": "connected", "detail": "mqtts://c:8883"}}
    refused = {**base, "uplink_circular10": {
        "state": "refused", "detail": "ftp://ftp.stnmt.example.vn:21/HN_PHCH",
        "fix": "check user/password with the province",
        "stats": {"files_sent": 0, "pending": 4, "last_error":
                  "login as station1: 530 Login incorrect."}}}
    lines = status_view.render(refused, 1010.0)
    assert any(ln.startswith("circ10  refused, 0 sent, 4 pending, ftp://ftp.stnmt")
               for ln in lines)
    assert lines[-1] == "! circ10 fix: check user/password with the province"
