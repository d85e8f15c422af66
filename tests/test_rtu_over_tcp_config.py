"""A ``[[bus]]`` with ``transport = "rtu-over-tcp"``: read into the model, opened as an RTU
master on a TCP socket that polls the simulator's serial device server, and its mistakes named
by ``quantrac config check`` (the real command, in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers.transport import RtuOverTcpTransport, TcpTransport
from edge_agent.config.reader import load_config
from edge_agent.poll.build import build_buses
from edge_agent.poll.poller import DevicePoller
from hw_sim import parse_station, running_station
from protocol.model import Status

ROOT = Path(__file__).resolve().parents[1]


def station(bus: str) -> str:
    return f"""\
[station]
id = "HCM-WW-0001"
[agent]
state_dir = "state"
[[bus]]
name = "converter"
{bus}
[[device]]
name = "flow"
bus = "converter"
profile = "flowmeter"
unit = 4
"""


def check(tmp_path: Path, bus: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "station.toml"
    path.write_text(station(bus))
    return subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "config", "check",
                           "--offline", str(path)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


@pytest.mark.parametrize(("bus", "message"), [
    ('host = "127.0.0.1"\ntransport = "rtu"',
     "bus 'converter': transport = 'rtu': expected 'tcp' (Modbus TCP) or 'rtu-over-tcp'"),
    ('host = "127.0.0.1"\ntransport = 4001',
     "bus 'converter': transport = 4001: expected 'tcp' (Modbus TCP) or 'rtu-over-tcp'"),
    ('port = "/dev/ttyUSB0"\ntransport = "rtu-over-tcp"',
     "bus 'converter': transport = 'rtu-over-tcp': expected no transport on a serial bus"),
])
def test_config_check_names_a_bad_transport(tmp_path: Path, bus: str, message: str) -> None:
    out = check(tmp_path, bus)
    assert out.returncode != 0
    assert message in out.stdout, out.stdout + out.stderr  # the check's answer: its problems


def test_an_rtu_over_tcp_bus_polls_the_serial_device_server(tmp_path: Path) -> None:
    doc = {"name": "conv", "device": [{"name": "flow", "profile": "flowmeter", "unit": 4,
                                       "transports": ["rtu"]}]}
    with running_station(parse_station(doc), tcp_port=None, rtu_tcp_port=0,
                         clock=lambda: 1_780_000_000.0) as sim:
        path = tmp_path / "station.toml"
        path.write_text(station(f'host = "127.0.0.1"\ntcp_port = {sim.rtu_tcp_port}\n'
                                'transport = "rtu-over-tcp"\nturnaround = 0.01'))
        config = load_config(path)
        [bus] = config.poll.buses
        assert (bus.transport, bus.turnaround) == ("rtu-over-tcp", 0.01)
        [built] = build_buses(config.poll)
        assert isinstance(built.transport, RtuOverTcpTransport)
        assert built.transport.turnaround == 0.01
        try:
            samples = DevicePoller(built.devices[0], built.transport.name,
                                   lambda: 0.0).poll(built.transport)
        finally:
            built.transport.close()
        served = sim.served(4)
        assert served is not None
        assert [s.channel for s in samples] == ["Flow"]  # the Circular 10 channels
        assert samples[0].value == served.values["Flow"]
        assert all(s.status is Status.MEASURING for s in samples)
    path.write_text(station('host = "127.0.0.1"'))  # no transport: Modbus TCP, as before
    [built] = build_buses(load_config(path).poll)
    assert isinstance(built.transport, TcpTransport)
