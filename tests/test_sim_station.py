"""The simulated station as a whole: config, schedules, signals, control socket, CLI, stop."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial
from pymodbus.client import ModbusTcpClient

from drivers import modbus
from drivers.profile import builtin_profile
from hw_sim import ConfigError, load_station, parse_station, running_station, send_control
from hw_sim.signals import channel_value
from hw_sim.slave import SimStation
from protocol.model import Status

EXAMPLES = Path(__file__).resolve().parents[1] / "hw_sim" / "examples"
QUANTRAC = [sys.executable, "-m", "edge_agent.daemon.cli"]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_examples_load() -> None:
    ww = load_station(EXAMPLES / "wastewater.toml")
    assert {d.profile.name for d in ww.devices} == {"liquiline", "hach_sc", "wastewater_multi",
                                                     "flowmeter", "ph_probe"}
    sg = load_station(EXAMPLES / "stackgas.toml")
    assert sg.device(1).profile.name == "cems"


@pytest.mark.parametrize(("patch", "key", "value"), [
    ({"unit": 0}, "device[0].unit", "0"),
    ({"unit": 2}, "device[1].unit", "2"),  # both on tcp
    ({"profile": "nope"}, "device[0].profile", "'nope'"),
    ({"transports": ["usb"]}, "device[0].transports", "['usb']"),
    ({"colour": "red"}, "device[0].colour", "'red'"),
    ({"calibration": {"every_minutes": 1, "seconds": 90}}, "device[0].calibration", "90"),
    ({"fault": [{"start": 1, "duration": 2, "fault": "melt"}]}, "device[0].fault[0].fault",
     "'melt'"),
    ({"fault": [{"start": 1, "duration": 2, "status": "asleep"}]},
     "device[0].fault[0].status", "'asleep'"),
    ({"fault": [{"start": 1, "duration": 2}]}, "device[0].fault[0]", "'start'"),
    ({"fault": [{"start": 1, "duration": 2, "fault": "exception", "code": 99}]},
     "device[0].fault[0]", "99"),
])
def test_config_errors_name_key_and_value(patch: dict[str, object], key: str,
                                          value: str) -> None:
    doc = {"device": [{"name": "a", "profile": "ph_probe", "unit": 1},
                      {"name": "b", "profile": "cems", "unit": 2}]}
    doc["device"][0].update(patch)
    with pytest.raises(ConfigError) as info:
        parse_station(doc, "station.toml")
    assert info.value.key == key and str(info.value).startswith(f"station.toml: {key} = ")
    assert value in str(info.value)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "s.toml"
    bad.write_text("[[device]\n")
    with pytest.raises(ConfigError, match=r"s\.toml: <toml> = .*expected valid TOML"):
        load_station(bad)


def test_profile_path_relative_to_config(tmp_path: Path) -> None:
    text = Path(builtin_profile("ph_probe").source).read_text()
    (tmp_path / "mine.toml").write_text(text.replace('name = "ph_probe"', 'name = "mine"'))
    cfg = tmp_path / "s.toml"
    cfg.write_text('[[device]]\nname = "x"\nprofile = "mine.toml"\nunit = 3\n')
    assert load_station(cfg).device(3).profile.name == "mine"


def test_signals_are_deterministic_in_range_and_seeded() -> None:
    ch = builtin_profile("wastewater_multi").channel("COD")
    t = 1_767_225_600.0
    assert channel_value(1, ch, t) == channel_value(1, ch, t)
    assert channel_value(1, ch, t) != channel_value(2, ch, t)
    values = [channel_value(1, ch, t + k * 600) for k in range(144)]  # a day, every 10 min
    assert all(ch.lo <= v <= ch.hi for v in values)
    assert max(values) - min(values) > 0.3 * (ch.hi - ch.lo)  # a real diurnal swing
    steps = [abs(b - a) for a, b in itertools.pairwise(values)]
    assert max(steps) < 0.25 * (ch.hi - ch.lo)  # smooth, not white noise
    total = builtin_profile("flowmeter").channel("FlowTotal")
    assert channel_value(4, total, t + 3600) - channel_value(4, total, t) == 100


def test_calibration_schedule_and_scheduled_faults() -> None:
    clock = Clock(1_767_225_600.0)  # a multiple of 10 minutes
    cfg = parse_station({"device": [{
        "name": "hach", "profile": "hach_sc", "unit": 1,
        "calibration": {"every_minutes": 10, "seconds": 60, "offset_seconds": 120},
        "fault": [{"start": 300, "duration": 30, "status": "fault"},
                  {"start": 400, "duration": 20, "fault": "no_answer"}]}]})
    station = SimStation(cfg, clock)
    request = modbus.tcp_read_request(1, 1, 3, 0, 6)

    def status_at(dt: float) -> Status:
        clock.t = station.start + dt
        reply = station.handle_tcp(request)
        assert reply is not None
        served = station.served(1)
        assert served is not None
        return served.statuses["COD"]

    assert status_at(10) is Status.MEASURING
    assert status_at(130) is Status.CALIBRATING
    assert status_at(185) is Status.MEASURING
    assert status_at(310) is Status.FAULT
    assert status_at(740) is Status.CALIBRATING  # the next period
    clock.t = station.start + 405
    assert station.handle_tcp(request) is None  # scheduled silence
    clock.t = station.start + 425
    assert station.handle_tcp(request) is not None
    assert station.requests(1) == (7, 6)


def test_wire_time_emulation_never_answers_early(tmp_path: Path) -> None:
    cfg = parse_station({"device": [{"name": "m", "profile": "wastewater_multi", "unit": 1,
                                     "transports": ["rtu"]}]})
    with running_station(cfg, tcp_port=None, pty=True, baud=9600) as sim:
        assert sim.pty_path is not None and sim.tcp_port is None
        with serial.Serial(sim.pty_path, 9600, timeout=2) as port:
            minimum = modbus.rtu_transaction_wire_time(10, 9600)  # ~46 ms on the wire
            assert math.isclose(minimum, 0.0458, rel_tol=0.01)
            for _ in range(3):
                start = time.monotonic()
                port.write(modbus.rtu_read_request(1, 3, 0, 10))
                frame = port.read(25)
                elapsed = time.monotonic() - start
                assert len(modbus.parse_rtu_read_response(frame, 1, 3, 10)) == 10
                assert elapsed >= minimum  # a lower bound: load can only make it later


def _start_cli(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    proc = subprocess.Popen(
        [*QUANTRAC, "sim", "station", "--config", str(EXAMPLES / "stackgas.toml"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "QUANTRAC_LOG_LEVEL": "WARNING"})
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first, proc.stderr.read() if proc.stderr else ""
    return proc, json.loads(first)


def test_cli_station_and_fault_commands(tmp_path: Path) -> None:
    control = tmp_path / "ctl"
    proc, info = _start_cli(tmp_path, "--tcp-port", "0", "--pty", "--control", str(control))
    try:
        assert isinstance(info["tcp_port"], int) and info["control"] == str(control)
        pty = info["pty"]
        assert isinstance(pty, str) and Path(pty).exists()
        assert info["units"] == {
            "cems": {"unit": 1, "profile": "cems", "transports": ["tcp", "rtu"]},
            "stack-flow": {"unit": 2, "profile": "flowmeter", "transports": ["rtu", "tcp"]}}
        client = ModbusTcpClient("127.0.0.1", port=info["tcp_port"], timeout=2, retries=0)
        assert client.connect()
        assert not client.read_input_registers(0, count=18, device_id=1).isError()
        out = subprocess.run([*QUANTRAC, "sim", "fault", "--control", str(control), "--unit",
                              "1", "--fault", "exception", "--code", "6", "on"],
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == "unit 1: exception on"
        rr = client.read_input_registers(0, count=18, device_id=1)
        assert rr.isError() and rr.exception_code == 6
        subprocess.run([*QUANTRAC, "sim", "fault", "--control", str(control), "--unit", "1",
                        "--fault", "exception", "off"], check=True, capture_output=True)
        assert not client.read_input_registers(0, count=18, device_id=1).isError()
        bad = subprocess.run([*QUANTRAC, "sim", "fault", "--control", str(control), "--unit",
                              "9", "--fault", "slow", "on"], capture_output=True, text=True)
        assert bad.returncode == 1 and "unit id 9" in bad.stderr
        stats = send_control(control, {"op": "stats"})
        assert stats["ok"] and stats["units"]["1"]["answered"] >= 3
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not Path(pty).exists()  # socat was stopped and its links removed
    assert not control.exists()


def test_running_station_stops_cleanly() -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    with running_station(EXAMPLES / "wastewater.toml", tcp_port=0, pty=True,
                         control=None) as sim:
        pty = sim.pty_path
        assert pty is not None
        client = ModbusTcpClient("127.0.0.1", port=sim.tcp_port or 0, timeout=2, retries=0)
        assert client.connect()  # an open connection must not keep the server alive
        assert not client.read_holding_registers(0, count=2, device_id=5).isError()
    client.close()
    assert not Path(pty).exists()
    assert {t.name for t in threading.enumerate() if t.name.startswith("hw_sim")} <= before
