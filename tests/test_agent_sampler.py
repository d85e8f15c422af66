"""The whole station with a limit and a sampler (issue 15 items 4, 5): ``quantrac run``.

tests/agent_world.py's station (simulated analysers on a pty and on TCP, Mosquitto, the
centre's receiver, ``quantrac run`` in its own process), with the flowmeter's unit (4, on the
TCP bus) also carrying a sampler's coils and inputs, a COD limit every record breaks, and a
sampler with a 60 s cooldown. The records over the limit reach the centre flagged; exactly one
of them within the cooldown carries SAMPLER_TRIGGERED and the sampler acknowledged the start;
``quantrac status`` shows both; ``quantrac sampler trigger`` is refused inside the cooldown
with its reason on stderr; the flowmeter on the same unit and bus goes on being polled.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.agent_world as aw
from protocol.model import RecordFlag
from tests.agent_world import StationWorld, station_world
from tests.mqtt_world import wait_for

SAMPLER = """
[[limit]]
channel = "COD"
window = 10
max = 0.0

[sampler]
bus = "lan"
unit = 4
trigger_coil = 0
busy_input = 0
cooldown_s = 60.0
daily_cap = 2
timeout_s = 0.5
pulse_s = 0.2
"""


@pytest.fixture
def sw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StationWorld]:
    sim: dict[str, Any] = copy.deepcopy(aw.SIM)
    devices: list[dict[str, Any]] = sim["device"]
    for d in devices:
        if d["name"] == "flow":
            d.update(coils=2, discrete_inputs=2)
    monkeypatch.setattr(aw, "SIM", sim)
    yield from station_world(tmp_path, monkeypatch)


def quantrac(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_exceedances_start_the_sampler_once_and_reach_the_centre(sw: StationWorld) -> None:
    sw.config.write_text(sw.config.read_text() + SAMPLER)
    assert quantrac("config", "check", str(sw.config)).returncode in (0, 2)
    agent = sw.start_agent()

    def flagged(flag: RecordFlag) -> list[int]:
        return [r.start for _, r in sw.centre_records()
                if r.channel == "COD" and r.flags & flag]

    wait_for(lambda: len(flagged(RecordFlag.EXCEEDANCE)) >= 3, 90,
             f"three COD exceedances at the centre\n{sw.log()[-3000:]}", poll=0.2)
    over = flagged(RecordFlag.EXCEEDANCE)
    started = flagged(RecordFlag.SAMPLER_TRIGGERED)
    assert len(started) == 1 and started[0] == over[0], (over, started)
    assert all(r.valid for _, r in sw.centre_records() if r.flags & RecordFlag.EXCEEDANCE)
    wait_for(lambda: '"starts": 1' in quantrac("status", "--json", "--socket",
                                                str(sw.socket)).stdout, 30, "the start done")
    status = json.loads(quantrac("status", "--json", "--socket", str(sw.socket)).stdout)
    assert status["exceedances"]["count"] >= 3
    assert status["exceedances"]["last"]["channel"] == "COD"
    sampler = status["sampler"]
    assert (sampler["starts"], sampler["failed"], sampler["problem"]) == (1, 0, None)
    assert sampler["last_start"]["by"] == "exceedance" and sampler["last_start"]["ok"]
    assert sampler["starts_today"] == 1 and sampler["refused"] >= 2
    text = quantrac("status", "--socket", str(sw.socket)).stdout
    assert "! exceed" in text and "sampler " in text and "1/2 today" in text
    refused = quantrac("sampler", "trigger", "--socket", str(sw.socket))
    assert refused.returncode == 1 and refused.stdout == ""
    assert "sampler not started: cooldown: last start" in refused.stderr
    assert "sampler_start" in sw.log() and "sampler_started" in sw.log()
    # the flowmeter shares the unit and the bus: still polled, its records valid
    flow = [r for _, r in sw.centre_records() if r.channel == "Flow"]
    assert flow and flow[-1].valid
    assert sw.stop_agent(agent) == 0
