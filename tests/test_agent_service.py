"""The agent as a service: sd_notify over a real notify socket (READY after the first poll
cycle, WATCHDOG from the loop, STATUS, STOPPING), SIGHUP reloads or refuses, `quantrac status`
over the control socket in 80 columns and JSON, `diag read` through the running agent, a second
agent refused, and a station without an uplink still averaging and storing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.console.control_client import request
from tests.agent_world import StationWorld, station_world
from tests.mqtt_world import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def sw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StationWorld]:
    yield from station_world(tmp_path, monkeypatch, uplink=False)


def quantrac(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_notify_socket_gets_ready_watchdog_status_and_stopping(sw: StationWorld,
                                                               tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(30)
        agent = sw.start_agent(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1500000"})
        got: list[str] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and got.count("WATCHDOG=1") < 4:
            got += server.recv(4096).decode().split("\n")
        ready = got.index("READY=1")
        assert got[ready + 1].startswith("STATUS=4/4 devices ok, backlog ")
        assert got.count("WATCHDOG=1") >= 4  # every 0.5 s, from the event loop
        assert any(m.startswith("STATUS=") for m in got)
        # READY only once every device was polled: the agent says so in its log too
        assert "event=agent_ready devices=4" in sw.log()
        agent.terminate()
        while "STOPPING=1" not in got:
            got += server.recv(4096).decode().split("\n")
        assert agent.wait(30) == 0


def test_status_text_fits_80_columns_and_json_is_complete(sw: StationWorld) -> None:
    agent = sw.start_agent()
    wait_for(lambda: sw.socket.exists() and request(sw.socket, {"op": "status"})["status"]
             ["ready"], 30, "the agent to be ready")
    wait_for(lambda: request(sw.socket, {"op": "status"})["status"]["outbox"]["last_seq"] > 0,
             30, "a first record")
    text = quantrac("status", "--config", str(sw.config))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].startswith("station HCM-AGT-01 ")
    assert any(line.startswith("clock   NOT synchronised") or
               line.startswith("clock   synchronised") for line in lines)
    for name in ("liquiline", "hach", "cabinet", "flow"):
        assert any(line[1:].startswith(name) for line in lines), name
    assert any(line.startswith("COD ") and "measuring" in line for line in lines)
    assert any(line.startswith("outbox  ") and "unacked" in line for line in lines)
    assert "uplink  none" in text.stdout
    js = json.loads(quantrac("status", "--socket", str(sw.socket), "--json").stdout)
    assert {d["device"] for d in js["devices"]} == {"liquiline", "hach", "cabinet", "flow"}
    assert js["outbox"]["oldest_unacked_seq"] == 1
    assert js["clock"]["synchronised"] in (True, False)
    assert sw.stop_agent(agent) == 0
    gone = quantrac("status", "--socket", str(sw.socket))
    assert gone.returncode == 1 and "no control socket" in gone.stderr


def test_diag_read_goes_through_the_running_agent(sw: StationWorld) -> None:
    agent = sw.start_agent()
    wait_for(lambda: sw.socket.exists(), 30, "the control socket")
    assert oct(sw.socket.stat().st_mode & 0o777) == "0o660"
    # the agent holds the serial port (exclusive): the read runs on its bus, between its polls
    answer = request(sw.socket, {"op": "read", "bus": "rs485", "unit": 2, "function": 3,
                                 "address": 0, "count": 4})
    assert answer["ok"], answer
    assert len(answer["words"]) == 4
    served = sw.station.served_before(2, "COD", time.time())
    assert served.image[(3, 0)] in range(65536)
    bad = request(sw.socket, {"op": "read", "bus": "nope", "unit": 2, "address": 0})
    assert not bad["ok"] and "no bus 'nope'" in bad["error"]
    silent = request(sw.socket, {"op": "read", "bus": "rs485", "unit": 9, "address": 0,
                                 "timeout": 0.2})
    assert not silent["ok"]
    assert "event=diag_read_via_agent bus=rs485 unit=2" in sw.log()
    # the technician's command: explicit socket, then found by itself from the state dir
    assert sw.sim.pty_path is not None
    cli = quantrac("diag", "read", "--agent", str(sw.socket), "--port", sw.sim.pty_path,
                   "--unit", "2", "--register", "0", "--count", "4", "--type", "float32",
                   "--word-order", "little")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.startswith("unit 2 function 03 registers 0..3, read by the running "
                                 "agent on bus rs485\n")
    auto = subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "diag", "read", "--bus",
                           "rs485", "--unit", "2", "--register", "0", "--count", "2"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "QUANTRAC_STATE_DIR": str(sw.state_dir)})
    assert auto.returncode == 0 and "running agent" in auto.stdout, auto.stdout + auto.stderr
    # a second agent on the same state dir is refused, the first one is undisturbed
    second = sw.start_agent(log_name="agent-2.log")
    assert second.wait(30) == 1
    assert "event=agent_refused" in sw.log("agent-2.log")
    assert request(sw.socket, {"op": "ping"}) == {"ok": True}
    assert sw.stop_agent(agent) == 0


def test_a_second_agent_beside_one_that_does_not_answer_is_refused(sw: StationWorld) -> None:
    """A busy agent answers its control socket late; a second agent on its state dir must
    still be refused, not take the socket (and the outbox) as a killed agent's leftovers.
    The first agent is SIGSTOPped, so it answers nothing at all: the ping's timeout passed
    and the second started beside it, before the state dir's lock (seen under load)."""
    first = sw.start_agent()
    wait_for(lambda: "event=agent_ready" in sw.log(), 60, "the agent to be ready")
    first.send_signal(signal.SIGSTOP)
    try:
        second = sw.start_agent(log_name="agent-2.log")
        assert second.wait(60) == 1, sw.log("agent-2.log")[-2000:]
    finally:
        first.send_signal(signal.SIGCONT)
    said = sw.log("agent-2.log")
    assert "event=agent_refused" in said and f"agent.lock: another agent is already running " \
        f"on this state dir (pid {first.pid})" in said, said
    assert "control_listening" not in said
    assert request(sw.socket, {"op": "ping"}) == {"ok": True}, "the first keeps its socket"
    assert sw.stop_agent(first) == 0
    # the lock went with the agent: the next start is not refused
    third = sw.start_agent(log_name="agent-3.log")
    wait_for(lambda: "event=agent_ready" in sw.log("agent-3.log"), 60, "a new agent")
    assert sw.stop_agent(third) == 0


def test_sighup_reloads_a_good_config_and_refuses_a_bad_one(sw: StationWorld) -> None:
    agent = sw.start_agent()
    wait_for(lambda: "event=agent_ready" in sw.log(), 30, "the agent to be ready")
    good = sw.config.read_text()
    sw.config.write_text(good.replace("interval = 1.0", "interval = 0.5")
                         .replace('unit = 4\n', 'unit = 300\n'))
    agent.send_signal(1)  # SIGHUP
    wait_for(lambda: "event=config_reload_rejected" in sw.log(), 10, "the refusal")
    assert "bus 'lan' device 'flow': unit = 300" in sw.log()
    assert request(sw.socket, {"op": "ping"}) == {"ok": True}
    sw.config.write_text(good.replace('channels = ["TN", "TP"]', 'channels = ["TN"]'))
    agent.send_signal(1)
    wait_for(lambda: "event=config_reloaded" in sw.log(), 10, "the reload")
    assert "windows_restarted=True" in sw.log()
    wait_for(lambda: {c["symbol"] for c in request(sw.socket, {"op": "status"})["status"]
                      ["channels"]} >= {"TN"}, 10, "the channels after reload")
    assert agent.poll() is None
    assert sw.stop_agent(agent) == 0
    with sw.outbox() as store:
        assert store.integrity_check() == ["ok"]
        assert store.status().last_seq > 0  # no uplink: the station still averages and stores
