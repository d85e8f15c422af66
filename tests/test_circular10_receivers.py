"""What the uplink uploads to a real FTP/FTPS server (pyftpdlib), read by an emulation of the
receivers in service (tests/receiver_emulation.py): dated folders only, the issued prefix, name
time == line time, exactly 5 TAB (or whitespace) fields, ASCII units, instrument status, a
newest-file-only receiver, upload-only accounts, refusals, and a 24 h outage drained oldest
first, each file exactly once, also when the draining process is SIGKILLed at random moments."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from buffer import Store
from edge_agent.config.model import StationConfig
from edge_agent.console import status_view
from edge_agent.uplinks.circular10.settings import Circular10Settings
from edge_agent.uplinks.circular10.uplink import Circular10Uplink, part_name
from protocol.model import Record, RecordFlag, Status
from tests.ftp_server import NO_MKDIR, UPLOAD_ONLY, FtpServer, make_tls
from tests.mqtt_world import wait_for
from tests.receiver_emulation import NewestOnlyReceiver, Receiver
from tests.test_uplink_ftp import PREFIX, Clock, W, closed_starts, config, name_of, path_of

ROOT = Path(__file__).resolve().parents[1]


def records(start: int, ph: float = 7.2) -> list[Record]:
    """A window as stations make them: pH without unit, a display unit with a degree sign, a
    window below the coverage rule (the analyser measured), an analyser that did not answer."""
    def r(ch: str, mean: float, unit: str, valid: bool = True,
          status: Status = Status.MEASURING) -> Record:
        return Record(ch, start, start + W, mean, mean, mean, 0.0, 30 if valid else 12, 30,
                      valid, status, unit, RecordFlag.NONE)
    return [r("pH", ph, ""), r("Temp", 26.5, "°C"), r("COD", 41.0, "mg/L", valid=False),
            r("TSS", math.nan, "mg/L", False, Status.OFFLINE)]


def make_server(tmp_path: Path, **kw: object) -> FtpServer:
    home = tmp_path / "ftp"
    (home / "incoming").mkdir(parents=True, exist_ok=True)
    server = FtpServer(home, **kw)  # type: ignore[arg-type]
    server.start()
    return server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "outbox.sqlite", Clock())
    try:
        yield s
    finally:
        s.close()


def uplink(cfg: StationConfig, store: Store, clock: Clock, **kw: object) -> Circular10Uplink:
    settings = replace(Circular10Settings.from_config(cfg), timeout_s=5.0, backoff_base_s=0.01,
                       backoff_cap_s=0.05, **kw)  # type: ignore[arg-type]
    return Circular10Uplink(settings, store, cfg.agent.state_dir / "circular10", clock)


def stepped(up: Circular10Uplink) -> bool:
    """One turn of the uplink's thread, as a wait_for condition's first half."""
    up.step()
    return True


def receiver(server: FtpServer, layout: str = "ymd", split: str = "tab") -> Receiver:
    return Receiver(server.home / "incoming", PREFIX, layout=layout, split=split)


# --------------------------------------------------------------------------- the file itself


def test_a_dated_folder_receiver_ingests_every_file_with_five_tab_fields(
        tmp_path: Path, store: Store) -> None:
    server = make_server(tmp_path)
    clock = Clock()
    try:
        cfg = config(tmp_path, server.port)
        starts = closed_starts(clock, 3)
        for s in starts:
            store.append(records(s))
        up = uplink(cfg, store, clock)
        up.step()
    finally:
        server.stop()
    scan = receiver(server).scan()
    # nothing in the base folder, no temp file left
    assert scan.refused == {} and scan.unseen == [] and scan.ignored == []
    assert scan.names == [name_of(s) for s in starts]
    for reading, s in zip(scan.ingested, starts, strict=True):
        # the name's time is the window's end (when the mean exists), in UTC+7
        assert reading.time == name_of(s)[len(PREFIX):-4]
        assert reading.lines == [
            ["pH", "7.2", "", reading.time, "00"],
            ["Temp", "26.5", "oC", reading.time, "00"],  # ASCII unit
            ["COD", "41", "mg/L", reading.time, "00"],  # low coverage is not a device fault
            ["TSS", "", "mg/L", reading.time, "02"],  # the analyser did not answer
        ]


def test_a_whitespace_splitting_receiver_gets_five_columns_with_its_profile(
        tmp_path: Path, store: Store) -> None:
    server = make_server(tmp_path)
    clock = Clock()
    try:
        cfg = config(tmp_path, server.port, receiver='fields = "whitespace"\n'
                     'missing_value = "---"\nempty_unit = "-"\nremote_dir = "/{yyyyMMdd}"\n')
        (s,) = closed_starts(clock, 1)
        store.append(records(s))
        uplink(cfg, store, clock).step()
    finally:
        server.stop()
    scan = receiver(server, split="whitespace", layout="flat").scan()
    assert scan.refused == {} and scan.names == [name_of(s)]
    assert [f[:3] for f in scan.ingested[0].lines] == [
        ["pH", "7.2", "-"], ["Temp", "26.5", "oC"], ["COD", "41", "mg/L"],
        ["TSS", "---", "mg/L"]]


def test_a_two_part_issued_prefix_is_written_verbatim(tmp_path: Path, store: Store) -> None:
    server = make_server(tmp_path)
    clock = Clock()
    try:
        cfg = config(tmp_path, server.port)
        (tmp_path / "station.toml").write_text((tmp_path / "station.toml").read_text().replace(
            PREFIX, "LSOS_KHIKHO_"))
        from edge_agent.config.reader import load_config

        cfg = load_config(tmp_path / "station.toml")
        (s,) = closed_starts(clock, 1)
        store.append(records(s))
        uplink(cfg, store, clock).step()
    finally:
        server.stop()
    scan = Receiver(server.home / "incoming", "LSOS_KHIKHO_").scan()
    assert scan.refused == {} and scan.names == ["LSOS_KHIKHO_" + name_of(s)[len(PREFIX):]]


# --------------------------------------------------------------------------- how files go


def test_a_newest_file_only_receiver_loses_nothing_with_pacing(
        tmp_path: Path, store: Store) -> None:
    """A receiver that reads only the newest file and deletes the rest: the backlog is paced to
    one file per scan period or slower, so every file is the newest when a scan comes."""
    server = make_server(tmp_path)
    clock = Clock()
    newest = NewestOnlyReceiver(receiver(server), period_s=0.1)
    try:
        cfg = config(tmp_path, server.port, receiver="files_per_minute = 150\n")  # one per 0.4 s
        starts = closed_starts(clock, 5)
        for s in starts:
            store.append(records(s))
        up = uplink(cfg, store, clock)
        newest.start()
        wait_for(lambda: stepped(up) and up.stats.files_made == 5 and up.stats.pending == 0,
                 60, "the paced backlog sent", poll=0.01)
        newest.stop()
    finally:
        server.stop()
    assert newest.ingested == [name_of(s) for s in starts]
    assert newest.deleted == [name_of(s) for s in starts[:-1]]


def test_an_upload_only_account_gets_direct_stores_after_the_first_refused_rename(
        tmp_path: Path, store: Store) -> None:
    server = make_server(tmp_path, perm=UPLOAD_ONLY)
    clock = Clock()
    try:
        cfg = config(tmp_path, server.port)
        starts = closed_starts(clock, 3)
        for s in starts:
            store.append(records(s))
        up = uplink(cfg, store, clock)
        up.step()
        assert up.status()["upload"] == "direct" and up.stats.files_sent == 3
        # a restart remembers: the next file goes directly, no new temp file
        clock.offset += W
        store.append(records(starts[-1] + W))
        again = uplink(cfg, store, clock)
        assert again.direct
        again.step()
    finally:
        server.stop()
    first = starts[0]
    everything = [*starts, starts[-1] + W]
    assert server.journal.stored == [part_name(name_of(first)), *map(name_of, everything)]
    assert server.journal.renamed == []
    scan = receiver(server).scan()
    assert scan.refused == {} and scan.names == [name_of(s) for s in everything]
    # the one temp file the refused rename left (the account may not delete either) is not
    # a file any receiver takes: not <prefix>*.txt, not *.txt
    assert scan.unseen == []
    assert scan.ignored == [path_of(first).rsplit("/", 1)[0] + "/" + part_name(name_of(first))]
    assert not part_name(name_of(first)).endswith(".txt")


@pytest.mark.parametrize(("perm", "password", "fix"), [
    (None, "wrong", "check user/password with the province"),
    (NO_MKDIR, None, "ask the province to create /incoming/{y} or to allow this account to make "
                     "folders (or fix directory/remote_dir)"),
], ids=["530-login", "550-mkd"])
def test_a_permanent_refusal_is_shown_by_status_within_one_cycle(
        tmp_path: Path, store: Store, perm: str | None, password: str | None, fix: str) -> None:
    server = make_server(tmp_path, **({"perm": perm} if perm else {}))
    clock = Clock()
    try:
        cfg = config(tmp_path, server.port)
        (s,) = closed_starts(clock, 1)
        store.append(records(s))
        up = uplink(cfg, store, clock, **({"password": password} if password else {}))
        up.step()  # one cycle
        status = up.status()
    finally:
        server.stop()
    year = path_of(s).split("/")[0]
    assert status["state"] == "refused" and status["fix"] == fix.format(y=year)
    lines = status_view.render({"started": 0.0, "uplink": {"state": "waiting"},
                                "uplink_circular10": status}, 1.0)
    at = next(i for i, ln in enumerate(lines) if ln.startswith("! circ10 fix: "))
    # the fix wraps to 80 columns, whole (issue 16: the actionable part is never cut)
    assert " ".join(ln.strip() for ln in lines[at:]) == f"! circ10 fix: {fix.format(y=year)}"
    assert all(len(ln) <= 80 for ln in lines)
    assert up.stats.pending == 1  # nothing dropped


# --------------------------------------------------------------------------- 24 h outage

DAY = 288  # 5-minute files in 24 h


def outage(tmp_path: Path, store: Store, server: FtpServer, cfg: StationConfig,
           clock: Clock) -> tuple[list[int], Circular10Uplink]:
    """The uplink runs, the link dies for 24 h while 288 windows close, then it comes back:
    all 288 are in the spool, rendered while the server was away."""
    (first,) = closed_starts(clock, 1)
    store.append(records(first))
    up = uplink(cfg, store, clock)
    up.step()
    assert up.stats.files_sent == 1
    server.stop()
    clock.offset += DAY * W
    starts = [first + i * W for i in range(1, DAY + 1)]
    for s in starts:
        store.append(records(s, ph=6.0 + (s // W) % 30 / 10))
    up.render_due(clock())
    up.send_pending()  # the link is down: backed off, kept
    assert up.stats.pending == DAY and up.link_up is False
    server.start()
    return [first, *starts], up


def assert_each_once_oldest_first(server: FtpServer, starts: list[int]) -> None:
    scan = receiver(server).scan()
    assert scan.refused == {} and scan.unseen == []
    assert scan.names == [name_of(s) for s in starts]  # every file, in its dated folder
    base = server.home / "incoming"
    assert sorted(p.relative_to(base).as_posix() for p in base.rglob("*.txt")) == \
        sorted(map(path_of, starts))
    finals = [dst for _src, dst in server.journal.renamed]
    assert finals == [name_of(s) for s in starts]  # oldest first, each exactly once


@pytest.mark.parametrize("transport", ["ftp", "ftps"])
def test_a_24h_outage_delivers_every_file_once_oldest_first(
        tmp_path: Path, store: Store, transport: str) -> None:
    tls = make_tls(tmp_path / "tls") if transport == "ftps" else None
    server = make_server(tmp_path, tls=tls)
    clock = Clock()
    try:
        cfg = config(tmp_path, server.port, transport=transport,
                     extra='ca_file = "tls/ca.crt"' if tls else "")
        starts, up = outage(tmp_path, store, server, cfg, clock)
        wait_for(lambda: stepped(up) and up.stats.pending == 0, 120, "the backlog drained")
    finally:
        server.stop()
    assert_each_once_oldest_first(server, starts)
    # the files crossed midnight: more than one dated folder
    assert len({path_of(s).rsplit("/", 1)[0] for s in starts}) >= 2


DRAIN = """
import sys, time
from dataclasses import replace
from pathlib import Path
from buffer import Store
from edge_agent.config.reader import load_config
from edge_agent.uplinks.circular10.settings import Circular10Settings
from edge_agent.uplinks.circular10.uplink import Circular10Uplink
cfg = load_config(sys.argv[1])
offset = float(sys.argv[2])
clock = lambda: time.time() + offset
store = Store(Path(sys.argv[3]), clock)
settings = replace(Circular10Settings.from_config(cfg), timeout_s=5.0, backoff_base_s=0.01,
                   backoff_cap_s=0.05)
up = Circular10Uplink(settings, store, cfg.agent.state_dir / "circular10", clock)
while True:
    up.step()
    if not up.stats.pending:
        print("drained", flush=True)
        time.sleep(60)
"""


@pytest.mark.slow
def test_sigkill_during_the_drain_loses_and_duplicates_nothing(
        tmp_path: Path, store: Store) -> None:
    server = make_server(tmp_path)
    clock = Clock()
    rng = random.Random(13)
    kills = 0
    try:
        cfg = config(tmp_path, server.port)
        starts, up = outage(tmp_path, store, server, cfg, clock)
        pending = up.spool.pending
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        while True:
            before = len(list(pending.iterdir()))
            proc = subprocess.Popen([sys.executable, "-c", DRAIN, str(tmp_path / "station.toml"),
                                     str(clock.offset), str(tmp_path / "outbox.sqlite")],
                                    stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
            # kill after a random number of further deliveries (or at once)
            target = rng.randrange(0, 25)
            try:
                def progressed(proc: subprocess.Popen[str] = proc, left: int = before - target
                               ) -> bool:
                    return (len(server.journal.renamed) >= len(starts) or proc.poll() is not None
                            or len(list(pending.iterdir())) <= max(0, left))
                wait_for(progressed, 120, "the drain to make progress", poll=0.001)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                assert proc.stdout is not None
                proc.stdout.close()
            kills += 1
            if not list(pending.iterdir()):
                break
            assert kills < 200
    finally:
        server.stop()
    assert kills >= 5
    scan = receiver(server).scan()
    assert scan.refused == {} and scan.names == [name_of(s) for s in starts]
    # each file became its final name exactly once (a re-stored temp file is no duplicate:
    # receivers never read it); any temp file left by a kill is gone or ignorable
    finals = Counter(dst for _src, dst in server.journal.renamed)
    assert finals == Counter(name_of(s) for s in starts)
    assert scan.unseen == []
    assert all(p.rsplit("/", 1)[-1].startswith(".") for p in scan.ignored)
