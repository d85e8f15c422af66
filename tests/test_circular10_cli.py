"""quantrac circular10 list / show / resend: the real command, as a subprocess, over a spool the
real uplink made against pyftpdlib. ``list`` shows every file oldest first with its dated folder,
state and size and what waits, in 80 columns; ``show`` reads a spool file or any copied file
back as a table with its check, escaping what it shows; ``resend`` queues a period again (not
doubled), the uplink delivers it again (even over a server copy of the same size), paced, and
the receiver emulation ingests it; without --yes and a terminal it refuses and queues nothing."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from buffer import Store
from edge_agent.config.model import StationConfig
from edge_agent.uplinks.circular10.settings import Circular10Settings
from edge_agent.uplinks.circular10.uplink import SPOOL_NAME, Circular10Uplink, Spool
from tests.ftp_server import UPLOAD_ONLY, FtpServer
from tests.mqtt_world import wait_for
from tests.receiver_emulation import Receiver
from tests.test_uplink_ftp import (
    PREFIX,
    TZ,
    Clock,
    W,
    closed_starts,
    config,
    name_of,
    on_server,
    path_of,
    window,
)

DEADLINE_S = 20.0


@dataclass
class World:
    server: FtpServer
    cfg: StationConfig
    store: Store
    clock: Clock
    starts: list[int]  # uploaded
    station: Path  # the config file

    @property
    def spool(self) -> Spool:
        return Spool(self.cfg.agent.state_dir / SPOOL_NAME, tidy=False)

    def uplink(self) -> Circular10Uplink:
        settings = replace(Circular10Settings.from_config(self.cfg), timeout_s=5.0)
        return Circular10Uplink(settings, self.store, self.cfg.agent.state_dir / SPOOL_NAME,
                                self.clock)


def make_world(tmp_path: Path, n: int = 6, receiver: str = "", perm: str = "elradfmw"
               ) -> World:
    home = tmp_path / "ftp"
    (home / "incoming").mkdir(parents=True)
    server = FtpServer(home, perm=perm)
    server.start()
    cfg = config(tmp_path, server.port, receiver=receiver)
    cfg.agent.state_dir.mkdir(parents=True)
    clock = Clock()
    store = Store(cfg.agent.state_dir / "outbox.sqlite", clock)
    starts = closed_starts(clock, n)
    for k, s in enumerate(starts):
        store.append(window(s, ph=7.0 + k / 8))
    w = World(server, cfg, store, clock, starts, tmp_path / "station.toml")
    up = w.uplink()
    up.render_due(clock())
    # paced (files_per_minute): one file a call
    assert sum(up.send_pending() for _ in range(n)) == n
    # (an upload-only account keeps the temp file of the first, refused rename: ignorable)
    assert [p for p in on_server(server) if "/." not in p] == [path_of(s) for s in starts]
    return w


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path)
    try:
        yield w
    finally:
        w.store.close()
        w.server.stop()


def quantrac(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command; stdin is not a terminal (as under a script or a test)."""
    return subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "circular10", *args],
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def local(t: int, fmt: str = "%Y-%m-%dT%H:%M") -> str:
    return dt.datetime.fromtimestamp(t, TZ).strftime(fmt)


# --- list ----------------------------------------------------------------------------------
def test_list_shows_the_spool_oldest_first_with_folder_state_size_and_what_waits(
        world: World) -> None:
    w = world
    # two more windows close while the server is away: they wait in pending/
    w.server.stop()
    later = [w.starts[-1] + W, w.starts[-1] + 2 * W]
    for s in later:
        w.store.append(window(s))
    w.clock.offset += 2 * W
    up = w.uplink()
    assert up.render_due(w.clock()) == 2
    got = quantrac("list", "--config", str(w.station))
    assert got.returncode == 0 and got.stderr == "", got.stderr
    out = got.stdout.splitlines()
    # every line but the spool's path (as long as the test's temp dir) fits 80 columns
    assert all(len(line) <= 80 for line in out[1:]), [x for x in out if len(x) > 80]
    rows = [x for x in out if PREFIX in x]
    assert [x.split()[1] for x in rows] == [name_of(s) for s in [*w.starts, *later]]
    for s, row in zip([*w.starts, *later], rows, strict=True):
        span = f"{local(s, '%H:%M')}-{local(s + W, '%H:%M')}"
        assert row.split()[0] == span
        data = (w.spool.sent / Spool.key(s, name_of(s))) if s in w.starts else \
            (w.spool.pending / Spool.key(s, name_of(s)))
        assert row.split()[-2:] == [str(len(data.read_bytes())), "2"]
        assert ("sent " in row) == (s in w.starts) and ("pending" in row) == (s in later)
    # the dated folder as on the server, once per day
    day = local(w.starts[0] + W, "%Y/%m/%d")
    assert f"/incoming/{day}/" in got.stdout
    summary = [x for x in out if x.startswith("2 pending")]
    assert summary and f"(window {local(later[0], '%Y-%m-%d %H:%M')})" in summary[0]
    assert "; 6 sent" in summary[0]
    assert "upload: rename" in got.stdout
    # the filters: pending only; a period
    pending = quantrac("list", "--config", str(w.station), "--pending").stdout
    assert [x.split()[1] for x in pending.splitlines() if PREFIX in x] == \
        [name_of(s) for s in later]
    some = quantrac("list", "--config", str(w.station), "--sent", "--from", local(w.starts[2]),
                    "--to", local(w.starts[4])).stdout
    assert [x.split()[1] for x in some.splitlines() if PREFIX in x] == \
        [name_of(s) for s in w.starts[2:4]]
    assert "(2 listed)" in some


def test_list_says_the_upload_mode_remembered_after_a_refused_rename(tmp_path: Path) -> None:
    w = make_world(tmp_path, n=2, perm=UPLOAD_ONLY)
    try:
        got = quantrac("list", "--config", str(w.station))
    finally:
        w.store.close()
        w.server.stop()
    assert got.returncode == 0, got.stderr
    line = next(x for x in got.stdout.splitlines() if x.startswith("upload:"))
    assert line.startswith("upload: direct, remembered for ftp://station1@127.0.0.1:")
    assert "refused a rename" in line and "0 pending; 2 sent" in got.stdout


def test_list_without_a_spool_names_the_state_dir(tmp_path: Path) -> None:
    config(tmp_path, 2121)
    got = quantrac("list", "--config", str(tmp_path / "station.toml"))
    assert got.returncode == 1 and got.stdout == ""
    assert got.stderr.startswith("quantrac circular10: error: ")
    assert f"{tmp_path / 'state' / SPOOL_NAME}: no Circular 10 spool there" in got.stderr


# --- show ----------------------------------------------------------------------------------
def test_show_a_spool_file_by_its_name_on_the_server(world: World) -> None:
    s = world.starts[1]
    got = quantrac("show", name_of(s), "--config", str(world.station))
    assert got.returncode == 0, got.stdout + got.stderr
    out = got.stdout.splitlines()
    assert out[0].startswith(f"{name_of(s)}: sent ")
    assert out[0].endswith(f"on the server /incoming/{path_of(s)}")
    assert out[1] == f"time in the name: {local(s + W, '%Y-%m-%d %H:%M:%S')} (station time)"
    stamp = local(s + W, "%Y%m%d%H%M%S")
    table = [x.split() for x in out[2:5]]
    assert table[0] == ["symbol", "value", "unit", "time", "status"]
    assert table[1] == ["pH", "7.125", "pH", stamp, "00", "measuring"]
    assert table[2] == ["Temp", "oC", stamp, "02", "fault/offline"]  # no value, offline
    assert out[-1] == "check: ok: 2 line(s) of 5 TAB fields, each with the name's time; " \
        "ASCII, CR LF line ends"
    # the spool key finds the same file
    key = Spool.key(s, name_of(s))
    assert quantrac("show", key, "--config", str(world.station)).stdout == got.stdout


def test_show_a_copied_file_escapes_it_and_names_each_problem(tmp_path: Path) -> None:
    bad = tmp_path / f"{PREFIX}20261123073500.txt"
    bad.write_bytes(b"pH\t7.1\t\t20261123073500\t00\r\n"
                    b"COD\x1b[2J\t41\tmg/L\t20261123073000\t00\r\n"
                    b"TSS\t12\tmg/L\t20261123073500\r\n"
                    b"NH4\t1e-05\tmg/L\t20261123073500\t03\r\n")
    got = quantrac("show", str(bad))
    assert got.returncode == 1, got.stdout + got.stderr
    assert "\x1b" not in got.stdout and "COD\\x1b[2J" in got.stdout
    problems = [x for x in got.stdout.splitlines() if x.startswith("problem: ")]
    assert problems == [
        "problem: line 2: time 20261123073000 is not the name's 20261123073500",
        "problem: line 3: 4 TAB field(s), not 5",
        "problem: line 4: status 03 is not 00, 01 or 02",
        "problem: line 4: value 1e-05 is not a plain number nor a no-value placeholder",
    ]
    assert got.stdout.splitlines()[-1] == \
        "check: 4 problem(s): a receiver refuses or misreads this file"


def test_show_an_unknown_name_says_what_to_give(world: World) -> None:
    got = quantrac("show", f"{PREFIX}19990101000000.txt", "--config", str(world.station))
    assert got.returncode == 1 and got.stdout == ""
    assert f"{PREFIX}19990101000000.txt: no such file here, and no file of that name" \
        in got.stderr and "give the name on the server" in got.stderr


# --- resend --------------------------------------------------------------------------------
def test_resend_is_delivered_again_not_doubled_and_ingested(world: World) -> None:
    w = world
    base = w.server.home / "incoming"
    first = {p: (base / p).read_bytes() for p in on_server(w.server)}
    again = w.starts[1:4]
    # the province lost them: two deleted from its folder, one still there (same size)
    for s in again[:2]:
        (base / path_of(s)).unlink()
    cursor = w.spool.cursor()
    renamed_before = len(w.server.journal.renamed)
    period = ("--from", local(again[0]), "--to", local(again[-1] + W))
    got = quantrac("resend", "--config", str(w.station), *period, "--yes")
    assert got.returncode == 0, got.stdout + got.stderr
    assert "3 file(s) to queue" in got.stdout
    assert "queued 3 file(s)" in got.stdout and "next cycle" in got.stdout
    assert w.spool.pending_keys() == [Spool.key(s, name_of(s)) for s in again]
    assert w.spool.cursor() == cursor  # nothing else is made again
    # asked twice: not doubled
    twice = quantrac("resend", "--config", str(w.station), *period, "--yes")
    assert twice.returncode == 0 and "3 already pending" in twice.stdout
    assert "nothing queued" in twice.stdout
    assert len(w.spool.pending_keys()) == 3
    # the uplink sends them, the one the server still had included (a resend is explicit)
    up = w.uplink()
    up.step()
    wait_for(lambda: not w.spool.pending_keys(), DEADLINE_S, "the resent files delivered")
    assert on_server(w.server) == [path_of(s) for s in w.starts]
    assert {p: (base / p).read_bytes() for p in on_server(w.server)} == first  # byte-identical
    # delivered again, oldest first, the kept one too (stored under its temp name, renamed)
    assert [to for _, to in w.server.journal.renamed[renamed_before:]] == \
        [name_of(s) for s in again]
    assert up.stats.files_found_on_server == 0 and up.stats.files_sent == 3
    assert not any(w.spool.resend.iterdir())  # markers gone with the files
    assert w.spool.cursor() == cursor
    scan = Receiver(base, PREFIX).scan()
    assert scan.refused == {} and scan.names == [name_of(s) for s in w.starts]


def test_resent_files_are_paced_for_a_newest_only_receiver(tmp_path: Path) -> None:
    w = make_world(tmp_path, n=3, receiver="files_per_minute = 2")
    try:
        period = ("--from", local(w.starts[0]), "--to", local(w.starts[-1] + W))
        got = quantrac("resend", "--config", str(w.station), *period, "--yes")
        assert got.returncode == 0, got.stderr
        assert "2 file(s) a minute (receiver.files_per_minute)" in got.stdout
        up = w.uplink()
        assert up.send_pending() == 1  # one file, then the pause: every file is still there
        assert up._next_attempt >= w.clock() + 29.0
        assert len(w.spool.pending_keys()) == 2
    finally:
        w.store.close()
        w.server.stop()


def test_resend_asks_and_without_a_terminal_refuses_and_queues_nothing(world: World) -> None:
    period = ("--from", local(world.starts[0]), "--to", local(world.starts[-1] + W))
    got = quantrac("resend", "--config", str(world.station), *period)
    assert got.returncode == 1
    assert "6 file(s) to queue" in got.stdout  # what it would do, shown before asking
    assert "no terminal to ask on" in got.stderr and "--yes" in got.stderr
    assert f"resend {local(world.starts[0], '%Y-%m-%d %H:%M')}" in got.stderr
    assert world.spool.pending_keys() == []
    # a period without windows, and a reversed one, are refused by name
    empty = quantrac("resend", "--config", str(world.station), "--from", "2020-01-01",
                     "--to", "2020-01-02", "--yes")
    assert empty.returncode == 1 and "2020-01-01 00:00 .. 2020-01-03 00:00" in empty.stderr
    assert "nothing to send again" in empty.stderr
    reverse = quantrac("resend", "--config", str(world.station), "--from", "2020-01-02",
                       "--to", "2020-01-01", "--yes")
    assert reverse.returncode == 1 and "--to '2020-01-01' is not after" in reverse.stderr
