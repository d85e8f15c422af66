"""The running agent and its outbox's defences: a SIGTERM on a really full filesystem (tmpfs)
keeps every closed record (spilled into the reserve, committed in order at the next start); a
foreign database at the outbox path is refused naming the file; a moved-aside outbox is a
status problem until `quantrac outbox recover` sends it; `config check` says whether the state
dir holds 60 days of records."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from buffer import Store
from protocol.model import RecordFlag
from tests.agent_world import WIDTH, StationWorld, station_world
from tests.mqtt_world import wait_for
from tests.test_buffer_safety import fill, rec, tmpfs

pytestmark = pytest.mark.slow


@pytest.fixture
def sw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StationWorld]:
    yield from station_world(tmp_path, monkeypatch, uplink=False)


def quantrac(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", *args],
                          capture_output=True, text=True, timeout=120)


def records(path: Path) -> list[tuple[int, str, int, int, int]]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            'SELECT seq, channel, start, "end", flags FROM records ORDER BY seq')]
    except sqlite3.Error:
        return []
    finally:
        conn.close()


def use_state_dir(sw: StationWorld, state: Path, extra: str = "") -> None:
    text = sw.config.read_text()
    text = re.sub(r'state_dir = ".*"', f'state_dir = "{state}"', text)
    sw.config.write_text(text.replace("sample_flush_s = 1.0", "sample_flush_s = 1.0" + extra))


def _has_open(pid: int, path: Path) -> bool:
    """True when process ``pid`` holds ``path`` open (its /proc fd links)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        links = [str(fd.readlink()) for fd in fds.iterdir()]
    except OSError:  # the process went, or an fd closed while we looked
        return False
    return str(path.resolve()) in links


def test_sigterm_while_starting_is_an_orderly_stop(sw: StationWorld, tmp_path: Path) -> None:
    """systemd may stop the agent while it is still starting. The test holds the outbox's
    write lock, so the agent cannot finish opening it, and sends SIGTERM once the agent has
    the file open: the agent must stop as it would once started (exit 0, agent_stopped),
    not die by the default action (-15). Failed in a loaded CI run, as a SIGTERM that
    came just after the reserve's records were committed, before the handlers existed."""
    state = tmp_path / "early"
    use_state_dir(sw, state)
    outbox = state / "outbox.sqlite"
    state.mkdir(mode=0o700)
    Store(outbox).close()  # an outbox from an earlier run, as on any restart
    lock = sqlite3.connect(outbox, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        agent = sw.start_agent()
        wait_for(lambda: _has_open(agent.pid, outbox) or agent.poll() is not None, 60,
                 f"the agent to open its outbox\n{sw.log()[-2000:]}", 0.05)
        agent.send_signal(signal.SIGTERM)
    finally:
        lock.close()  # the start goes on, and ends in the stop it was asked for
    assert agent.wait(60) == 0, sw.log()[-3000:]
    log = sw.log()
    assert "event=agent_started" in log and "event=agent_stopped" in log, log[-3000:]


def test_sigterm_on_a_full_disk_keeps_every_closed_record(sw: StationWorld,
                                                          tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "24m") as fs:
        state = fs / "state"
        # raw samples would free room in the file as they are given up; keep them in memory
        use_state_dir(sw, state)
        sw.config.write_text(sw.config.read_text().replace("sample_flush_s = 1.0",
                                                           "sample_flush_s = 100000.0"))
        outbox = state / "outbox.sqlite"
        agent = sw.start_agent()
        wait_for(lambda: len(records(outbox)) >= 16, 120, f"records\n{sw.log()[-2000:]}", 0.2)
        filler = fill(fs)
        wait_for(lambda: "event=store_write_failed" in sw.log(), 180,
                 f"the disk to refuse records\n{sw.log()[-2000:]}", 0.2)
        stored_before = len(records(outbox))
        assert sw.stop_agent(agent) == 0
        log = sw.log()
        spilled = re.search(r"level=error \S+ event=records_spilled_at_stop records=(\d+)", log)
        assert spilled, log[-3000:]
        n = int(spilled.group(1))
        assert n >= 8  # at least the 8 partial windows, and what was held since the refusal
        assert "event=records_lost_at_stop" not in log
        assert re.search(r"level=error \S+ event=agent_stopped .*records_lost=0", log)
        assert len(records(outbox)) == stored_before  # they are not in SQLite yet

        filler.unlink()
        agent = sw.start_agent("agent2.log")
        wait_for(lambda: f"event=spilled_records_committed records={n}" in sw.log("agent2.log"),
                 120, f"the spill committed\n{sw.log('agent2.log')[-2000:]}", 0.2)
        assert sw.stop_agent(agent) == 0
        rows = records(outbox)
        life1 = rows[:stored_before + n]  # the spilled records come right after life 1's own
        partial = [r for r in life1 if r[4] & RecordFlag.PARTIAL]
        assert sorted(r[1] for r in partial) == sorted(
            {"pH", "Temp", "TSS", "COD", "NH4", "TN", "TP", "Flow"})
        for channel in {r[1] for r in life1}:  # every window of life 1, none missing
            starts = [r[2] for r in life1 if r[1] == channel]
            assert starts == list(range(starts[0], starts[0] + WIDTH * len(starts), WIDTH)), \
                channel
        with Store(outbox) as store:
            assert store.spilled() == []


def test_a_foreign_database_at_the_outbox_path_is_refused_naming_it(sw: StationWorld) -> None:
    path = sw.state_dir / "outbox.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, reading REAL)")
    conn.commit()
    conn.close()
    agent = sw.start_agent()
    assert agent.wait(60) == 1
    log = sw.log()
    assert re.search(r"level=error \S+ event=agent_refused reason=.*" + re.escape(str(path)),
                     log), log[-2000:]
    assert "no such column" not in log
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["records"]
    conn.close()


def test_a_moved_aside_outbox_is_a_status_problem_until_recovered(sw: StationWorld) -> None:
    path = sw.state_dir / "outbox.sqlite"
    old = sw.state_dir / "outbox.sqlite.before-repair"
    with Store(old) as store:  # what an operator moved aside: 5 records never sent
        store.append([rec(i) for i in range(5)])
    agent = sw.start_agent()
    wait_for(path.exists, 60, "the live outbox")

    def problem() -> str | None:
        done = quantrac("status", "--socket", str(sw.socket), "--json")
        if done.returncode != 0:
            return "not up"
        import json

        return json.loads(done.stdout)["outbox"]["problem"]  # type: ignore[no-any-return]

    wait_for(lambda: problem() != "not up", 60, "the agent's status")
    text = problem()
    assert text is not None and str(old) in text and "5 unacknowledged" in text
    done = quantrac("outbox", "recover", str(old), "--config", str(sw.config))
    assert done.returncode == 0, done.stderr
    assert "5 record(s) imported" in done.stdout
    assert problem() is None
    assert sw.stop_agent(agent) == 0
    with Store(path) as store:
        assert store.status().unacked >= 5


def test_config_check_says_whether_the_state_dir_holds_60_days(sw: StationWorld,
                                                               tmp_path: Path) -> None:
    done = quantrac("config", "check", str(sw.config))
    assert done.returncode == 0, done.stdout
    assert "60 days of records need" in done.stdout
    with tmpfs(tmp_path / "small", "2m") as small:
        use_state_dir(sw, small / "state")
        done = quantrac("config", "check", str(sw.config))
        assert done.returncode == 1, done.stdout
        assert f"agent.state_dir = '{small / 'state'}'" in done.stdout
        assert "60 days of this station's records" in done.stdout
        assert "Decree 08/2022" in done.stdout
