"""The simulator takes writes, and serves the field node's log (issue 15 items 4 and 2).

Writes: a device's ``holding`` block answers FC06/FC16 and reads back with FC03; coils answer
FC05. The writer is mbpoll (libmodbus), a master no one here wrote, over Modbus TCP and RTU:
``-t 4`` with one value is FC06, with several FC16; ``-t 0`` with one value FC05. A write
outside the block is refused (exception 02) and changes nothing.

Field node: a ``field_node`` device answers with the firmware's register map and log
(hw_sim/field_node.py), read here through the gateway's own functions (drivers/field_node.py)
with the simulator's clock in the test's hand, so every slot is known: unsynced records until
the clock is set, mapped to UTC by the clock record; synced records after; values equal to the
signals at the slot times.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from drivers import field_node as fn
from drivers.transport import TcpTransport
from hw_sim import RunningStation, running_station
from hw_sim.config import ConfigError, parse_station
from hw_sim.signals import channel_value

SAMPLER, NODE = 7, 6
T0 = 1_780_000_000.0
NOW = [T0]
CONFIG = {"name": "writes", "device": [
    {"name": "sampler", "profile": "flowmeter", "unit": SAMPLER, "transports": ["tcp", "rtu"],
     "coils": 2, "discrete_inputs": 2, "holding": {"address": 100, "count": 4}},
    {"name": "node", "profile": "field_node", "unit": NODE, "transports": ["tcp"], "seed": 9,
     "log_period_s": 10}]}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningStation]:
    assert shutil.which("mbpoll"), "mbpoll is not installed: apt-get install mbpoll"
    with running_station(parse_station(CONFIG), tcp_port=0, pty=True,
                         clock=lambda: NOW[0]) as s:
        yield s


def mbpoll(sim: RunningStation, mode: str, table: str, address: int,
           values: list[int]) -> subprocess.CompletedProcess[str]:
    common = ["-a", str(SAMPLER), "-t", table, "-0", "-r", str(address), "-1", "-o", "2"]
    if mode == "tcp":
        args = ["mbpoll", "-m", "tcp", "-p", str(sim.tcp_port), *common, "127.0.0.1"]
    else:
        args = ["mbpoll", "-m", "rtu", "-b", "9600", "-P", "none", *common,
                str(sim.pty_path)]
    return subprocess.run([*args, *map(str, values)], capture_output=True, text=True,
                          timeout=20)


def test_mbpoll_writes_registers_and_a_coil_and_reads_them_back(sim: RunningStation) -> None:
    one = mbpoll(sim, "tcp", "4", 101, [4321])  # FC06
    assert one.returncode == 0, one.stdout + one.stderr
    assert sim.station.holding(SAMPLER) == [0, 4321, 0, 0]
    many = mbpoll(sim, "rtu", "4", 100, [1, 2, 3])  # FC16, over the RTU pty
    assert many.returncode == 0, many.stdout + many.stderr
    assert sim.station.holding(SAMPLER) == [1, 2, 3, 0]
    back = subprocess.run(["mbpoll", "-m", "tcp", "-p", str(sim.tcp_port), "-a", str(SAMPLER),
                           "-t", "4", "-0", "-r", "100", "-c", "4", "-1", "127.0.0.1"],
                          capture_output=True, text=True, timeout=20)
    assert back.returncode == 0, back.stdout + back.stderr
    assert [line.split()[-1] for line in back.stdout.splitlines()
            if line.startswith("[10")] == ["1", "2", "3", "0"]
    outside = mbpoll(sim, "tcp", "4", 103, [9, 9])  # 103..104: one past the block
    assert outside.returncode != 0
    assert "Illegal data address" in outside.stdout + outside.stderr
    assert sim.station.holding(SAMPLER) == [1, 2, 3, 0]
    coil = mbpoll(sim, "tcp", "0", 1, [1])  # FC05
    assert coil.returncode == 0, coil.stdout + coil.stderr
    assert sim.station.coils(SAMPLER) == [False, True]


def test_a_holding_block_over_measured_registers_is_refused() -> None:
    bad = {"name": "x", "device": [{"name": "ph", "profile": "ph_probe", "unit": 1,
                                    "holding": {"address": 0, "count": 2}}]}
    with pytest.raises(ConfigError, match=r"device\[0\]\.holding = .*FC03 0 is a measured"):
        parse_station(bad)
    period = {"name": "x", "device": [{"name": "ph", "profile": "ph_probe", "unit": 1,
                                       "log_period_s": 10}]}
    with pytest.raises(ConfigError, match=r"device\[0\]\.log_period_s = 10: .*not a field"):
        parse_station(period)


def test_the_field_node_serves_its_log_through_the_gateways_reads(sim: RunningStation) -> None:
    assert sim.tcp_port is not None
    NOW[0] = T0 + 35.0  # three slots while unsynced, at uptime 10, 20, 30 s
    t = TcpTransport("127.0.0.1", sim.tcp_port)
    try:
        info = fn.read_node(t, NODE)
        assert (info.synced, info.boot, info.uptime, info.clock) == (False, 1, 35, 0)
        assert (info.oldest, info.head) == (0, 3 * 6)  # AI1-AI4, P1-P2 per slot
        fn.set_clock(t, NODE, int(T0 + 35.0))
        NOW[0] = T0 + 61.0  # synced slots at UTC ...40 and ...50 and ...60 (T0 % 10 == 0)
        info = fn.read_node(t, NODE)
        assert info.synced and info.clock == int(T0 + 61.0)
        records = list(fn.read_history(t, NODE, 0))
        assert [r.seq for r in records] == list(range(info.head))
        timed = fn.map_times(records)
        spec = sim.station.config.device(NODE).profile.channel("AI1")
        ai1 = [(tr.utc, tr.record.value, tr.record.unsynced) for tr in timed
               if tr.record.channel == 0]
        slots = [T0 + s for s in (10, 20, 30, 40, 50, 60)]
        assert [u for u, _, _ in ai1] == [int(s) for s in slots]
        assert [v for _, v, _ in ai1] == pytest.approx(
            [channel_value(9, spec, s) for s in slots], rel=1e-6)
        assert [uns for _, _, uns in ai1] == [True] * 3 + [False] * 3
        # the cursor shows the window from where the gateway asks
        assert [r.seq for r in fn.read_history(t, NODE, info.head - 2)] == [
            info.head - 2, info.head - 1]
    finally:
        t.close()
