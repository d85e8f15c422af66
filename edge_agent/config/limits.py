"""Discharge limits from the permit: which record is over its limit (``[[limit]]``).

A permit states, per parameter, the highest (for pH also the lowest) value the discharge may
have, and over which averaging time it is judged (an hourly mean, a daily mean). So a limit
here belongs to one reported channel *and* one window width: the 5-minute record of COD may
pass 150 mg/L for a moment without the hourly mean doing so, and only the window the permit
names makes an exceedance. Two ways to give the number::

    [[limit]]
    channel = "COD"
    window = 3600          # the width of a configured window or roll-up
    max = 120.0            # the permit's value, in the unit the record carries

    [[limit]]
    channel = "TSS"
    window = 3600
    standard = "QCVN 40:2011"   # a shipped table (limit_tables/*.toml)
    column = "B"                # the permit's column
    kq = 0.9                    # the facility's factors: Cmax = C x Kq x Kf
    kf = 1.0

A table's value is the regulation's C; the permit's factors multiply it except for the
parameters the regulation exempts (temperature, colour, pH). The tables are data with a
source note each, so a regulation's numbers are reviewed in one file, not in code; a table
whose values could not be confirmed ships without them and is refused by name, never guessed.

Only valid records are judged: an invalid window's mean is not a measurement of the discharge
(too few samples, a calibration), and calling it an exceedance would trigger the sampler on
an analyser fault. The judging itself is :meth:`Limit.breached`, pure, used by the pipeline.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from protocol.config_file import MISSING, Reader


@dataclass(frozen=True, slots=True)
class Limit:
    """One channel's limit for records of one window width; ``source`` says where it came from
    (``permit`` or ``QCVN 40:2011 B x Kq 0.9 x Kf 1``), shown with an exceedance."""

    channel: str
    window: int
    max: float | None
    min: float | None
    source: str

    def breached(self, value: float) -> bool:
        """Over ``max`` or under ``min``; equal to the limit is within it (the permit's
        "not more than"). NaN is never a breach: no value was measured."""
        if math.isnan(value):
            return False
        return (self.max is not None and value > self.max) or (
            self.min is not None and value < self.min)

    def text(self) -> str:
        """``> 135`` / ``outside 6..9``: the bound, for status lines and logs."""
        if self.min is None:
            return f"max {self.max:g}"
        if self.max is None:
            return f"min {self.min:g}"
        return f"{self.min:g}..{self.max:g}"


@dataclass(frozen=True, slots=True)
class TableRow:
    unit: str
    values: Mapping[str, float | tuple[float, float]]  # column -> C, or (low, high) for pH
    factors: bool


@dataclass(frozen=True, slots=True)
class Table:
    standard: str
    columns: tuple[str, ...]
    confirmed: bool
    rows: Mapping[str, TableRow]


_TABLE_FILES = ("qcvn40_2011.toml", "qcvn40_2025.toml")


@cache
def tables() -> Mapping[str, Table]:
    """The shipped limit tables by standard name (read once from the package's data)."""
    out: dict[str, Table] = {}
    folder = resources.files("edge_agent.config") / "limit_tables"
    for name in _TABLE_FILES:
        doc = tomllib.loads((folder / name).read_text(encoding="utf-8"))
        rows = {}
        for param, row in doc.get("parameter", {}).items():
            values: dict[str, float | tuple[float, float]] = {}
            for col in doc["columns"]:
                v = row[col]
                values[col] = (float(v[0]), float(v[1])) if isinstance(v, list) else float(v)
            rows[param] = TableRow(row["unit"], values, bool(row.get("factors", True)))
        out[doc["standard"]] = Table(doc["standard"], tuple(doc["columns"]),
                                     bool(doc["confirmed"]), rows)
    return out


def _same_unit(a: str, b: str) -> bool:
    """``mg/l`` and ``mg/L`` are one unit; a degree sign written ``oC`` or ``degC`` too."""
    def norm(u: str) -> str:
        u = u.replace(" ", "").lower()
        return {"oc": "°c", "degc": "°c", "ptco": "pt/co", "pt-co": "pt/co"}.get(u, u)
    return norm(a) == norm(b)


_KEYS = {"channel", "window", "max", "min", "standard", "column", "parameter", "kq", "kf"}


def parse_limits(r: Reader, doc: Mapping[str, Any], units: Mapping[str, str],
                 widths: Collection[int]) -> tuple[Limit, ...]:
    """Every ``[[limit]]`` of the station config; each mistake a problem naming key and value.

    ``units``: the reported channels' symbols and unit labels; ``widths``: the window and
    roll-up widths records are made for."""
    out: list[Limit] = []
    seen: set[tuple[str, int]] = set()
    for i, t in enumerate(r.tables(doc, "limit", "limit")):
        where = f"limit[{i}]"
        before = len(r.problems)
        t = r.table(t, where, _KEYS)
        channel = r.get(t, "channel", where, "str", check=lambda v: v in units,
                        expected="a reported channel symbol "
                                 f"({', '.join(sorted(units)) or 'none'})")
        window = r.get(t, "window", where, "int", check=lambda v: v in widths,
                       expected="the width in seconds of a configured window or roll-up "
                                f"({', '.join(map(str, sorted(widths)))})")
        if "standard" in t:
            limit = _from_table(r, t, where, channel, units)
            for key in ("max", "min"):
                if key in t:
                    r.fail(f"{where}.{key}", t[key], "no max/min with standard (the table's "
                                                     "value applies; drop one of them)")
        else:
            limit = _from_permit(r, t, where)
        if len(r.problems) > before or limit is None or channel is None or window is None:
            continue
        if (channel, window) in seen:
            r.fail(f"{where}.channel", channel, f"one limit per channel and window "
                                                f"({channel} at {window} s is limited twice)")
            continue
        seen.add((channel, window))
        low, high, source = limit
        out.append(Limit(channel, window, high, low, source))
    return tuple(out)


def _from_permit(r: Reader, t: Mapping[str, Any],
                 where: str) -> tuple[float | None, float | None, str] | None:
    for key in ("column", "parameter", "kq", "kf"):
        if key in t:
            r.fail(f"{where}.{key}", t[key], "standard = ... as well (it only applies to a "
                                             "table's value)")
    high = r.get(t, "max", where, "number", None)
    low = r.get(t, "min", where, "number", None)
    if "max" not in t and "min" not in t:
        r.fail(f"{where}.max", MISSING, "the permit's value (max = ..., min = ... for a "
                                        "lower bound), or standard = ... with column = ...")
        return None
    if high is not None and low is not None and low >= high:
        r.fail(f"{where}.min", low, f"a lower bound below max = {high:g}")
        return None
    return low, high, "permit"


def _from_table(r: Reader, t: Mapping[str, Any], where: str, channel: str | None,
                units: Mapping[str, str]) -> tuple[float | None, float | None, str] | None:
    known = tables()
    standard = r.get(t, "standard", where, "str", check=lambda v: v in known,
                     expected=f"a shipped limit table ({', '.join(sorted(known))})")
    if standard is None:
        return None
    table = known[standard]
    if not table.confirmed:
        r.fail(f"{where}.standard", standard,
               f"a table with confirmed values: the values of {standard} are not shipped "
               "(they could not be confirmed); give the permit's value as max = ...")
        return None
    column = r.get(t, "column", where, "str", check=lambda v: v in table.columns,
                   expected=f"a column of {standard} ({', '.join(table.columns)})")
    default_param = None if channel is None else channel.partition("_")[0]
    param = r.get(t, "parameter", where, "str", default_param,
                  check=lambda v: v in table.rows,
                  expected=f"a parameter of {standard} ({', '.join(table.rows)})")
    if "parameter" not in t and param is not None and param not in table.rows:
        r.fail(f"{where}.channel", channel, f"a parameter of {standard} "
               f"({', '.join(table.rows)}), or parameter = ... naming it")
        return None
    if column is None or param is None or param not in table.rows:
        return None
    row = table.rows[param]
    unit = units.get(channel or "", "")
    if not _same_unit(unit, row.unit):
        r.fail(f"{where}.channel", channel,
               f"a channel in {row.unit!r}, the unit of {standard} {param} (its unit is "
               f"{unit!r})")
        return None
    kq = kf = 1.0
    if row.factors:
        kq = r.get(t, "kq", where, "number", check=lambda v: 0 < v <= 2,
                   expected="the permit's Kq (receiving water factor), a number in (0, 2]")
        kf = r.get(t, "kf", where, "number", check=lambda v: 0 < v <= 2,
                   expected="the permit's Kf (discharge flow factor), a number in (0, 2]")
        if kq is None or kf is None:
            return None
    else:
        for key in ("kq", "kf"):
            if key in t:
                r.fail(f"{where}.{key}", t[key],
                       f"no factor: {standard} applies none to {param} (Cmax = C)")
    value = row.values[column]
    source = f"{standard} {column}"
    if isinstance(value, tuple):
        return value[0], value[1], source
    if row.factors:
        source += f" x Kq {kq:g} x Kf {kf:g}"
    return None, value * kq * kf, source
