"""Issue 14, item 8, end to end: the field node's firmware (MicroPython unix port, -X
heapsize=200k) on a socat pty, the agent (`quantrac run`) polling it as a ``field_node``
device, real Mosquitto, the centre receiver.

Time scaling (stated, not hidden): the agent's clock is the real wall clock, so the node runs
in real time too (its control file gives no ``sim_ms``) and the gateway sets its UTC. The node
logs every second (``period_s = 1``), the averaging windows are 5 s, and the trunk is cut
(socat killed, as tests/test_firmware_node.py does) for 30 real seconds: six windows, the
same count as 30 minutes of 5-minute windows and more than the issue's "10 simulated minutes
= two 5-minute windows" (the windows are short so that each of the two runs of this test takes
about a minute: the whole suite has to fit in CI's time). The inputs are moved by a driver
thread all the time (a ramp), so a window's mean depends on every one of its samples.

The uncut reference is the node's own complete log read back after the run: in an uncut run
the agent averages exactly those samples (edge_agent/core/backfill.py: the log is the source
of a field node's logged channels), which the windows before the cut show in the same run.
Every record at the centre must equal the reference's window: same n_valid, same mean.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers import field_node
from drivers.transport import RtuTransport, SerialSettings
from protocol.model import Record, RecordFlag, Status
from provisioning.firmware_cli import NodeProcess
from tests.mqtt_world import World, wait_for

pytestmark = pytest.mark.slow
SID = "HCM-FN-01"
UNIT = 17
WIDTH = 5
CUT_S = 30.0
SYMBOLS = {0: "TSS", 1: "pH"}  # log channel -> symbol at the centre
NODE = {
    "unit": UNIT, "period_s": 1, "scan_ms": 100, "oversample": 4, "filter": "median",
    "watchdog_ms": 4000,
    "analog": [{"name": "TSS", "lo": 0.0, "hi": 100.0, "unit": "mg/L"},
               {"name": "pH", "lo": 0.0, "hi": 14.0, "unit": "pH"}],
    "pulse": [], "digital": [],
}


def agent_config(state_dir: Path, port: str, horizon: float) -> str:
    return f"""\
[station]
id = "{SID}"
province = "HCM"
facility = "Test"
name = "Outfall1"
[agent]
state_dir = "{state_dir}"
sample_flush_s = 1.0
backfill_horizon_s = {horizon}
[poll]
timeout = 0.3
retries = 0
backoff_max = 2.0
[[bus]]
name = "rs485"
port = "{port}"
baud = 9600
[[device]]
name = "node"
bus = "rs485"
profile = "field_node"
unit = {UNIT}
interval = 1.0
[device.channels.AI1]
symbol = "TSS"
unit = "mg/L"
[device.channels.AI2]
symbol = "pH"
unit = "pH"
[averaging]
windows = [{WIDTH}]
grace_s = 1.0
[uplink.mqtt]
window = 8
ack_timeout_s = 5.0
backoff_cap_s = 1.0
"""


@dataclass
class Bench:
    world: World
    node: NodeProcess
    root: Path
    config: Path
    agent: subprocess.Popen[bytes] | None = None

    def start_agent(self) -> None:
        out = (self.root / "agent.log").open("ab")
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.daemon.cli", "run", "--config", str(self.config)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        out.close()

    def log(self) -> str:
        return self.world.log("agent.log")

    def records(self) -> list[Record]:
        return [r for _, r in self.world.stored(SID)]


def drive(node: NodeProcess, stop: threading.Event) -> None:
    """Keep both loop currents moving (a ramp of 0.37 mA steps, never constant)."""
    k = 0
    while not stop.wait(0.35):
        k += 1
        node.set(ma=[4.0 + (k * 0.37) % 16.0, 4.0 + (k * 0.53) % 16.0])


@pytest.fixture(params=[120.0, 0.0], ids=["within_horizon", "beyond_horizon"])
def bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bench]:
    assert shutil.which("socat") and shutil.which("mosquitto")
    world = World(tmp_path)
    world.start()
    stop = threading.Event()
    try:
        handle = world.add_station(SID)
        world.start_centre(world.centre_config(reconnect_max_s=1))
        with NodeProcess(NODE, tmp_path / "node", sim_ms=None) as node:
            node.set(ma=[12.0, 12.0])
            node.start()
            driver = threading.Thread(target=drive, args=(node, stop), daemon=True)
            driver.start()
            config = tmp_path / "station.toml"
            config.write_text(agent_config(handle.state_dir, node.port, request.param))
            b = Bench(world, node, tmp_path, config)
            try:
                yield b
            finally:
                stop.set()
                driver.join(5)
                if b.agent is not None and b.agent.poll() is None:
                    b.agent.kill()
                    b.agent.wait()
    finally:
        world.stop_all()


def reference(node: NodeProcess) -> dict[tuple[str, int], tuple[int, float]]:
    """{(symbol, window start): (n measuring, mean)} from the node's whole log."""
    t = RtuTransport(SerialSettings(node.port, 9600))
    try:
        recs = list(field_node.read_history(t, UNIT, 0))
    finally:
        t.close()
    values: dict[tuple[str, int], list[float]] = {}
    for tr in field_node.map_times(recs):
        sym = SYMBOLS.get(tr.record.channel)
        if sym is None or tr.utc is None or tr.record.status != 0:
            continue
        values.setdefault((sym, tr.utc // WIDTH * WIDTH), []).append(tr.record.value)
    return {k: (len(v), math.fsum(v) / len(v)) for k, v in values.items()}


def cut_the_trunk(b: Bench) -> tuple[float, float]:
    """Start the agent, let it run uncut, cut the pty for CUT_S, bring it back; the cut span."""
    b.start_agent()
    wait_for(lambda: "event=field_node_clock_set" in b.log(), 30,
             f"the agent setting the node's clock\n{b.log()[-2000:]}")
    wait_for(lambda: sum(r.valid for r in b.records()) >= 2 * 3, 90,
             f"three valid windows per channel at the centre\n{b.log()[-2000:]}", poll=0.2)
    b.node.pty.stop()
    cut_from = time.time()
    wait_for(lambda: "event=poll_failed device=node" in b.log(), 20, "the cut seen")
    wait_for(lambda: time.time() - cut_from >= CUT_S, CUT_S + 10, "the cut's length", poll=0.5)
    b.node.pty.start()
    cut_to = time.time()
    wait_for(lambda: "event=device_recovered device=node" in b.log(), 30,
             f"the node answering again\n{b.log()[-2000:]}")
    wait_for(lambda: {r.channel for r in b.records() if r.start >= cut_to + WIDTH}
             == set(SYMBOLS.values()), 90, f"windows after the cut\n{b.log()[-2000:]}",
             poll=0.2)
    assert b.agent is not None
    b.agent.terminate()
    assert b.agent.wait(30) == 0, b.log()[-3000:]
    return cut_from, cut_to


def test_a_trunk_cut_is_backfilled_and_the_averages_equal_an_uncut_run(bench: Bench) -> None:
    b = bench
    horizon = float(b.config.read_text().split("backfill_horizon_s = ")[1].split()[0])
    cut_from, cut_to = cut_the_trunk(b)
    ref = reference(b.node)
    records = [r for r in b.records() if not r.flags & RecordFlag.PARTIAL]
    keys = [(r.channel, r.start) for r in records]
    assert len(keys) == len(set(keys)), "one record per window"
    inside = [r for r in records if r.start >= cut_from and r.end <= cut_to]
    assert len(inside) >= 2 * 4, "windows wholly inside the cut"
    first = min(r.start for r in records if r.valid)
    for ch in SYMBOLS.values():
        starts = sorted(r.start for r in records if r.channel == ch and r.start >= first)
        assert starts == list(range(starts[0], starts[-1] + WIDTH, WIDTH)), f"{ch}: a hole"
    log = b.log()
    if horizon >= CUT_S + 2 * WIDTH:
        # the windows of the cut waited for the log: each equals the uncut reference
        checked = 0
        for r in records:
            if r.start < first or (r.channel, r.start) not in ref:
                continue
            n, mean = ref[(r.channel, r.start)]
            assert r.n_valid == n, r
            assert r.mean == pytest.approx(mean, rel=1e-9, abs=1e-9), r
            checked += 1
        assert all(r.valid and r.n_valid == WIDTH and r.status is Status.MEASURING
                   for r in inside), inside
        assert checked >= len(inside) + 2 * 5
        assert not any(r.status is Status.OFFLINE for r in records if r.start >= first)
        assert "averaging_late_sample_dropped" not in log
    else:
        # beyond the horizon: the cut's windows closed OFFLINE and stand; the log's samples
        # for them are not applied (logged), and no window is made a second time
        assert all(not r.valid and r.n_valid == 0 and r.status is Status.OFFLINE
                   for r in inside), inside
        assert "averaging_late_sample_dropped" in log
        # the flag goes on the next record of the channel to close after the drop: the
        # window the trunk came back in, or a later one
        assert any(r.flags & RecordFlag.LATE_DROPPED for r in records if r.end > cut_to)
    assert "event=backfill_read" in log and "Traceback" not in log, log[-3000:]
