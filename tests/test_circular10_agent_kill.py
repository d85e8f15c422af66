"""Issue 13 acceptance with the real agent (``quantrac run`` in its own process), not the uplink
on a test thread: a 24 h backlog drained over FTP, FTPS and SFTP while the agent is SIGKILLed at
random moments loses and duplicates nothing (the server's dated folders are listed at the end),
and a permanent refusal (530) is in ``quantrac status`` within one cycle with what to fix.

The outage is set up as it happens on a station: the uplink delivered a file a day ago, the
link died, the day's 288 windows were stored in the outbox, the agent (running, the server
down) rendered them into its spool and kept retrying; then the server comes back and the agent
drains the spool. The agent cannot be started a day ago, so the life that delivered the first
file is the uplink in this process on a clock set back 24 h (only that file; it leaves the
spool's cursor where a day-old agent would have left it); every later step is the real agent.
Its simulated station keeps polling, so a live 5-minute window may close during a test: the
files expected on the server are every window of the outbox up to the spool's cursor (what the
agent rendered), which is at least the whole outage."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from buffer import Store
from buffer.rows import RECORD_COLUMNS, row_record
from edge_agent.config.model import StationConfig
from edge_agent.config.reader import load_config
from edge_agent.console.control_client import ControlError, request
from edge_agent.uplinks.circular10 import render as circular10
from edge_agent.uplinks.circular10.settings import Circular10Settings
from edge_agent.uplinks.circular10.uplink import SPOOL_NAME, Circular10Uplink, Spool
from protocol.model import Record, RecordFlag, Status
from tests import ftp_server
from tests.agent_world import StationWorld, station_world
from tests.ftp_server import FtpServer, make_tls
from tests.mqtt_world import wait_for
from tests.receiver_emulation import Receiver
from tests.sshd_server import SshdServer, remove_account, serving
from tests.test_uplink_ftp import Clock, closed_starts

pytestmark = pytest.mark.slow

W = 300  # the 5-minute files Circular 10 wants
DAY = 288  # 5-minute windows in 24 h
PREFIX = "HCM_TEST_OUTF1_"  # the province HCM, facility Test, station Outfall1 of agent_world
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SEED = 13
DEADLINE_S = 60.0


@pytest.fixture(scope="module", autouse=True)
def _account() -> Iterator[None]:
    yield
    remove_account()  # the SFTP server's throw-away account (every server is stopped by now)


@pytest.fixture
def sw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StationWorld]:
    yield from station_world(tmp_path, monkeypatch, uplink=False)


# --------------------------------------------------------------------------- the parts


@dataclass
class Link:
    """A province's server, whatever the protocol: how to stop and start it, where the
    station's folder is on its disk, what it renamed (final base names, in order), and the
    ``[uplink.circular10]`` table that points the agent at it."""

    start: Callable[[], None]
    stop: Callable[[], None]
    base: Path
    renamed: Callable[[], list[str]]
    table: str
    set_on_rename: Callable[[Callable[[str], None] | None], None] | None = None


def ftp_link(tmp_path: Path, tls: bool, password: str = ftp_server.PASSWORD) -> Link:
    home = tmp_path / "ftp"
    (home / "incoming").mkdir(parents=True)
    files = make_tls(tmp_path / "tls") if tls else None
    server = FtpServer(home, tls=files)
    server.start()
    secret = tmp_path / "ftp.secret"
    secret.write_text(password + "\n")
    ca = f'ca_file = "{files.ca}"\n' if files else ""
    table = f"""
[uplink.circular10]
host = "127.0.0.1"
port = {server.port}
user = "{ftp_server.USER}"
password_file = "{secret}"
directory = "/incoming"
timeout_s = 5.0
backoff_cap_s = 1.0
{ca}[uplink.circular10.receiver]
file_prefix = "{PREFIX}"
transport = "{'ftps' if tls else 'ftp'}"
"""

    def set_on_rename(hook: Callable[[str], None] | None) -> None:
        server.on_rename = hook
    return Link(server.start, server.stop, home / "incoming",
                lambda: [dst for _src, dst in server.journal.renamed], table, set_on_rename)


def sftp_link(tmp_path: Path, server: SshdServer) -> Link:
    known = tmp_path / "known_hosts"
    known.write_text(server.known_hosts_line() + "\n")
    table = f"""
[uplink.circular10]
host = "127.0.0.1"
port = {server.port}
user = "{server.user}"
key_file = "{server.user_key}"
known_hosts = "{known}"
directory = "incoming"
timeout_s = 5.0
backoff_cap_s = 1.0
[uplink.circular10.receiver]
file_prefix = "{PREFIX}"
transport = "sftp"
"""

    def renamed() -> list[str]:
        return [t.split(" -> ")[1].rsplit("/", 1)[1] for kind, t in server.journal()
                if kind == "renamed"]
    return Link(server.start, server.stop, server.home / "incoming", renamed, table)


@pytest.fixture
def sshd() -> Iterator[SshdServer]:
    with serving() as server:
        yield server


def configure(sw: StationWorld, link: Link) -> StationConfig:
    """The agent's config with 5-minute windows and ``link``'s uplink table."""
    text = sw.config.read_text()
    assert "windows = [10]" in text
    sw.config.write_text(text.replace("windows = [10]", f"windows = [{W}]") + link.table)
    return load_config(sw.config)


def window(cfg: StationConfig, start: int) -> list[Record]:
    """One stored 5-minute window of every channel of the station, values varying with the
    window, and now and then what stations really store: a window below the coverage rule, a
    flowmeter that did not answer (no value), an analyser calibrating."""
    k = start // W
    out = []
    for i, ch in enumerate(cfg.channels):
        mean = round(1.0 + i * 3.7 + (k % 17) * 0.25, 2)
        valid, status, n = True, Status.MEASURING, 30
        if ch.symbol == "Flow" and k % 11 == 0:
            mean, valid, status, n = float("nan"), False, Status.OFFLINE, 0
        elif ch.symbol == "NH4" and k % 13 == 0:
            valid, status = False, Status.CALIBRATING
        elif ch.symbol == "COD" and k % 7 == 0:
            valid, n = False, 12  # the analyser measured, too few points: still status 00
        out.append(Record(ch.symbol, start, start + W, mean, mean, mean, 0.0, n, 30, valid,
                          status, ch.unit, RecordFlag.NONE))
    return out


def name_of(start: int) -> str:
    return PREFIX + circular10.local(start + W, TZ).strftime("%Y%m%d%H%M%S") + ".txt"


def path_of(start: int) -> str:
    """Where the window's file belongs, relative to the station's folder: its dated folder."""
    at = circular10.local(start + W, TZ)
    return f"{at:%Y/%m/%d}/{name_of(start)}"


def agent_status(sw: StationWorld) -> dict[str, Any] | None:
    """The running agent's ``uplink_circular10`` status through its control socket (what
    ``quantrac status`` asks), or None while it is not answering yet."""
    try:
        answer = request(sw.socket, {"op": "status"}, timeout=5.0)
    except ControlError:
        return None
    c10: dict[str, Any] | None = answer["status"].get("uplink_circular10")
    return c10


def quantrac(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", *args],
                          capture_output=True, text=True, timeout=60)


def waiting(spool: Path) -> int:
    """Files in the agent's spool not yet delivered."""
    return sum(1 for p in (spool / "pending").iterdir() if not p.name.startswith("."))


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL


# --------------------------------------------------------------------------- 24 h outage


def outage(sw: StationWorld, link: Link, cfg: StationConfig
           ) -> tuple[dict[int, list[Record]], subprocess.Popen[bytes]]:
    """A day-old delivery, a dead link for 24 h, the agent running with the day's windows in
    its spool and the link still down. The windows made, by start, and the agent."""
    now = Clock()
    starts = closed_starts(now, DAY + 1)
    made = {s: window(cfg, s) for s in starts}
    day_ago = Clock()
    day_ago.offset = -DAY * W
    with Store(sw.state_dir / "outbox.sqlite") as store:
        store.append(made[starts[0]])
        up = Circular10Uplink(Circular10Settings.from_config(cfg), store,
                              cfg.agent.state_dir / SPOOL_NAME, day_ago)
        up.step()  # a day ago: the only window closed then is the first one
        assert up.stats.files_sent == 1 and up.stats.pending == 0, up.stats
        link.stop()
        for s in starts[1:]:
            store.append(made[s])
    agent = sw.start_agent()
    wait_for(lambda: (st := agent_status(sw)) is not None and st["state"] == "retrying"
             and st["stats"]["pending"] >= DAY, DEADLINE_S,
             f"the agent to spool the day's files, link down\n{sw.log()[-3000:]}", poll=0.2)
    return made, agent


def killer(pid: int, n: int, fired: threading.Event) -> Callable[[str], None]:
    """A server's rename hook that SIGKILLs ``pid`` at the ``n``-th rename, before the server
    answers it."""
    left = [n]

    def at_rename(_dst: str) -> None:
        left[0] -= 1
        if left[0] == 0:
            os.kill(pid, signal.SIGKILL)
            fired.set()
    return at_rename


def at_least(renamed: Callable[[], list[str]], goal: int) -> bool:
    return len(renamed()) >= goal


def at_most(spool: Path, goal: int) -> bool:
    return waiting(spool) <= goal


def life_over(agent: subprocess.Popen[bytes], due: Callable[[], bool], spool: Path) -> bool:
    """Time to kill (or the agent died, or there is nothing left to drain)."""
    return due() or waiting(spool) == 0 or agent.poll() is not None


def drain_with_kills(sw: StationWorld, link: Link, agent: subprocess.Popen[bytes]
                     ) -> tuple[int, int]:
    """Bring the server back and SIGKILL the agent after a random number (seeded) of further
    deliveries, restarting it, until the spool is empty; the last life is stopped with SIGTERM.

    A life is killed by one of two triggers, drawn at random: counted on the server, the
    agent dies once the server has renamed its n-th file (over FTP the server itself kills it
    from its rename, before it answers: the file is there under its final name and the agent
    cannot know; over SFTP the test polls the server's journal); counted in the spool, it dies
    after its n-th move to ``sent/``, in the next upload or between two. (kills, kills at the
    server's rename)."""
    spool = sw.state_dir / SPOOL_NAME
    rng = random.Random(SEED)
    link.start()
    kills = at_rename = 0
    while True:
        n = rng.randint(1, 60)
        on_server = rng.random() < 0.5
        fired = threading.Event()
        due: Callable[[], bool]
        if on_server and link.set_on_rename is not None:
            link.set_on_rename(killer(agent.pid, n, fired))
            due = fired.is_set
        elif on_server:
            due = partial(at_least, link.renamed, len(link.renamed()) + n)
        else:
            due = partial(at_most, spool, max(0, waiting(spool) - n))
        try:
            wait_for(partial(life_over, agent, due, spool), DEADLINE_S,
                     f"{n} more files delivered\n{sw.log()[-3000:]}", poll=0.002)
        finally:
            if link.set_on_rename is not None:
                link.set_on_rename(None)
        if fired.is_set():
            assert agent.wait(10) == -signal.SIGKILL
            at_rename += 1
        else:
            assert agent.poll() is None, sw.log()[-3000:]
            if waiting(spool) == 0:  # drained before the kill came
                break
            kill(agent)
        kills += 1
        agent = sw.start_agent()
    assert sw.stop_agent(agent) == 0
    # a live window may have closed while the last life stopped: deliver it too
    while waiting(spool):
        agent = sw.start_agent()
        wait_for(lambda: waiting(spool) == 0, DEADLINE_S, f"the spool empty\n{sw.log()[-3000:]}")
        assert sw.stop_agent(agent) == 0
    return kills, at_rename


def expected_files(sw: StationWorld, cfg: StationConfig, made: dict[int, list[Record]]
                   ) -> dict[str, bytes]:
    """Path (relative to the station's folder) -> bytes of every window the agent rendered:
    the outage windows from what was stored, and any live window up to the spool's cursor from
    the agent's own outbox (first record of a channel in a window counts)."""
    assert cfg.circular10 is not None
    rx = cfg.circular10.receiver
    cursor = Spool(sw.state_dir / SPOOL_NAME).cursor()
    assert cursor is not None and cursor >= max(made)
    cols = ", ".join(RECORD_COLUMNS)
    with sw.outbox() as store:
        live: dict[int, dict[str, Record]] = {}
        for row in store.query(f'SELECT {cols} FROM records WHERE "end" - start = ? AND '
                               "start > ? AND start <= ? ORDER BY seq", (W, max(made), cursor)):
            r = row_record(row)
            live.setdefault(r.start, {}).setdefault(r.channel, r)
    windows = {**made, **{s: list(chs.values()) for s, chs in live.items()}}
    return {path_of(s): circular10.render_file(rx, TZ, s, W, recs).data
            for s, recs in sorted(windows.items())}


def assert_delivered_once_each(link: Link, expected: dict[str, bytes]) -> None:
    # the server's folders, listed: every file in its dated folder, nothing missing, nothing
    # extra (no temp file, nothing in the base folder), byte for byte what the window renders
    on_server = {p.relative_to(link.base).as_posix(): p.read_bytes()
                 for p in link.base.rglob("*") if p.is_file()}
    assert sorted(on_server) == sorted(expected)
    assert [p for p in expected if on_server[p] != expected[p]] == []
    assert len({p.rsplit("/", 1)[0] for p in expected}) >= 2  # a day spans two dated folders
    # each became its final name exactly once, oldest first (kills between the rename and
    # the local move to sent/ are caught by the size check, never sent twice)
    names = [p.rsplit("/", 1)[1] for p in expected]  # sorted by path: by time
    renamed = link.renamed()
    assert Counter(renamed) == Counter(names)
    assert renamed == names
    scan = Receiver(link.base, PREFIX).scan()
    assert scan.refused == {} and scan.unseen == [] and scan.ignored == []
    assert scan.names == names


@pytest.mark.parametrize("tls", [False, True], ids=["ftp", "ftps"])
def test_sigkill_of_the_agent_during_a_24h_drain_over_ftp_loses_and_duplicates_nothing(
        sw: StationWorld, tmp_path: Path, tls: bool) -> None:
    link = ftp_link(tmp_path, tls)
    try:
        cfg = configure(sw, link)
        made, agent = outage(sw, link, cfg)
        kills, at_rename = drain_with_kills(sw, link, agent)
    finally:
        link.stop()
    assert kills >= 4 and at_rename >= 1, (kills, at_rename)
    # each file the server had renamed when its agent died was found there by the next life
    found = sw.log().count(" event=circular10_file_already_on_server ")
    assert found >= at_rename
    assert_delivered_once_each(link, expected_files(sw, cfg, made))


def test_sigkill_of_the_agent_during_a_24h_drain_over_sftp_loses_and_duplicates_nothing(
        sw: StationWorld, tmp_path: Path, sshd: SshdServer) -> None:
    link = sftp_link(tmp_path, sshd)
    cfg = configure(sw, link)
    made, agent = outage(sw, link, cfg)
    kills, _ = drain_with_kills(sw, link, agent)
    sshd.stop()
    assert kills >= 4
    assert_delivered_once_each(link, expected_files(sw, cfg, made))


# --------------------------------------------------------------------------- refusal


def test_a_wrong_password_is_refused_in_quantrac_status_within_one_cycle_and_the_fix_shows(
        sw: StationWorld, tmp_path: Path) -> None:
    """Files from the last hour wait in the outbox; the agent starts with a password the
    server refuses (530). The cycle is 5 minutes; the first attempt (at start) is refused, and
    ``quantrac status`` says refused and what to fix, text and JSON. The operator corrects the
    password file and reloads (SIGHUP): the same files go, status says connected."""
    link = ftp_link(tmp_path, tls=False, password="not-the-password")
    try:
        cfg = configure(sw, link)
        starts = closed_starts(Clock(), 3)
        with Store(sw.state_dir / "outbox.sqlite") as store:
            for s in starts:
                store.append(window(cfg, s))
        agent = sw.start_agent()
        # the wait is far below one cycle (interval 5 min): startup, then the first attempt
        assert cfg.circular10 is not None and cfg.circular10.interval_minutes * 60 > DEADLINE_S
        wait_for(lambda: (st := agent_status(sw)) is not None
                 and st["stats"]["refusals"] + st["stats"]["upload_failures"] >= 1,
                 DEADLINE_S, f"the first attempt\n{sw.log()[-3000:]}", poll=0.1)
        first = agent_status(sw)
        assert first is not None
        # the first attempt was the refusal: no transient retry before it, nothing dropped
        assert first["state"] == "refused", first
        assert first["fix"] == "check user/password with the province"
        assert (first["stats"]["refusals"], first["stats"]["upload_failures"],
                first["stats"]["files_sent"], first["stats"]["pending"]) == (1, 0, 0, 3)
        assert "530" in first["stats"]["last_error"]

        text = quantrac("status", "--socket", str(sw.socket))
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        [circ] = [ln for ln in lines if ln.startswith("circ10  ")]
        assert circ.startswith("circ10  refused, 0 sent, 3 pending, ftp://127.0.0.1:")
        assert "! circ10 fix: check user/password with the province" in lines
        assert "not-the-password" not in text.stdout + sw.log()
        js = quantrac("status", "--json", "--socket", str(sw.socket))
        assert js.returncode == 0, js.stderr
        c10 = json.loads(js.stdout)["uplink_circular10"]
        assert (c10["state"], c10["fix"]) == ("refused", "check user/password with the province")
        assert "530" in c10["stats"]["last_error"]

        (tmp_path / "ftp.secret").write_text(ftp_server.PASSWORD + "\n")
        agent.send_signal(signal.SIGHUP)  # the reload builds a new uplink: tried at once
        wait_for(lambda: (st := agent_status(sw)) is not None and st["state"] == "connected"
                 and st["stats"]["pending"] == 0, DEADLINE_S,
                 f"connected after the fix\n{sw.log()[-3000:]}", poll=0.1)
        text = quantrac("status", "--socket", str(sw.socket))
        assert text.returncode == 0, text.stderr
        [circ] = [ln for ln in text.stdout.splitlines() if ln.startswith("circ10  ")]
        assert circ.startswith("circ10  connected, ")
        assert not [ln for ln in text.stdout.splitlines() if ln.startswith("! circ10 fix")]
        assert sw.stop_agent(agent) == 0
    finally:
        link.stop()
    # loud (an error, with the fix), and once: the only refusal in this agent's log. That it is
    # retried slowly after (refused_retry_s) is tests/test_uplink_ftp.py's: pyftpdlib answers a
    # bad login after 3 s, so no retry falls in this test's refused spell, tight loop or not
    refused = [ln for ln in sw.log().splitlines() if " event=circular10_refused " in ln]
    assert len(refused) == 1 and " level=error " in refused[0], refused
    assert 'fix="check user/password with the province"' in refused[0]
    on_server = sorted(p.relative_to(link.base).as_posix() for p in link.base.rglob("*.txt"))
    assert set(map(path_of, starts)) <= set(on_server)  # a live window may have closed too
