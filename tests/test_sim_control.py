"""`sim station` and `sim fault` meet on a default control socket; a second simulator on it runs
without one (and says so), on a socket given by name it is refused.

Each test points $XDG_RUNTIME_DIR at its own directory, which is where the default socket
lives, so the tests never meet a simulator someone else runs on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SIM_CONFIG = Path(__file__).resolve().parents[1] / "hw_sim" / "examples" / "stackgas.toml"
QUANTRAC = [sys.executable, "-m", "edge_agent.daemon.cli"]


def _env(runtime: Path) -> dict[str, str]:
    return {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}


def _quantrac(runtime: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*QUANTRAC, *args], capture_output=True, text=True, timeout=60,
                          env=_env(runtime))


@pytest.fixture
def station(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, object]]]:
    """A `sim station` started without --control, and the JSON line it printed first."""
    proc = subprocess.Popen([*QUANTRAC, "sim", "station", "--config", str(SIM_CONFIG)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(tmp_path))
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    if not first:
        proc.wait(10)
        pytest.fail(f"sim station printed nothing: {proc.stderr.read()}")
    try:
        yield proc, json.loads(first)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        proc.stdout.close()
        proc.stderr.close()


def test_fault_finds_the_station_on_the_default_socket(
        tmp_path: Path, station: tuple[subprocess.Popen[str], dict[str, object]]) -> None:
    _, info = station
    assert info["control"] == str(tmp_path / "quantrac-sim.sock")
    out = _quantrac(tmp_path, "sim", "fault", "--unit", "1", "--fault", "no_answer", "on")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "unit 1: no_answer on"
    assert _quantrac(tmp_path, "sim", "fault", "--unit", "1", "--fault", "no_answer",
                     "off").returncode == 0


def test_a_second_station_on_the_same_socket_is_refused_and_the_first_keeps_it(
        tmp_path: Path, station: tuple[subprocess.Popen[str], dict[str, object]]) -> None:
    first, _ = station
    sock = tmp_path / "quantrac-sim.sock"
    second = _quantrac(tmp_path, "sim", "station", "--config", str(SIM_CONFIG),
                       "--duration", "5", "--control", str(sock))
    assert second.returncode == 1
    assert f"{sock}: simulated station 'stackgas-demo' (pid {first.pid}) already serves" in (
        second.stderr), second.stderr
    assert "--control" in second.stderr
    assert "Traceback" not in second.stderr
    # on the default path (not asked for by name) the second one serves its analysers
    # without a control socket, and its log says so: two buses, two simulators
    default = _quantrac(tmp_path, "sim", "station", "--config", str(SIM_CONFIG),
                        "--duration", "0.2")
    assert default.returncode == 0, default.stderr
    assert json.loads(default.stdout.splitlines()[0])["control"] is None
    assert "event=sim_control_default_taken" in default.stderr, default.stderr
    # the first simulator still owns its socket: a fault still reaches it
    out = _quantrac(tmp_path, "sim", "fault", "--unit", "2", "--fault", "slow", "on")
    assert out.returncode == 0, out.stderr
    # and a second one with a path of its own starts
    own = _quantrac(tmp_path, "sim", "station", "--config", str(SIM_CONFIG), "--duration",
                    "0.2", "--control", str(tmp_path / "second.sock"))
    assert own.returncode == 0, own.stderr


def test_a_socket_left_by_a_killed_station_is_replaced(tmp_path: Path) -> None:
    stale = tmp_path / "quantrac-sim.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))  # bound, never listening, file left behind: what SIGKILL leaves
    out = _quantrac(tmp_path, "sim", "station", "--config", str(SIM_CONFIG), "--duration", "0.2")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[0])["control"] == str(stale)
    assert not stale.exists()  # removed again on the way out


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "quantrac-sim.sock"
    path.write_text("someone's notes\n")
    out = _quantrac(tmp_path, "sim", "station", "--config", str(SIM_CONFIG), "--duration", "0.2",
                    "--control", str(path))
    assert out.returncode == 1
    assert f"{path}: exists and is not a socket" in out.stderr, out.stderr
    assert path.read_text() == "someone's notes\n"


def test_fault_without_a_station_says_so(tmp_path: Path) -> None:
    out = _quantrac(tmp_path, "sim", "fault", "--unit", "1", "--fault", "no_answer", "on")
    assert out.returncode == 1
    sock = tmp_path / "quantrac-sim.sock"
    assert out.stderr.strip() == (
        f"quantrac sim: error: {sock}: no simulated station answers here (start one with "
        "`quantrac sim station`, or give the --control it was started with)")
