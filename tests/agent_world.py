"""A whole station for the agent's end-to-end tests: simulator, broker, centre, agent process.

Everything real: the simulated analysers serve Modbus RTU on a socat pty and Modbus TCP on
loopback (``hw_sim.running_station``, in this process, recording every answer it serves); the
broker, the centre's keys, the provisioned station and the centre receiver come from
``tests.mqtt_world``; the agent is ``quantrac run --config FILE`` in its own process, so a test
can SIGTERM or SIGKILL it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import hw_sim.server
from buffer import Store
from hw_sim import RunningStation, running_station
from hw_sim.config import SimStationConfig, parse_station
from hw_sim.slave import Served, SimStation
from protocol.model import Record, RecordFlag, Sample, Status
from tests.mqtt_world import World, wait_for

SID = "HCM-AGT-01"

SIM = {
    "name": "agent-test",
    "device": [
        {"name": "liquiline", "profile": "liquiline", "unit": 1, "transports": ["rtu"],
         "seed": 11},
        {"name": "hach", "profile": "hach_sc", "unit": 2, "transports": ["rtu"], "seed": 12},
        {"name": "cabinet", "profile": "wastewater_multi", "unit": 3, "transports": ["tcp"],
         "seed": 13},
        {"name": "flow", "profile": "flowmeter", "unit": 4, "transports": ["tcp"], "seed": 14},
    ],
}
# device -> (unit, symbols reported)
DEVICES = {"liquiline": (1, ("pH", "Temp", "TSS")), "hach": (2, ("COD", "NH4")),
           "cabinet": (3, ("TN", "TP")), "flow": (4, ("Flow",))}
PROFILES = {"liquiline": "liquiline", "hach": "hach_sc", "cabinet": "wastewater_multi",
            "flow": "flowmeter"}
WIDTH = 10


class RecordingStation(SimStation):
    """The simulator, keeping every data answer it served (what the analyser meant)."""

    def __init__(self, config: SimStationConfig, clock: Any) -> None:
        super().__init__(config, clock)
        self.history: dict[int, list[Served]] = {d.unit: [] for d in config.devices}
        self._history_lock = threading.Lock()

    def _answer(self, unit: int, req: Any, transport: str) -> Any:
        answer = super()._answer(unit, req, transport)
        if answer[0] == "data":
            served = self.served(unit)
            assert served is not None
            with self._history_lock:
                self.history[unit].append(served)
        return answer

    def served_before(self, unit: int, channel: str, t: float) -> Served:
        """The last answer carrying ``channel``'s value that ``unit`` served at or before ``t``
        (the read a sample stamped ``t`` was decoded from)."""
        spec = self.config.device(unit).profile.channel(channel)

        def carries(s: Served) -> bool:
            r = s.request
            return r.function == spec.function and r.address <= spec.address < r.address + r.count

        with self._history_lock:
            best = [s for s in self.history[unit] if s.t <= t and carries(s)]
        assert best, f"unit {unit}: {channel} not served before {t}"
        return best[-1]


def agent_config(state_dir: Path, pty: str, tcp_port: int, uplink: bool = True) -> str:
    devices = []
    for name, (unit, symbols) in DEVICES.items():
        bus = "rs485" if unit <= 2 else "lan"
        devices.append(f'[[device]]\nname = "{name}"\nbus = "{bus}"\nprofile = '
                       f'"{PROFILES[name]}"\n'
                       f"unit = {unit}\ninterval = 1.0\nchannels = {json.dumps(symbols)}\n")
    text = f"""\
[station]
id = "{SID}"
province = "HCM"
facility = "Test"
name = "Outfall1"
[agent]
state_dir = "{state_dir}"
sample_flush_s = 1.0
[poll]
timeout = 0.3
retries = 1
backoff_max = 2.0
[[bus]]
name = "rs485"
port = "{pty}"
baud = 19200
[[bus]]
name = "lan"
host = "127.0.0.1"
tcp_port = {tcp_port}
{chr(10).join(devices)}
[averaging]
windows = [{WIDTH}]
grace_s = 1.0
"""
    if uplink:
        text += "[uplink.mqtt]\nwindow = 8\nack_timeout_s = 5.0\nbackoff_cap_s = 1.0\n"
    return text


@dataclass
class StationWorld:
    world: World
    sim: RunningStation
    station: RecordingStation
    root: Path
    state_dir: Path
    config: Path
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.state_dir / "control.sock"

    def start_agent(self, log_name: str = "agent.log",
                    env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.root / log_name).open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.daemon.cli", "run", "--config", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        log.close()
        self.agents.append(proc)
        return proc

    def log(self, name: str = "agent.log") -> str:
        return self.world.log(name)

    def stop_agent(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def outbox(self) -> Store:
        return Store(self.state_dir / "outbox.sqlite")

    def centre_records(self) -> list[tuple[int, Record]]:
        return self.world.stored(SID)

    def wait_centre(self, n: int, timeout: float) -> None:
        wait_for(lambda: self.world.stored_count(SID) >= n, timeout,
                 f"{n} records at the centre\n{self.log()[-3000:]}", poll=0.2)

    def stop(self) -> None:
        for proc in self.agents:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def station_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  uplink: bool = True) -> Iterator[StationWorld]:
    """Body of the fixtures: broker + centre + provisioned station + simulator, all stopped."""
    monkeypatch.setattr(hw_sim.server, "SimStation", RecordingStation)
    world = World(tmp_path)
    if uplink:
        world.start()
    try:
        handle = world.add_station(SID)
        if uplink:
            world.start_centre(world.centre_config(reconnect_max_s=1))
        with running_station(parse_station(SIM, "agent-test"), tcp_port=0, pty=True,
                             baud=19200) as sim:
            assert sim.pty_path is not None and sim.tcp_port is not None
            station = sim.station
            assert isinstance(station, RecordingStation)
            config = tmp_path / "station.toml"
            config.write_text(agent_config(handle.state_dir, sim.pty_path, sim.tcp_port,
                                           uplink))
            sw = StationWorld(world, sim, station, tmp_path, handle.state_dir, config)
            try:
                yield sw
            finally:
                sw.stop()
    finally:
        world.stop_all()


# --------------------------------------------------------------------------- expectations

def device_of(symbol: str) -> tuple[str, int]:
    for name, (unit, symbols) in DEVICES.items():
        if symbol in symbols:
            return name, unit
    raise KeyError(symbol)


def expected_record(station: RecordingStation, samples: list[Sample], rec: Record
                    ) -> tuple[int, float]:
    """(n_valid, mean) of ``rec``'s window from the values the simulator itself served.

    Each of the agent's raw samples (its time stamp puts it in a window) is matched to the
    answer the simulator served for that poll; only values the analyser reported as
    measuring count, as the averaging kernels do (edge_agent/averaging/kernels.py: a point is
    valid when its status is MEASURING).
    """
    _, unit = device_of(rec.channel)
    values = []
    for s in samples:
        if s.channel != rec.channel or not rec.start <= s.t < rec.end:
            continue
        if s.status is Status.OFFLINE:
            continue
        served = station.served_before(unit, rec.channel, s.t)
        assert served.values[rec.channel] == s.value or (
            math.isnan(s.value) and math.isnan(served.values[rec.channel])), \
            f"{rec.channel} at {s.t}: agent has {s.value}, simulator served " \
            f"{served.values[rec.channel]}"
        if served.statuses[rec.channel] is Status.MEASURING:
            values.append(served.values[rec.channel])
    return len(values), (math.fsum(values) / len(values) if values else math.nan)


def full_windows(records: list[tuple[int, Record]]) -> list[Record]:
    return [r for _, r in records if not r.flags & RecordFlag.PARTIAL]


@contextlib.contextmanager
def fault(sim: RunningStation, unit: int, name: str) -> Iterator[None]:
    sim.set_fault(unit, name, True)
    try:
        yield
    finally:
        sim.set_fault(unit, name, False)
