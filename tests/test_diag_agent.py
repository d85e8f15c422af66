"""`quantrac diag scan | read | watch` and `quantrac status` with the agent running (issue 16).

One running station for the whole module (budget): the simulator on a socat pty (Modbus RTU)
and on loopback TCP, and ``quantrac run`` in its own process holding the pty exclusively, as
on a station. The simulator is wired against the config the way a technician finds stations:

* ``liquiline`` at unit 1 answers as configured;
* ``hach`` is configured at unit 2, but the analyser was set to unit 12 (mis-addressed);
* ``flow`` at unit 4 answers until a test makes it silent (``no_answer`` in the simulator);
* ``cabinet`` at unit 3 on the TCP bus.

The diag commands run in-process through the CLI's own entry point; they find the agent with
no flag but ``$QUANTRAC_STATE_DIR`` (or ``--config``), as a technician's shell would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_agent.console.control_client import request
from edge_agent.daemon.cli import main
from hw_sim import RunningStation, parse_station, running_station
from tests.mqtt_world import wait_for

SIM = {"name": "diag-agent", "device": [
    {"name": "liquiline", "profile": "liquiline", "unit": 1, "transports": ["rtu"], "seed": 1},
    {"name": "hach", "profile": "hach_sc", "unit": 12, "transports": ["rtu"], "seed": 2},
    {"name": "flow", "profile": "flowmeter", "unit": 4, "transports": ["rtu"], "seed": 3},
    {"name": "cabinet", "profile": "wastewater_multi", "unit": 3, "transports": ["tcp"],
     "seed": 4},
]}


@dataclass
class Station:
    sim: RunningStation
    root: Path
    state_dir: Path
    config: Path
    agent: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.state_dir / "control.sock"

    def log(self) -> str:
        return (self.root / "agent.log").read_text(errors="replace")


def _config(state_dir: Path, pty: str, tcp_port: int) -> str:
    return f"""\
[station]
id = "HCM-DIAG-01"
province = "HCM"
facility = "Test"
name = "Outfall1"
[agent]
state_dir = "{state_dir}"
[poll]
timeout = 0.2
retries = 0
backoff_max = 1.0
[[bus]]
name = "rs485-wastewater-bus"
port = "{pty}"
baud = 19200
[[bus]]
name = "lan"
host = "127.0.0.1"
tcp_port = {tcp_port}
[[device]]
name = "liquiline"
bus = "rs485-wastewater-bus"
profile = "liquiline"
unit = 1
channels = ["pH", "Temp", "TSS"]
interval = 1.0
[[device]]
name = "hach"
bus = "rs485-wastewater-bus"
profile = "hach_sc"
unit = 2
channels = ["COD", "NH4"]
interval = 1.0
[[device]]
name = "flow"
bus = "rs485-wastewater-bus"
profile = "flowmeter"
unit = 4
channels = ["Flow"]
interval = 1.0
[[device]]
name = "cabinet"
bus = "lan"
profile = "wastewater_multi"
unit = 3
channels = ["TN", "TP"]
interval = 1.0
[averaging]
windows = [2]
grace_s = 0.5
"""


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    root = tmp_path_factory.mktemp("diag-agent")
    state_dir = root / "state"
    with running_station(parse_station(SIM, "diag-agent"), tcp_port=0, pty=True,
                         baud=19200) as sim:
        assert sim.pty_path is not None and sim.tcp_port is not None
        config = root / "station.toml"
        config.write_text(_config(state_dir, str(sim.pty_path), sim.tcp_port))
        with (root / "agent.log").open("ab") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.daemon.cli", "run", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        st = Station(sim, root, state_dir, config, agent)
        try:
            wait_for(lambda: agent.poll() is not None or (st.socket.exists() and _answered(
                st, "liquiline", "cabinet", "flow")), 60, "the agent to poll its devices")
            assert agent.poll() is None, st.log()
            yield st
        finally:
            agent.terminate()
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()


def _answered(st: Station, *devices: str) -> bool:
    try:
        health = request(st.socket, {"op": "status"})["status"]["devices"]
    except Exception:
        return False
    return all(any(d["device"] == n and d["last_good"] for d in health) for n in devices)


@pytest.fixture
def env(station: Station, monkeypatch: pytest.MonkeyPatch) -> Station:
    """The technician's shell: the state dir in the environment, no flags."""
    monkeypatch.setenv("QUANTRAC_STATE_DIR", str(station.state_dir))
    monkeypatch.setenv("QUANTRAC_CONFIG", str(station.root / "absent.toml"))
    return station


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--log-level", "ERROR", *argv])
    out, err = capsys.readouterr()
    wide = [line for line in (out + err).splitlines() if len(line) > 80]
    assert not wide, f"lines over 80 columns in `{' '.join(argv)}`:\n" + "\n".join(wide)
    return code, out, err


def strict_loads(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def unwrapped(text: str) -> list[str]:
    """Lines with their wrapped continuations (indented) joined back on."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("    ") and out:
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return out


def _health(st: Station, device: str) -> dict[str, Any]:
    devices = request(st.socket, {"op": "status"})["status"]["devices"]
    found: dict[str, Any] = next(d for d in devices if d["device"] == device)
    return found


def test_scan_through_the_agent_finds_a_silent_and_a_misaddressed_unit(
        env: Station, capsys: pytest.CaptureFixture[str]) -> None:
    before = {n: _health(env, n)["polls_ok"] for n in ("liquiline", "cabinet")}
    env.sim.set_fault(4, "no_answer", True)  # the flowmeter goes silent
    try:
        # a generous timeout: the simulator is Python on a loaded CI box, not an analyser
        code, out, err = run(capsys, "diag", "scan", "--port", str(env.sim.pty_path),
                             "--units", "1-4,12", "--timeout", "0.4")
    finally:
        env.sim.set_fault(4, "no_answer", False)
    assert code == 0, err
    lines = unwrapped(out)
    assert "by the running agent" in lines[0]  # no port-lock death: the agent scanned
    assert "unit 1: data, matches liquiline (3/3 channels plausible)" in lines
    assert any(line.startswith("unit 12: data, matches hach_sc") for line in lines), out
    compare = lines[lines.index("compared with the config:") + 1:]
    assert compare[0].startswith("unit 1 (liquiline, profile liquiline): found, matches its "
                                 "profile"), compare
    assert compare[1].startswith("unit 2 (hach, profile hach_sc): SILENT; unit 12 answers "
                                 "like hach (profile hach_sc): mis-addressed?"), compare
    assert compare[2] == "unit 4 (flow, profile flowmeter): SILENT (no answer at unit 4)"
    assert not any("unit 12: not in the config" in line for line in compare)
    # the agent kept polling: the scanned bus between the scan's transactions, the other bus
    # untouched
    after = {n: _health(env, n)["polls_ok"] for n in ("liquiline", "cabinet")}
    assert after["liquiline"] > before["liquiline"] and after["cabinet"] > before["cabinet"]


def test_read_through_the_agent_found_without_flags_names_the_channels(
        env: Station, capsys: pytest.CaptureFixture[str]) -> None:
    port = str(env.sim.pty_path)
    code, out, err = run(capsys, "diag", "read", "--port", port, "--unit", "1",
                         "--register", "0")
    assert code == 1
    message = " ".join(line.strip() for line in err.splitlines())
    assert "exception 02" in message and "try --function 4 (input registers)" in message

    code, out, err = run(capsys, "diag", "read", "--port", port, "--unit", "1",
                         "--register", "0", "--count", "9", "--function", "4")
    assert code == 0, err
    lines = out.splitlines()
    assert "read by the running agent" in " ".join(lines[:2])
    assert len(lines) <= 12, out  # about 9 lines for 9 registers, not 30
    served = env.sim.served(1)
    assert served is not None
    ph = next(line for line in lines if line.split()[0] == "0")
    assert f"pH (1/2) = {served.values['pH']:.7g} pH" in ph or "pH (1/2) = " in ph
    assert any(line.split()[0] == "3" and "Temp (1/2)" in line for line in lines)
    assert any(line.split()[0] == "6" and "TSS (1/2)" in line for line in lines)


def test_a_port_the_agent_does_not_poll_is_opened_directly(
        env: Station, capsys: pytest.CaptureFixture[str]) -> None:
    """A second adapter (here a TCP endpoint not in the config) is free: diag opens it
    itself instead of asking the agent, which knows nothing of it."""
    import socket

    with socket.socket() as free:  # a loopback port nobody listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code, _, err = run(capsys, "diag", "read", "--host", "127.0.0.1", "--tcp-port",
                         str(port), "--unit", "1", "--register", "0")
    assert code == 1
    message = " ".join(line.removeprefix("quantrac diag: error:").strip()
                       for line in err.splitlines())
    assert f"cannot connect to 127.0.0.1:{port}" in message and "agent" not in message
    answer = request(env.socket, {"op": "read", "bus": f"127.0.0.1:{port}", "unit": 1,
                                  "address": 0})
    assert not answer["ok"] and answer["not_polled"]


def test_watch_once_through_the_agent_never_calls_a_healthy_unit_offline(
        env: Station, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "diag", "watch", "--once")
    assert code == 0, err
    lines = out.splitlines()
    assert "running agent" in lines[0]
    for device in ("liquiline", "cabinet"):
        rows = [line for line in lines if line.startswith(device + " ")]
        # the analyser's own state (measuring, calibrating...) as the agent decoded it
        assert rows and not any("offline" in r or "waiting" in r for r in rows), out
    hach = [line for line in lines if line.startswith("hach ")]
    assert hach and all("offline" in r for r in hach)  # unit 2 really never answers
    assert any(line.startswith("! hach unit 2:") for line in lines)


def test_status_is_degraded_while_a_unit_never_answered_and_json_is_strict(
        env: Station, capsys: pytest.CaptureFixture[str]) -> None:
    wait_for(lambda: request(env.socket, {"op": "status"})["status"]["ready"], 30,
             "the agent's first poll cycle")
    code, out, err = run(capsys, "status", "--config", str(env.config))
    assert code == 0, err
    first = unwrapped(out)[0]
    assert "ready" not in first.replace("degraded", "")
    assert "degraded:" in first and "hach (unit 2) never answered" in first, out
    lines = unwrapped(out)
    hach = next(line for line in lines if line.startswith("!hach"))
    assert "timeout: unit 2: no answer within 0.200 s" in hach, out
    assert any("rs485-wastewater-bus" in line or str(env.sim.pty_path) in line
               for line in lines)

    code, out, err = run(capsys, "status", "--config", str(env.config), "--json")
    assert code == 0, err
    status = strict_loads(out)
    hach_channels = [c for c in status["channels"] if c["device"] == "hach"]
    assert hach_channels and all(c["value"] is None for c in hach_channels)


def test_without_the_agent_a_held_port_is_refused_naming_its_holder(
        station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """No agent found (another state dir): diag opens the port itself, finds it held, and
    says by whom and how to go through the agent, instead of calling every unit offline."""
    monkeypatch.setenv("QUANTRAC_STATE_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("QUANTRAC_CONFIG", str(tmp_path / "absent.toml"))
    port = str(station.sim.pty_path)
    elsewhere = tmp_path / "station.toml"  # the same buses, but not the agent's state dir
    elsewhere.write_text(station.config.read_text().replace(str(station.state_dir),
                                                            str(tmp_path / "other")))
    for argv in (["diag", "read", "--port", port, "--unit", "1", "--register", "0"],
                 ["diag", "scan", "--port", port, "--units", "1-3"],
                 ["diag", "watch", "--once", "--config", str(elsewhere)]):
        code, out, err = run(capsys, *argv)
        assert code == 1, (argv, out, err)
        message = " ".join(line.removeprefix("quantrac diag: error:").strip()
                           for line in err.splitlines())
        assert f"{port} is held by pid {station.agent.pid} (" in message, (argv, err)
        assert "edge_agent.daemon.cli run" in message  # its command line
        assert "--config STATION.toml or --agent SOCKET" in message
        assert "offline" not in out


def test_every_output_fits_80_columns(env: Station, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """diag (scan on both buses, read as words and pairs, watch once and live), status and
    centre query / stations, all against the running station: run() fails on any line over
    80 columns. The centre's store holds the agent's own records, under a long station id,
    with a security event whose detail is long."""
    import hashlib

    from buffer import Store
    from centre.store import CentreStore

    port = str(env.sim.pty_path)
    for argv in (["diag", "scan", "--bus", "lan", "--units", "1-5"],
                 ["diag", "scan", "--config", str(env.config), "--bus", "lan", "--units", "3"],
                 ["diag", "read", "--port", port, "--unit", "1", "--register", "0",
                  "--function", "4", "--count", "4", "--profile", "ph_probe"],
                 ["diag", "read", "--bus", "lan", "--unit", "3", "--register", "0",
                  "--count", "4"],
                 ["diag", "read", "--port", port, "--unit", "1", "--register", "0",
                  "--function", "4", "--count", "2", "--type", "float32"],
                 ["diag", "read", "--port", port, "--unit", "9", "--register", "0",
                  "--timeout", "0.1"],
                 ["diag", "watch", "--once"],
                 ["diag", "watch", "--duration", "0.3", "--interval", "0.1"],
                 ["status"],
                 ["status", "--config", str(env.config)]):
        run(capsys, *argv)

    wait_for(lambda: request(env.socket, {"op": "status"})["status"]["outbox"]["last_seq"] > 0,
             30, "a first record in the agent's outbox")
    with Store(env.state_dir / "outbox.sqlite") as outbox:
        records = list(outbox.windows(2))
    assert records
    store = tmp_path / "centre.sqlite"
    long_id = "HCM-KCN-TANTHUAN-NHAMAY-XULY-01"
    with CentreStore(store) as centre:
        centre.ingest(long_id, records, hashlib.sha256(b"diag").digest(), 1)
        centre.ingest("HCM-DIAG-01", records, hashlib.sha256(b"diag2").digest(), 1)
        centre.security_event(long_id, "bad_signature",
                              "packet 3 of 3 signed with a key the registry does not know "
                              "(key id 7f3a9c, enrolled 2026-11-30, revoked)")
    deep = tmp_path / "long-state-directory" / "control.sock"  # a line past 80 unwrapped
    code, _, err = run(capsys, "status", "--socket", str(deep))
    assert code == 1 and "no control socket" in err
    _, out, _ = run(capsys, "centre", "query", "--store", str(store), "--station", long_id)
    assert len(out.splitlines()) >= 2 + len(records)
    _, out, _ = run(capsys, "centre", "stations", "--store", str(store))
    assert long_id in out.splitlines()  # a long id on a line of its own, whole
    code = main(["centre", "stations", "--store", str(store), "--wide"])
    wide = capsys.readouterr().out
    assert code == 0 and "last received" in wide.splitlines()[0]


def test_scan_progress_is_reported_and_a_second_scan_of_the_bus_refused(env: Station) -> None:
    import threading

    from edge_agent.console.diag_cli import _progress_line

    line = _progress_line("/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0",
                          120, 247, 3)
    assert len(line) < 80 and line.endswith(": 120/247 unit ids, 3 answered (Ctrl-C stops)")

    bus = "rs485-wastewater-bus"
    answer: dict[str, Any] = {}
    scan = threading.Thread(target=lambda: answer.update(request(
        env.socket, {"op": "scan", "bus": bus, "units": list(range(30, 45))}, timeout=60)))
    scan.start()
    try:
        seen: list[dict[str, int]] = []

        def progressed() -> bool:
            p = request(env.socket, {"op": "scan_progress"})["scans"].get(bus)
            if p:
                seen.append(p)
            return bool(p) and p["done"] > 0

        wait_for(progressed, 30, "the scan's progress")
        second = request(env.socket, {"op": "scan", "bus": bus, "units": [1]})
        assert not second["ok"] and "already running" in second["error"]
    finally:
        scan.join(60)
    assert answer["ok"] and answer["hits"] == [] and answer["complete"]
    assert seen[-1]["total"] == 15 and 0 < seen[-1]["done"] <= 15
    assert bus not in request(env.socket, {"op": "scan_progress"})["scans"]


def _raw(st: Station, data: bytes) -> dict[str, Any]:
    """``data`` sent as it is on the control socket, and the one answer line (strict JSON)."""
    import contextlib
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(st.socket))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        got = b""
        while not got.endswith(b"\n") and (chunk := sock.recv(65536)):
            got += chunk
    answer: dict[str, Any] = strict_loads(got.decode())
    return answer


def test_the_control_socket_answers_hostile_requests_and_keeps_polling(env: Station) -> None:
    """Review (R1): every bad request gets an error naming what is wrong, none stops the
    agent or its polling: a line too long, not JSON, fields of the wrong type or range, a
    timeout that would hold the bus for ever, half a line that never ends, more connections
    at once than it serves."""
    import socket

    bus = "rs485-wastewater-bus"
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # half a request, then nothing
    stuck.connect(str(env.socket))
    stuck.sendall(b'{"op": "sta')
    before = _health(env, "liquiline")["polls_ok"]
    try:
        assert "at most 65536 bytes" in _raw(env, b"x" * (1 << 20))["error"]
        assert not _raw(env, b"{not json\n")["ok"]
        assert "JSON object" in _raw(env, b"[1, 2]\n")["error"]
        read = {"op": "read", "bus": bus, "unit": 9, "address": 0}
        cases: dict[str, dict[str, Any]] = {
            "unit: 'x' is not a whole number": {"unit": "x"},
            "unit: 1000 is outside 0..247": {"unit": 1000},
            "register count 1000000000 is outside": {"count": 10**9},
            "timeout: 1000000000.0 s is outside": {"timeout": 1e9},
            "timeout: inf s is outside": {"timeout": 1e999},
            "address: missing": {"address": None}}
        for said, change in cases.items():
            answer = request(env.socket, {**read, **change}, timeout=30)
            assert not answer["ok"] and said in answer["error"], (change, answer)
        nan = _raw(env, b'{"op": "read", "bus": "%s", "unit": 9, "address": 0, '
                        b'"timeout": NaN}\n' % bus.encode())
        assert "timeout: nan s is outside" in nan["error"]
        scan = request(env.socket, {"op": "scan", "bus": bus, "units": [9], "timeout": 5})
        assert not scan["ok"] and "timeout: 5.0 s is outside 0..2 s" in scan["error"]
        units = request(env.socket, {"op": "scan", "bus": bus, "units": "1-4"})
        assert not units["ok"] and "units" in units["error"]
        again = request(env.socket, {"op": "scan", "bus": bus, "units": [9] * 400,
                                     "timeout": 0.05}, timeout=60)
        assert again["ok"] and again["units"] == [9]  # each unit once
        idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(40)]
        try:  # 1 stuck + 31 more fill MAX_CONNECTIONS; the next ones are told, not served
            for sock in idle:
                sock.connect(str(env.socket))
            refused = _raw(env, b'{"op": "ping"}\n')
            assert not refused["ok"] and "connections are open already" in refused["error"]
        finally:
            for sock in idle:
                sock.close()
        wait_for(lambda: _raw(env, b'{"op": "ping"}\n').get("ok") is True, 30,
                 "the agent to serve again once the idle connections close")
        stuck.settimeout(30)  # closed by the agent (REQUEST_TIMEOUT_S), not held for ever
        assert stuck.recv(100) == b""
    finally:
        stuck.close()
    assert env.agent.poll() is None and request(env.socket, {"op": "ping"})["ok"]
    wait_for(lambda: _health(env, "liquiline")["polls_ok"] > before + 2, 30,
             "the agent to go on polling")
