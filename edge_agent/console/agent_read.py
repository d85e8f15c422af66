"""The technician's register read, done by the running agent on its own bus.

``quantrac diag read --agent SOCKET`` (or ``--bus NAME``) asks the daemon over its control
socket (op ``read``) instead of opening the port itself: the agent owns the serial line, and a
second master on an RS-485 bus garbles both. The daemon's control socket hands the request to
:func:`read_on_agent_bus`, which finds the bus in the running config (by name, by serial port,
or by ``host:port``), takes that bus's open transport from the poller and reads the registers.
The transport serialises transactions, so the read lands between the agent's own polls and
neither sees the other's answer.

Blocking (one Modbus transaction, up to ``timeout``): the daemon runs it on a worker thread,
never on its event loop. A bus the config names but whose worker is not running (no devices
on it) is refused with a hint to use ``diag`` directly; a Modbus failure is an answer
(``ok: false`` with the reason), not an exception, so the technician sees what the bus said.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from drivers.modbus import ModbusError
from edge_agent.config.model import BusConfig
from edge_agent.poll.poller import Poller

log = logging.getLogger("quantrac.edge_agent.console")


def find_bus(buses: Sequence[BusConfig], want: str) -> BusConfig:
    """The bus called ``want`` (its name, its serial port, or ``host:port``); ValueError if none."""
    names = {b.name: b for b in buses}
    bus = names.get(want) or next(
        (b for b in buses
         if want in (getattr(b.serial, "port", None), f"{b.host}:{b.tcp_port}")), None)
    if bus is None:
        raise ValueError(f"no bus {want!r} in the running config (known: {', '.join(names)})")
    return bus


def read_on_agent_bus(buses: Sequence[BusConfig], poller: Poller,
                      msg: Mapping[str, Any]) -> dict[str, Any]:
    """Answer a control-socket ``read`` request (``bus``, ``unit``, ``address``, and optional
    ``function`` 3, ``count`` 2, ``timeout`` 1.0) with ``{"ok": ..., "words"|"error", "bus"}``."""
    bus = find_bus(buses, str(msg["bus"]))
    wanted = bus.serial.port if bus.serial else f"{bus.host}:{bus.tcp_port}"
    transport = poller.transport(wanted)
    if transport is None:
        raise ValueError(f"bus {bus.name!r} has no devices, so the agent has it closed; "
                         "use diag directly")
    unit, function = int(msg["unit"]), int(msg.get("function", 3))
    address, count = int(msg["address"]), int(msg.get("count", 2))
    timeout = float(msg.get("timeout", 1.0))
    try:
        words = transport.read_registers(unit, function, address, count, timeout)
    except ModbusError as exc:
        return {"ok": False, "error": str(exc), "bus": bus.name}
    log.info("diag_read_via_agent", extra={"bus": bus.name, "unit": unit,
                                           "register": address, "count": count})
    return {"ok": True, "words": words, "bus": bus.name}
