"""The Circular 10 uplink against a real FTP server (pyftpdlib) on loopback: files delivered into
their dated folders within a deadline, a dead link spools them and delivers each once, oldest
first, never a half file under its final name; a restart sends nothing twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from buffer import Store
from edge_agent.config.model import StationConfig
from edge_agent.config.reader import load_config
from edge_agent.uplinks.circular10 import render as circular10
from edge_agent.uplinks.circular10.settings import Circular10Settings
from edge_agent.uplinks.circular10.uplink import (
    SPOOL_NAME,
    Circular10Uplink,
    circular10_thread,
    part_name,
)
from edge_agent.uplinks.thread import UplinkThread
from protocol.model import Record, RecordFlag, Status
from tests.ftp_server import PASSWORD, USER, FtpServer
from tests.mqtt_world import wait_for
from tests.test_circular10 import STATION

W = 300
DEADLINE_S = 20.0


class Clock:
    """Real time plus an offset the test moves forward (to reach the next cycle at once)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


PREFIX = "HCM_ACME_OUTF1_"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def config(tmp_path: Path, port: int, receiver: str = "", extra: str = "",
           transport: str = "ftp") -> StationConfig:
    (tmp_path / "ftp.secret").write_text(PASSWORD + "\n")
    path = tmp_path / "station.toml"
    path.write_text(STATION + f"""\
[uplink.circular10]
host = "127.0.0.1"
port = {port}
user = "{USER}"
password_file = "ftp.secret"
directory = "/incoming"
{extra}
[uplink.circular10.receiver]
file_prefix = "{PREFIX}"
transport = "{transport}"
{receiver}""")
    return load_config(path)


def window(start: int, ph: float = 7.2) -> list[Record]:
    return [
        Record("pH", start, start + W, ph, ph, ph, 0.0, 30, 30, True, Status.MEASURING, "pH"),
        Record("Temp", start, start + W, float("nan"), float("nan"), float("nan"), float("nan"),
               0, 30, False, Status.OFFLINE, "degC", RecordFlag.NONE),
    ]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[FtpServer, StationConfig, Store, Clock]]:
    home = tmp_path / "ftp"
    (home / "incoming").mkdir(parents=True)
    server = FtpServer(home)
    server.start()
    cfg = config(tmp_path, server.port)
    clock = Clock()
    store = Store(tmp_path / "outbox.sqlite", clock)
    try:
        yield server, cfg, store, clock
    finally:
        store.close()
        server.stop()


def closed_starts(clock: Clock, n: int) -> list[int]:
    """Starts of the last ``n`` windows already closed (end + grace + settle passed)."""
    last = int((clock() - 40) // W) * W - W
    return [last - i * W for i in reversed(range(n))]


def on_server(server: FtpServer) -> list[str]:
    """Every file under the station's base folder, as paths relative to it (dated folders)."""
    base = server.home / "incoming"
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())


def rendered(cfg: StationConfig, start: int, records: list[Record]) -> circular10.Circular10File:
    assert cfg.circular10 is not None
    return circular10.render_file(cfg.circular10.receiver, TZ, start, W, records)


def name_of(start: int) -> str:
    """The file name of the window starting at ``start`` (stamped at its end)."""
    return PREFIX + circular10.local(start + W, TZ).strftime("%Y%m%d%H%M%S") + ".txt"


def path_of(start: int) -> str:
    at = circular10.local(start + W, TZ)
    return f"{at:%Y/%m/%d}/{name_of(start)}"


def part_of(start: int) -> str:
    return part_name(name_of(start))


def runner(cfg: StationConfig, store: Store, clock: Clock) -> UplinkThread[Circular10Uplink]:
    settings = replace(Circular10Settings.from_config(cfg), backoff_base_s=0.05,
                       backoff_cap_s=0.2, timeout_s=5.0)
    return circular10_thread(Circular10Uplink(settings, store, cfg.agent.state_dir / SPOOL_NAME,
                                              clock), idle_s=0.02)


def test_the_uplink_uploads_the_closed_windows(world: tuple[FtpServer, StationConfig, Store,
                                                              Clock]) -> None:
    server, cfg, store, clock = world
    starts = closed_starts(clock, 2)
    for s in starts:
        store.append(window(s))
    run = runner(cfg, store, clock)
    run.start()
    try:
        wait_for(lambda: on_server(server) == [path_of(s) for s in starts], DEADLINE_S,
                 "both files on the server")
    finally:
        run.stop()
    for s in starts:
        got = (server.home / "incoming" / path_of(s)).read_bytes()
        assert got == rendered(cfg, s, window(s)).data
        when = name_of(s)[len(PREFIX):-4]
        assert got.decode() == f"pH\t7.2\tpH\t{when}\t00\r\nTemp\t\toC\t{when}\t02\r\n"
    assert server.journal.stored == [part_of(s) for s in starts]
    assert run.uplink.stats.files_sent == 2 and run.uplink.stats.pending == 0
    assert run.status()["state"] == "stopped"


def test_link_down_spools_then_delivers_each_file_once_oldest_first(
        world: tuple[FtpServer, StationConfig, Store, Clock]) -> None:
    server, cfg, store, clock = world
    first = closed_starts(clock, 1)
    store.append(window(first[0]))
    run = runner(cfg, store, clock)
    run.start()
    try:
        wait_for(lambda: on_server(server) == [path_of(first[0])], DEADLINE_S,
                 "the first file delivered")
        server.stop()  # the link dies
        clock.offset += 3 * W  # three more windows close while it is down
        later = [first[0] + i * W for i in (1, 2, 3)]
        store.append([r for s in later for r in window(s, ph=7.0 + s % 7)])
        up = run.uplink
        wait_for(lambda: up.stats.pending == 3 and up.stats.upload_failures >= 2, DEADLINE_S,
                 "three files spooled, retried on the dead link")
        assert on_server(server) == [path_of(first[0])]
        pending = up.spool.pending_keys()
        assert [up.spool.remote_name(k) for k in pending] == [name_of(s) for s in later]
        server.start()  # the link is back (same port, same directory)
        wait_for(lambda: up.stats.pending == 0, DEADLINE_S, "the spool drained")
    finally:
        run.stop()
    everything = [*first, *later]
    assert on_server(server) == [path_of(s) for s in everything]  # nothing half-written
    # each file stored once under its temp name, then renamed: oldest first, never twice
    assert server.journal.stored == [part_of(s) for s in everything]
    assert server.journal.renamed == [(part_of(s), name_of(s)) for s in everything]
    for s in later:
        assert (server.home / "incoming" / path_of(s)).read_bytes() == \
            rendered(cfg, s, window(s, ph=7.0 + s % 7)).data


def test_a_restart_sends_nothing_twice(world: tuple[FtpServer, StationConfig, Store,
                                                     Clock]) -> None:
    server, cfg, store, clock = world
    starts = closed_starts(clock, 3)
    for s in starts:
        store.append(window(s))
    spool = cfg.agent.state_dir / "circular10"
    settings = replace(Circular10Settings.from_config(cfg), timeout_s=5.0)
    up = Circular10Uplink(settings, store, spool, clock)
    up.step()
    assert on_server(server) == [path_of(s) for s in starts]
    assert len(server.journal.renamed) == 3
    # a restart, twice: the same records are in the store, the spool says they went
    for _ in range(2):
        again = Circular10Uplink(settings, store, spool, clock)
        again.step()
        assert again.stats.files_made == 0 and again.stats.files_sent == 0
    # a crash after the server's rename but before the local move: found there, not resent
    key = up.spool.key(starts[-1], name_of(starts[-1]))
    (spool / "sent" / key).rename(spool / "pending" / key)
    again = Circular10Uplink(settings, store, spool, clock)
    again.step()
    assert again.stats.files_found_on_server == 1 and again.stats.files_sent == 0
    assert again.spool.pending_keys() == []
    assert len(server.journal.renamed) == 3 and len(server.journal.stored) == 3
    # a new window after the restart: exactly one new file
    clock.offset += W
    store.append(window(starts[-1] + W))
    again.render_due(clock())
    again.send_pending()
    assert on_server(server) == [path_of(s) for s in [*starts, starts[-1] + W]]
    assert len(server.journal.stored) == 4


def test_sent_files_are_pruned_after_the_retention(
        world: tuple[FtpServer, StationConfig, Store, Clock]) -> None:
    _server, cfg, store, clock = world
    starts = closed_starts(clock, 2)
    for s in starts:
        store.append(window(s))
    settings = replace(Circular10Settings.from_config(cfg), timeout_s=5.0,
                       retention_s=2 * 86400.0)
    spool = cfg.agent.state_dir / "circular10"
    up = Circular10Uplink(settings, store, spool, clock)
    up.step()
    assert len(list((spool / "sent").iterdir())) == 2
    clock.offset += 2 * 86400.0 + 2 * W  # both windows are now older than the retention
    again = Circular10Uplink(settings, store, spool, clock)
    again.step()
    assert list((spool / "sent").iterdir()) == [] and again.stats.pruned == 2
    assert again.stats.files_made == 0  # the cursor file still says they were made


def test_a_refused_login_is_loud_once_retried_slowly_and_drops_nothing(
        world: tuple[FtpServer, StationConfig, Store, Clock],
        caplog: pytest.LogCaptureFixture) -> None:
    """530 is permanent: state ``refused`` with what to fix after one cycle, one error log
    line, no retry before ``refused_retry_s``; the file waits and goes once the password is
    right (a config change builds a new uplink over the same spool)."""
    server, cfg, store, clock = world
    (s,) = closed_starts(clock, 1)
    store.append(window(s))
    settings = replace(Circular10Settings.from_config(cfg), timeout_s=5.0,
                       password="wrong-" + PASSWORD)
    spool = cfg.agent.state_dir / "circular10"
    up = Circular10Uplink(settings, store, spool, clock)
    with caplog.at_level("DEBUG", logger="quantrac"):
        up.step()
        status = up.status()
        assert status["state"] == "refused"
        assert status["fix"] == "check user/password with the province"
        assert "530" in status["stats"]["last_error"]
        for _ in range(20):  # many turns of the thread, less than refused_retry_s apart
            clock.offset += settings.refused_retry_s / 40
            up.step()
        assert up.stats.refusals == 1 and up.stats.pending == 1
        clock.offset += settings.refused_retry_s  # the slow retry: refused again, quietly
        up.step()
        assert up.stats.refusals == 2
    errors = [r for r in caplog.records if r.getMessage() == "circular10_refused"
              and r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].__dict__["fix"] == status["fix"]
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert PASSWORD not in text
    assert on_server(server) == []
    fixed = Circular10Uplink(replace(settings, password=PASSWORD), store, spool, clock)
    fixed.step()
    assert on_server(server) == [path_of(s)] and fixed.status()["state"] == "connected"


def test_a_window_stored_twice_is_rendered_from_its_first_record(
        world: tuple[FtpServer, StationConfig, Store, Clock]) -> None:
    # After a clock step back the outbox holds a second record of a stored window: invalid,
    # CLOCK_JUMP (edge_agent.core.pipeline). The legal file reports the first one, which counts;
    # the second would turn a valid window into "02 instrument fault".
    server, cfg, store, clock = world
    (s,) = closed_starts(clock, 1)
    store.append(window(s))
    again = Record("pH", s, s + W, 3.0, 3.0, 3.0, 0.0, 30, 30, False, Status.MEASURING, "pH",
                   RecordFlag.CLOCK_JUMP)
    store.append([again])
    run = runner(cfg, store, clock)
    run.start()
    try:
        wait_for(lambda: on_server(server) == [path_of(s)], DEADLINE_S, "the file on the server")
    finally:
        run.stop()
    got = (server.home / "incoming" / path_of(s)).read_bytes()
    assert got == rendered(cfg, s, window(s)).data
