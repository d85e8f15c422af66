"""The automatic sampler (``[sampler]``): where it is wired and how often it may run.

Decree 08/2022 (art. 97) expects a wastewater station to have an automatic sampler that takes
a sample when the discharge goes over its limit, so the inspector has the water itself, not
only the analyser's number. Samplers are started by a dry contact or a Modbus write; the
station reaches one either directly on a bus or through a relay of the field node (a coil of
its Modbus slave), so both are "a coil (FC05) or a holding register (FC06) of a unit on a
bus"::

    [sampler]
    bus = "rs485-1"          # a [[bus]] name
    unit = 9                 # its Modbus unit (or the field node's)
    trigger_coil = 0         # FC05 on, then off after pulse_s ... or trigger_register = 2
    # trigger_value = 1      # ... FC06 this value, 0 after pulse_s (the field node's relay
                             # is its holding register 2: 1 closed, 0 open)
    busy_input = 0           # FC02 discrete input: 1 while it samples (or busy_coil, FC01)
    cooldown_s = 3600.0      # no second automatic start within this
    daily_cap = 4            # starts per local day (its bottles run out)
    channels = ["COD"]       # whose exceedances start it (default: every limited channel)

Why a cooldown and a cap: an exceedance usually lasts several windows, and a sampler started
on each would fill every bottle with the same event and have none for the next one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from protocol.config_file import MISSING, Reader


@dataclass(frozen=True, slots=True)
class SamplerSettings:
    bus: str
    unit: int
    trigger: str  # "coil" (FC05) or "register" (FC06)
    address: int
    value: int = 1  # what FC06 writes
    busy: str | None = None  # "input" (FC02), "coil" (FC01) or None: the state is not read
    busy_address: int = 0
    cooldown_s: float = 3600.0
    daily_cap: int = 4
    channels: tuple[str, ...] = ()  # () : every channel with a limit
    timeout_s: float = 1.0
    pulse_s: float = 1.0


_KEYS = {"bus", "unit", "trigger_coil", "trigger_register", "trigger_value", "busy_input",
         "busy_coil", "cooldown_s", "daily_cap", "channels", "timeout_s", "pulse_s"}


def _address(v: Any) -> bool:
    return isinstance(v, int) and 0 <= v <= 0xFFFF


def parse_sampler(r: Reader, doc: Mapping[str, Any], buses: Collection[str],
                  limited: Collection[str]) -> SamplerSettings | None:
    """``[sampler]``, or None without one; each mistake names its key and value.

    ``buses``: the [[bus]] names; ``limited``: the channels that have a ``[[limit]]``."""
    if "sampler" not in doc:
        return None
    where = "sampler"
    before = len(r.problems)
    t = r.table(doc["sampler"], where, _KEYS)
    bus = r.get(t, "bus", where, "str", check=lambda v: v in buses,
                expected=f"a [[bus]] name ({', '.join(sorted(buses)) or 'none'})")
    unit = r.get(t, "unit", where, "int", check=lambda v: 1 <= v <= 247,
                 expected="a Modbus unit id in 1..247")
    coil = r.get(t, "trigger_coil", where, "int", None, check=_address,
                 expected="a coil address in 0..65535")
    register = r.get(t, "trigger_register", where, "int", None, check=_address,
                     expected="a holding register address in 0..65535")
    if ("trigger_coil" in t) == ("trigger_register" in t):
        r.fail(f"{where}.trigger_coil", t.get("trigger_coil", MISSING),
               "one of trigger_coil (FC05) or trigger_register (FC06), not both")
    value = r.get(t, "trigger_value", where, "int", 1, check=lambda v: 0 <= v <= 0xFFFF,
                  expected="a register value in 0..65535")
    if "trigger_value" in t and "trigger_register" not in t:
        r.fail(f"{where}.trigger_value", t["trigger_value"],
               "trigger_register as well (a coil is switched on, it has no value)")
    busy_in = r.get(t, "busy_input", where, "int", None, check=_address,
                    expected="a discrete input address in 0..65535")
    busy_coil = r.get(t, "busy_coil", where, "int", None, check=_address,
                      expected="a coil address in 0..65535")
    if "busy_input" in t and "busy_coil" in t:
        r.fail(f"{where}.busy_coil", t["busy_coil"], "busy_input or busy_coil, not both")
    cooldown = r.get(t, "cooldown_s", where, "number", 3600.0, check=lambda v: v >= 60,
                     expected="seconds >= 60 between automatic starts")
    cap = r.get(t, "daily_cap", where, "int", 4, check=lambda v: 1 <= v <= 96,
                expected="starts per day in 1..96")
    timeout = r.get(t, "timeout_s", where, "number", 1.0, check=lambda v: 0.05 <= v <= 10,
                    expected="seconds in 0.05..10 per Modbus transaction")
    pulse = r.get(t, "pulse_s", where, "number", 1.0, check=lambda v: 0 <= v <= 60,
                  expected="seconds in 0..60 the trigger coil stays on")
    raw = r.get(t, "channels", where, "list", [])
    chans: list[str] = []
    for ch in raw or []:
        if not isinstance(ch, str) or ch not in limited:
            r.fail(f"{where}.channels", ch, "a channel with a [[limit]] "
                                            f"({', '.join(sorted(limited)) or 'none'})")
        else:
            chans.append(ch)
    if len(r.problems) > before or bus is None or unit is None:
        return None
    trigger, address = ("coil", coil) if coil is not None else ("register", register)
    busy, busy_address = (("input", busy_in) if busy_in is not None
                          else ("coil", busy_coil) if busy_coil is not None else (None, 0))
    return SamplerSettings(bus, unit, trigger, int(address or 0), value, busy, busy_address,
                           cooldown, cap, tuple(chans), timeout, pulse)
