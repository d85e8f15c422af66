"""`quantrac config check` checks the station, not only the file (issue 12 item 2).

The real command in a subprocess against real things: a socat pty for a serial port, a port
held by another process, a host in ``.invalid`` (RFC 6761: never resolves), a station
identity made by ``quantrac provision init``, a state dir the service user cannot write, and
``quantrac run`` holding its port. Whose access is checked: this test's own user, which exists
here, so the machine counts as the station and hardware problems are errors; where a user
*other* than the one running is needed (an unwritable dir when running as root, who may write
anything) it is ``nobody``.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from hw_sim.server import PtyPair

ROOT = Path(__file__).resolve().parents[1]
ME = pwd.getpwuid(os.geteuid()).pw_name


def quantrac(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def station_toml(tmp: Path, port: str | Path, *, host: str = "127.0.0.1",
                 station_id: str = "HCM-WW-0001", state_dir: Path | None = None) -> Path:
    path = tmp / "station.toml"
    path.write_text(f"""\
[station]
id = "{station_id}"
[agent]
state_dir = "{state_dir or tmp / 'state'}"
[poll]
timeout = 0.2
[[bus]]
name = "rs485-1"
port = "{port}"
[[bus]]
name = "lan"
host = "{host}"
tcp_port = 1502
[[device]]
name = "liquiline"
bus = "rs485-1"
profile = "liquiline"
unit = 1
channels = ["pH", "Temp"]
[[device]]
name = "cems"
bus = "lan"
profile = "cems"
unit = 1
channels = ["SO2"]
""")
    return path


def line_starting(output: str, start: str) -> str:
    found = [line for line in output.splitlines() if line.startswith(start)]
    assert found, f"no line starting {start!r} in:\n{output}"
    return found[0]


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyPair]:
    pair = PtyPair(client_link=tmp_path / "ttyRS485")
    yield pair
    pair.close()


def test_a_missing_serial_port_is_an_error_naming_its_bus(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB9"
    result = quantrac("config", "check", "--service-user", ME, station_toml(tmp_path, port))
    assert result.returncode == 3, result.stdout + result.stderr
    assert line_starting(result.stdout, "error: ") == (
        f"error: bus 'rs485-1' port '{port}' (device 'liquiline'): does not exist; plug the "
        "adapter in, or correct [[bus]] port (stable names are in /dev/serial/by-id/)")
    assert result.stdout.splitlines()[-1] == "1 error(s), 1 warning(s)"  # + the new state dir


def test_an_existing_pty_opens_and_the_config_passes(tmp_path: Path, pty: PtyPair) -> None:
    result = quantrac("config", "check", "--service-user", ME,
                      station_toml(tmp_path, pty.client_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok: bus 'rs485-1' port '{pty.client_path}' (device 'liquiline'): opens" \
        in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == "0 error(s), 1 warning(s)"  # the new state dir


def test_a_port_another_program_holds_is_an_error_that_says_so(tmp_path: Path,
                                                               pty: PtyPair) -> None:
    with serial.Serial(pty.client_path, exclusive=True, timeout=0):
        result = quantrac("config", "check", "--service-user", ME,
                          station_toml(tmp_path, pty.client_path))
    assert result.returncode == 3, result.stdout
    assert line_starting(result.stdout, "error: ").startswith(
        f"error: bus 'rs485-1' port '{pty.client_path}' (device 'liquiline'): in use by another "
        "program (the agent is not running); find it with: fuser -v")


def _held(path: str) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock this test took
    return False


def wait_until(cond: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_a_port_the_running_agent_holds_is_in_use_by_the_running_agent(
        tmp_path: Path, pty: PtyPair) -> None:
    from edge_agent.console.control_client import agent_running

    config = station_toml(tmp_path, pty.client_path)
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent.daemon.cli", "run", "--config",
                              str(config)], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: agent_running(tmp_path / "state" / "control.sock"), "the agent")
        wait_until(lambda: _held(pty.client_path), "the agent to open its port")
        result = quantrac("config", "check", "--service-user", ME, config)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
    assert f"ok: bus 'rs485-1' port '{pty.client_path}' (device 'liquiline'): in use by the " \
           f"running agent (it answers on '{tmp_path / 'state' / 'control.sock'}')" \
        in result.stdout.splitlines(), result.stdout
    assert result.returncode == 0, result.stdout


def test_an_unresolvable_host_is_named_with_its_bus_and_devices(tmp_path: Path,
                                                                pty: PtyPair) -> None:
    result = quantrac("config", "check", "--service-user", ME,
                      station_toml(tmp_path, pty.client_path, host="no-such-host.invalid"))
    assert result.returncode == 3, result.stdout
    assert line_starting(result.stdout, "error: ").startswith(
        "error: bus 'lan' host 'no-such-host.invalid' (device 'cems'): does not resolve (")


def test_a_station_id_that_is_not_the_provisioned_one_is_an_error(tmp_path: Path,
                                                                  pty: PtyPair) -> None:
    state = tmp_path / "state"
    made = quantrac("provision", "init", "--station-id", "HN-WW-0002", "--state-dir", state,
                    "--out", tmp_path / "request.json")
    assert made.returncode == 0, made.stderr
    # the default service user (quantrac) does not exist on a test machine: the id is a fact
    # of the state dir, so it fails there too
    result = quantrac("config", "check", station_toml(tmp_path, pty.client_path))
    assert result.returncode == 3, result.stdout
    assert line_starting(result.stdout, "error: ").startswith(
        f"error: station id 'HCM-WW-0001': differs from the provisioned identity 'HN-WW-0002' "
        f"in '{state}'; the centre knows this station by its identity; set [station] id = "
        '"HN-WW-0002" if the identity is right')
    assert "state dir from [agent] state_dir" in result.stdout
    same = quantrac("config", "check", "--service-user", ME,
                    station_toml(tmp_path, pty.client_path, station_id="HN-WW-0002"))
    assert same.returncode == 0, same.stdout
    assert f"ok: station id 'HN-WW-0002': matches the identity in '{state}'" \
        in same.stdout.splitlines()
    # --state-dir reads another dir than the config's, and says so
    other = quantrac("config", "check", "--service-user", ME, "--state-dir", tmp_path / "x",
                     station_toml(tmp_path, pty.client_path, station_id="HN-WW-0002"))
    assert "state dir from --state-dir" in other.stdout
    assert f"ok: station id 'HN-WW-0002': not provisioned yet (no identity in " \
           f"'{tmp_path / 'x'}')" in other.stdout.splitlines()


def test_a_state_dir_the_service_user_cannot_write_is_an_error(tmp_path: Path,
                                                               pty: PtyPair) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o500)
    state.chmod(0o500)
    # as root: checked by mode bits for nobody; otherwise os.access for this user (0500)
    user = "nobody" if os.geteuid() == 0 else ME
    try:
        result = quantrac("config", "check", "--service-user", user,
                          station_toml(tmp_path, pty.client_path))
    finally:
        state.chmod(0o700)
    assert result.returncode == 3, result.stdout
    assert line_starting(result.stdout, f"error: state dir '{state}': user '{user}' cannot ")
    assert f"station checks as user '{user}'" in result.stdout


def test_a_bus_without_a_name_still_has_its_and_its_devices_problems_reported(
        tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text("""\
[station]
id = "HCM-WW-0001"
[[bus]]
port = "/dev/ttyUSB0"
baud = 9601
[[bus]]
name = "lan"
host = "127.0.0.1"
[[device]]
name = "ph1"
bus = "wastewater-bus"
profile = "liquiline"
unit = 300
channels = ["pH"]
[[device]]
name = "cems"
bus = "lan"
profile = "cems"
unit = 0
channels = ["SO2"]
""")
    result = quantrac("config", "check", path)
    assert result.returncode == 1, result.stdout
    assert result.stdout.splitlines() == [
        f"{path}: bus[0].name: missing; expected a bus name (a string, not empty; devices "
        "name their bus with it)",
        f"{path}: bus[0].baud = 9601: expected a standard baud rate (1200..115200)",
        f"{path}: device 'ph1': bus = 'wastewater-bus': expected the name of a [[bus]] "
        "(known: lan)",
        f"{path}: device 'ph1': unit = 300: expected a Modbus unit id in 1..247",
        f"{path}: bus 'lan' device 'cems': unit = 0: expected a Modbus unit id in 1..247",
        "5 problem(s) found"]


def test_devices_are_named_by_name_and_by_index_only_when_the_name_is_taken(
        tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text("""\
[station]
id = "HCM-WW-0001"
[[bus]]
name = "wastewater-bus"
port = "/dev/ttyUSB0"
[[device]]
name = "ph1"
bus = "wastewater-bus"
profile = "liquiline"
unit = 1
interval = 0
channels = ["pH"]
[[device]]
name = "ph1"
bus = "wastewater-bus"
profile = "liquiline"
unit = 2
interval = 0
channels = ["Temp"]
""")
    result = quantrac("config", "check", path)
    assert result.returncode == 1, result.stdout
    assert result.stdout.splitlines() == [
        f"{path}: bus 'wastewater-bus' device 'ph1': interval = 0: expected seconds in "
        "0.1..3600",
        f"{path}: device[1].name = 'ph1': expected a device name not used before",
        f"{path}: device[1].interval = 0: expected seconds in 0.1..3600",
        "3 problem(s) found"]


@pytest.mark.parametrize("example", ["wastewater.toml", "stackgas.toml"])
def test_the_shipped_examples_pass_here_and_offline(example: str) -> None:
    result = quantrac("config", "check", ROOT / "examples" / example)
    assert result.returncode == 0, result.stdout
    assert ": ok: station " in result.stdout and "0 error(s)" in result.stdout
    offline = quantrac("config", "check", "--offline", ROOT / "examples" / example)
    assert offline.returncode == 0, offline.stdout
    assert offline.stdout.splitlines()[-1] == "station not checked (--offline)"


def test_offline_skips_the_station_and_strict_fails_on_warnings(tmp_path: Path) -> None:
    config = station_toml(tmp_path, tmp_path / "ttyUSB9")
    offline = quantrac("config", "check", "--offline", "--service-user", ME, config)
    assert offline.returncode == 0, offline.stdout
    assert "ttyUSB9" not in offline.stdout
    # a user that does not exist: not the station, so the missing port is only a warning ...
    elsewhere = quantrac("config", "check", "--service-user", "no-such-user-b12", config)
    assert elsewhere.returncode == 0, elsewhere.stdout
    assert line_starting(elsewhere.stdout, f"warning: bus 'rs485-1' port '{tmp_path}")
    # ... which --strict (an installer's script) makes fail
    strict = quantrac("config", "check", "--strict", "--service-user", "no-such-user-b12",
                      config)
    assert strict.returncode == 3, strict.stdout
