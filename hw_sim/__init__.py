"""quantrac-edge: simulated analysers and stations (``quantrac sim``).

``with running_station(config, tcp_port=0, pty=True) as sim:`` serves a station over Modbus
TCP and over a socat pty; ``sim.set_fault(unit, "crc_error")`` and ``sim.served(unit)`` steer
and inspect it.
"""

from hw_sim.config import ConfigError, DeviceConfig, SimStationConfig, load_station, parse_station
from hw_sim.faults import FAULTS
from hw_sim.server import RunningStation, running_station, send_control
from hw_sim.slave import Served, SimStation

__all__ = [
    "FAULTS",
    "ConfigError",
    "DeviceConfig",
    "RunningStation",
    "Served",
    "SimStation",
    "SimStationConfig",
    "load_station",
    "parse_station",
    "running_station",
    "send_control",
]
