"""Extracted volume from a totaliser channel: the ``[[totaliser]]`` tables of a station config.

A groundwater permit caps the volume a well extracts per day and per month, so a station on a
well reports, besides the flow and the water level, the volume its flowmeter's totaliser
counted in each local day and month (``edge_agent.averaging.totaliser`` says how)::

    [[totaliser]]
    channel = "Total_W1"       # the reported symbol of the totaliser's readings (m3)
    volume = "V_W1"            # the volume records' symbol (default: V + the channel's tag)
    modulus = 100000000        # where the register wraps (the meter's manual; none: never)
    on_drop = "auto"           # a lower reading: auto, rollover or replacement
    replaced_at = [2026-11-30T09:00:00+07:00]   # meter replacements (the work order's time)
    periods = ["day", "month"]
    edge_s = 3600.0            # how far a boundary reading may lie before its boundary

``replaced_at`` is the installer's override of the drop rule, taken from the work order of the
replacement: the pair of readings around that time counts nothing, whatever the new meter
showed. Times must carry their UTC offset: a bare local time would be read in whatever zone
the gateway happens to be set to.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Mapping
from typing import Any

from edge_agent.averaging.totaliser import DROP_RULES, PERIODS, TotaliserSpec
from protocol.config_file import Reader

_KEYS = {"channel", "volume", "modulus", "on_drop", "replaced_at", "periods", "edge_s"}


def parse_totalisers(r: Reader, doc: Mapping[str, Any], units: Mapping[str, str],
                     periods_s: Mapping[str, float], taken: Collection[str] = ()
                     ) -> tuple[TotaliserSpec, ...]:
    """Every ``[[totaliser]]``; ``units``: the reported symbols and their units, ``periods_s``
    their poll intervals, ``taken``: symbols the volume record may not reuse."""
    out: list[TotaliserSpec] = []
    used = {*units, *taken}
    for i, raw in enumerate(r.tables(doc, "totaliser", "totaliser")):
        where = f"totaliser[{i}]"
        t = r.table(raw, where, _KEYS)
        channel = r.get(t, "channel", where, "str")
        if channel is not None and channel not in units:
            r.fail(f"{where}.channel", channel,
                   f"a reported channel symbol ({', '.join(sorted(units)) or 'none'})")
            channel = None
        elif channel is not None and units[channel] != "m3":
            r.fail(f"{where}.channel", channel,
                   f"a totaliser counting m3 (it is reported in {units[channel]!r})")
            channel = None
        _, sep, tag = (channel or "Total").partition("_")
        volume = r.get(t, "volume", where, "str", f"V_{tag}" if sep else "V")
        if volume is not None and volume in used:
            r.fail(f"{where}.volume", volume, "a symbol no channel or other totaliser reports")
        elif volume is not None:
            used.add(volume)
        modulus = r.get(t, "modulus", where, "number", None, check=lambda v: v > 0,
                        expected="a positive number (where the register wraps)")
        on_drop = r.choice(t, "on_drop", where, DROP_RULES, "auto")
        if on_drop == "rollover" and modulus is None:
            r.fail(f"{where}.on_drop", on_drop, "auto or replacement when no modulus is given "
                                                "(a roll-over needs the modulus)")
        periods = r.get(t, "periods", where, "list", list(PERIODS),
                        check=lambda v: bool(v) and all(p in PERIODS for p in v)
                        and len(set(v)) == len(v),
                        expected=f"a non-empty list of {' and/or '.join(PERIODS)}")
        edge_s = r.get(t, "edge_s", where, "number", 3600.0,
                       check=lambda v: 0 < v <= 86400,
                       expected="seconds in (0, 86400]")
        replaced = _times(r, t, f"{where}.replaced_at")
        if channel is None or volume is None or r.problems:
            continue
        out.append(TotaliserSpec(
            source=channel, channel=volume, modulus=modulus, on_drop=on_drop or "auto",
            replaced_at=replaced, edge_s=edge_s, period_s=periods_s.get(channel, 60.0),
            periods=tuple(periods)))
    return tuple(out)


def _times(r: Reader, t: Mapping[str, Any], where: str) -> tuple[float, ...]:
    value = t.get("replaced_at", [])
    times: list[float] = []
    if not isinstance(value, list):
        r.fail(where, value, "an array of date-times with their offset "
                             "([2026-11-30T09:00:00+07:00])")
        return ()
    for j, v in enumerate(value):
        if not isinstance(v, dt.datetime) or v.utcoffset() is None or not math.isfinite(
                v.timestamp()):
            r.fail(f"{where}[{j}]", v, "a date-time with its UTC offset "
                                       "(2026-11-30T09:00:00+07:00), unquoted")
            continue
        times.append(v.timestamp())
    return tuple(times)
