"""`quantrac status --json` is JSON that any parser accepts (issue 10, S10): an offline
channel's last value is NaN inside the agent, and Python's json would write it as `NaN`, which
RFC 8259 does not allow. Checked against the running agent with a silent analyser, parsed by
a strict parser that refuses NaN, Infinity and -Infinity."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.console.control_client import request
from tests.agent_world import StationWorld, fault, station_world
from tests.mqtt_world import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def sw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StationWorld]:
    yield from station_world(tmp_path, monkeypatch, uplink=False)


def strict_loads(text: str | bytes) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def cod_value(sw: StationWorld) -> Any:
    """COD's last value as the control socket answers it (raw bytes, strictly parsed)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(sw.socket))
        sock.sendall(b'{"op": "status"}\n')
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = strict_loads(data)["status"]
    return next(c for c in status["channels"] if c["symbol"] == "COD")["value"]


def test_status_json_of_an_offline_channel_is_strict_json_with_null(sw: StationWorld) -> None:
    agent = sw.start_agent()
    wait_for(lambda: sw.socket.exists() and request(sw.socket, {"op": "status"})["status"]
             ["ready"], 30, "the agent to be ready")
    with fault(sw.sim, 2, "no_answer"):  # the Hach controller (COD, NH4) goes silent
        wait_for(lambda: cod_value(sw) is None, 60, "COD's value to be no value (offline)")
        out = subprocess.run(
            [sys.executable, "-m", "edge_agent.daemon.cli", "status", "--socket", str(sw.socket),
             "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    status = strict_loads(out.stdout)  # refuses NaN / Infinity
    cod = next(c for c in status["channels"] if c["symbol"] == "COD")
    assert cod["value"] is None and cod["status"] == "offline"
    ph = next(c for c in status["channels"] if c["symbol"] == "pH")
    assert isinstance(ph["value"], float) and math.isfinite(ph["value"])
    assert sw.stop_agent(agent) == 0
