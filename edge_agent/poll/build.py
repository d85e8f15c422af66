"""From the config's plain data to open transports: the one place a ``[[bus]]`` becomes a port.

:mod:`edge_agent.config.model` says *what* to poll (``BusConfig``: a serial line or a TCP
endpoint; ``Device``; ``PollPolicy``) and imports nothing that does I/O. Opening a serial port
(pyserial) or a socket happens here, when the agent starts polling or ``diag watch`` does, and
never when a config is read, checked (``quantrac config check``) or handed to the pipeline.
"""

from __future__ import annotations

from drivers.transport import RtuOverTcpTransport, RtuTransport, TcpTransport, Transport
from edge_agent.config.model import BusConfig, PollConfig
from edge_agent.poll.poller import Bus


def open_transport(bus: BusConfig) -> Transport:
    """A fresh transport for ``bus``: RTU on its serial line, Modbus TCP to its host, or RTU
    frames to its host (a serial device server)."""
    if bus.serial is not None:
        return RtuTransport(bus.serial, turnaround=bus.turnaround)
    assert bus.host is not None
    if bus.transport == "rtu-over-tcp":
        return RtuOverTcpTransport(bus.host, bus.tcp_port, turnaround=bus.turnaround)
    return TcpTransport(bus.host, bus.tcp_port)


def build_buses(poll: PollConfig) -> list[Bus]:
    """Fresh transports, one per bus, with their devices (buses without devices dropped)."""
    out = []
    for bus in poll.buses:
        devices = tuple(d for b, d in poll.devices if b == bus.name)
        if devices:
            out.append(Bus(open_transport(bus), devices))
    return out
