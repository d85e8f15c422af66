"""Every station type ``make demo`` offers (``DEMO_STATION=...``) has a config pair that works.

The full demo run is tests/test_demo.py's (wastewater, the default; a run takes a minute, too
long to repeat per type in CI). Here, per type and in seconds: the station config the demo
writes from ``examples/TYPE.toml`` passes ``quantrac config check`` (the real command), and
the simulator started from ``hw_sim/examples/TYPE.toml`` answers every device of it with the
values it served, through the agent's own buses and pollers, so the demo of that type has
nothing silent but the analyser it silences on purpose. A field node's channels come from its
log, not its live registers (edge_agent/poll/backfill.py): the groundwater demo's well-3 level
is read here through the agent's own backfill step, slot by slot.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from edge_agent.config.reader import load_config
from edge_agent.core.backfill import is_field_node
from edge_agent.poll.backfill import FieldNodeStep
from edge_agent.poll.build import build_buses
from edge_agent.poll.poller import DevicePoller
from hw_sim import running_station
from hw_sim.signals import channel_value
from protocol.model import Sample, Status

ROOT = Path(__file__).resolve().parents[1]


def demo_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quantrac_demo", ROOT / "examples" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


DEMO = demo_module()


@pytest.mark.parametrize("kind", DEMO.STATIONS)
def test_the_demo_config_of_each_station_type_is_checked_and_served(
        kind: str, tmp_path: Path) -> None:
    st = DEMO.station_for(kind)
    with running_station(st.sim_config, tcp_port=0, pty=True,
                         clock=lambda: 1_780_000_000.0) as sim:
        path = tmp_path / "station.toml"
        path.write_text(st.config(str(sim.pty_path), sim.tcp_port))
        check = subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "config",
                                "check", "--offline", str(path)], capture_output=True,
                               text=True, timeout=60, cwd=tmp_path)
        assert check.returncode == 0 and ": ok: station " in check.stdout, \
            check.stdout + check.stderr
        config = load_config(path)
        symbols = {c.symbol for c in config.channels}
        assert st.fault_channel in symbols
        assert any(d.name == st.fault_device and d.unit == st.fault_unit
                   for _, d in config.poll.devices)
        polled = 0
        for bus in build_buses(config.poll):
            try:
                for device in bus.devices:
                    samples = DevicePoller(device, bus.transport.name, lambda: 0.0).poll(
                        bus.transport)
                    served = sim.served(device.unit)
                    assert served is not None, (kind, device.name)
                    assert [s.channel for s in samples] == list(device.channel_names)
                    assert all(s.status is not Status.OFFLINE for s in samples), samples
                    for s in samples:
                        assert s.value == pytest.approx(served.values[s.channel], rel=1e-6), \
                            (kind, device.name, s)
                    polled += 1
            finally:
                bus.transport.close()
        assert polled == st.analysers == len(config.poll.devices)


def test_the_groundwater_field_node_delivers_the_well_3_level_from_its_log(
        tmp_path: Path) -> None:
    st = DEMO.station_for("groundwater")
    now = [1_780_000_000.0]
    with running_station(st.sim_config, tcp_port=0, pty=True, clock=lambda: now[0]) as sim:
        path = tmp_path / "station.toml"
        path.write_text(st.config(str(sim.pty_path), sim.tcp_port))
        config = load_config(path)
        [(bus, node)] = [(b, d) for b in build_buses(config.poll) for d in b.devices
                         if is_field_node(d.profile)]
        assert [c.symbol for c in config.channels if c.device == node.name] == ["Level_W3"]
        got: list[Sample] = []
        step = FieldNodeStep(node.name, node.unit, None,
                             lambda _d, samples, _c, _cov: got.extend(samples), lambda: now[0])
        poller = DevicePoller(node, bus.transport.name, lambda: now[0])
        try:
            for _ in range(4):  # the first step sets the node's clock and starts at its head
                poller.poll(bus.transport)
                step(poller, bus.transport)
                now[0] += 1.0
        finally:
            bus.transport.close()
        spec = sim.station.config.device(node.unit).profile.channel("AI1")
        assert [s.t for s in got] == [now[0] - 3, now[0] - 2, now[0] - 1]  # slots after the set
        assert [s.value for s in got] == pytest.approx(
            [channel_value(306, spec, s.t) for s in got], rel=1e-6)
        assert all(s.channel == "AI1" and s.status is Status.MEASURING for s in got)


def test_a_station_type_without_its_files_says_what_is_missing(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--station",
                          "wastewater", "--work", str(tmp_path / "run"), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert "--station {wastewater,stackgas,groundwater,ambient}" in out.stdout
    with pytest.raises(DEMO.MissingStation, match=r"examples/marine\.toml and "
                       r"hw_sim/examples/marine\.toml missing"):
        DEMO.station_for("marine")
