"""Stack-gas standards as data: reference conditions and reference O2 per source category.

A regulation changes (QCVN 19:2009 gave way to QCVN 19:2024 on 1 Jul 2025, with stations in
transition until 2031), and a value found wrong in one must be fixable by an installer reading
the regulation, not by a programmer. So each standard is one TOML file beside this module,
``<anything>.toml``, holding::

    standard = "QCVN 19:2024"        # the name a station config selects it by
    title = "..."                    # what it is, for people
    in_force = "2025-07-01"
    replaced_by = "..."              # optional: the standard that replaced it
    [conditions]                     # what "Nm3" means under it
    temp_c = 25.0                    # reference temperature, degC
    pressure_kpa = 101.325           # reference pressure, kPa absolute
    molar_volume_l = 24.45           # L/mol there, as the regulation prints it
    dry = true                       # concentrations are on dry gas
    verified = false                 # checked against the gazetted text?
    note = "..."                     # where the values come from
    [category.<key>]                 # one per source category
    title = "..."
    o2_ref = 15.0                    # reference O2 % (dry); absent: no O2 correction
    verified = false
    note = "..."

The molar volume is data rather than R*T/P because regulations print a rounded constant
(24.45 L/mol at 25 degC where the ideal gas gives 24.465), and a station must reproduce the
inspector's arithmetic to the digit. A file is checked on load (``molar_volume_l`` within
0.5 % of the ideal gas at its temperature and pressure, ``o2_ref`` in [0, 21)) so a typo in
the data stops the agent instead of shifting every record by it.

This module is a package of its own, beside the station-config reader and not in it, because
these files are the project's data, not the installer's config: their keys are not station
keys (tests/test_docs_config.py reads the station keys from ``edge_agent/config/*.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.config_file import ConfigError, Reader, read_toml

HERE = Path(__file__).resolve().parent

_GAS_CONSTANT = 8.314462618  # J/(mol K)


class StandardError(ConfigError):
    """A standards data file that is not usable (a shipped file: a bug, named by key)."""


@dataclass(frozen=True, slots=True)
class SourceCategory:
    """One row of a standard's reference-O2 table."""

    key: str
    title: str
    o2_ref: float | None  # None: no O2 correction for this source
    verified: bool
    note: str


@dataclass(frozen=True, slots=True)
class Standard:
    """One regulation's reference conditions and its source categories."""

    name: str
    title: str
    file: Path
    in_force: str
    replaced_by: str | None
    temp_c: float
    pressure_kpa: float
    molar_volume_l: float
    dry: bool
    verified: bool
    note: str
    categories: Mapping[str, SourceCategory]

    @property
    def pressure_mmhg(self) -> float:
        return self.pressure_kpa * 760.0 / 101.325

    def unverified(self, category: str) -> list[str]:
        """What of this standard, for ``category``, nobody has checked against the text."""
        out = []
        if not self.verified:
            out.append(f"reference conditions {self.temp_c:g} degC, {self.pressure_kpa:g} kPa, "
                       f"{self.molar_volume_l:g} L/mol ({self.note})")
        row = self.categories[category]
        if not row.verified:
            o2 = "no O2 correction" if row.o2_ref is None else f"reference O2 {row.o2_ref:g} %"
            out.append(f"source {category!r}: {o2} ({row.note})")
        return out


def _conditions(r: Reader, doc: Mapping[str, Any]) -> Mapping[str, Any]:
    t = r.table(r.get(doc, "conditions", "", "table"), "conditions",
                {"temp_c", "pressure_kpa", "molar_volume_l", "dry", "verified", "note"})
    temp = r.get(t, "temp_c", "conditions", "number", check=lambda v: -50 <= v <= 50,
                 expected="a reference temperature in degC")
    kpa = r.get(t, "pressure_kpa", "conditions", "number", check=lambda v: 50 <= v <= 150,
                expected="a reference pressure in kPa")
    vm = r.get(t, "molar_volume_l", "conditions", "number", check=lambda v: v > 0,
               expected="a molar volume in L/mol")
    ideal = _GAS_CONSTANT * (temp + 273.15) / kpa
    if abs(vm / ideal - 1.0) > 0.005:
        r.fail("conditions.molar_volume_l", vm,
               f"the molar volume at {temp:g} degC and {kpa:g} kPa ({ideal:.3f} L/mol, 0.5 %)")
    return {"temp_c": temp, "pressure_kpa": kpa, "molar_volume_l": vm,
            "dry": r.get(t, "dry", "conditions", "bool"),
            "verified": r.get(t, "verified", "conditions", "bool"),
            "note": r.get(t, "note", "conditions", "str")}


def _category(r: Reader, key: str, value: Any) -> SourceCategory:
    where = f"category.{key}"
    t = r.table(value, where, {"title", "o2_ref", "verified", "note"})
    return SourceCategory(
        key, r.get(t, "title", where, "str"),
        r.get(t, "o2_ref", where, "number", None, check=lambda v: 0 <= v < 21,
              expected="a reference O2 in [0, 21) %"),
        r.get(t, "verified", where, "bool"), r.get(t, "note", where, "str"))


def load_standard(path: Path) -> Standard:
    """One standards file, checked; the first mistake raises :class:`StandardError`."""
    doc = read_toml(path, StandardError)
    r = Reader(path, StandardError, collect=False)
    r.table(doc, "", {"standard", "title", "in_force", "replaced_by", "conditions",
                      "category"})
    cond = _conditions(r, doc)
    cats = r.table(r.get(doc, "category", "", "table"), "category", set(doc.get("category", {})))
    if not cats:
        r.fail("category", cats, "at least one [category.<key>]")
    return Standard(
        name=r.get(doc, "standard", "", "str"), title=r.get(doc, "title", "", "str"),
        file=path, in_force=r.get(doc, "in_force", "", "str"),
        replaced_by=r.get(doc, "replaced_by", "", "str", None),
        categories={k: _category(r, k, v) for k, v in cats.items()}, **cond)


@functools.cache
def standards(folder: Path = HERE) -> Mapping[str, Standard]:
    """Every standard in ``folder`` by name (read once: shipped files do not change)."""
    out: dict[str, Standard] = {}
    for path in sorted(folder.glob("*.toml")):
        std = load_standard(path)
        if std.name in out:
            raise StandardError.one(path, "standard", std.name,
                                    f"a name no other file uses ({out[std.name].file.name})")
        out[std.name] = std
    return out


def unverified_warnings(selected: list[tuple[str, str, str]]) -> list[str]:
    """``config check``'s warnings for ``(where, standard, source)`` a station selects whose
    values nobody checked against the gazetted text: valid, used, but said out loud."""
    out = []
    for where, name, source in selected:
        std = standards()[name]
        for what in std.unverified(source):
            out.append(f"{where}: {name} {what} is not verified against the regulation's "
                       f"text; confirm it with the permit ({std.file.name})")
    return out
