"""VN_AQI, the Vietnamese air quality index, from a station's 1-hour means (sans-IO).

The method is the Vietnam Environment Administration's Decision 1459/QĐ-TCMT of 12 Nov 2019
("Hướng dẫn kỹ thuật tính toán và công bố chỉ số chất lượng không khí Việt Nam"), which
replaced Decision 878/QĐ-TCMT (2011). Whether a newer decision replaces it was checked in
Dec 2026 with the search tool: the guide is still the one cited by provincial health and
environment offices in 2024 (e.g. Đắk Nông's health department), and a transcription made in
Oct 2026 from the PDF that the Department of Environment of the Ministry of Agriculture and
Environment (vea.mae.gov.vn, the successor of the Administration since the 2025 merger) still
publishes notes "no replacing document seen". What could not be verified: the official gazette
text itself (the breakpoints were compared against that transcription of Table 2 and match
the values widely reproduced), and whether the new ministry has a draft replacement. The
breakpoint and band tables are data (``aqi_tables/vn_aqi_1459_2019.toml``): a new decision
is a new table file, not new code.

What the guide says, as computed here:

* **Sub-index** of a parameter (formulas 1 and 2): linear between the two breakpoints around
  the concentration, ``AQIx = (I[i+1] - I[i]) / (BP[i+1] - BP[i]) * (C - BP[i]) + I[i]``; at
  or above the top breakpoint (written "≥" in Table 2) it is 500.
* **Hourly AQI** (AQI^h): SO2, CO, NO2 and O3 from the current hour's 1-hour mean (O3 on its
  1-hour row); PM10 and PM2.5 from the **NowCast** of the last 12 hourly means c1 (current)
  .. c12: ``w* = Cmin / Cmax``, ``w = max(w*, 1/2)``, ``NowCast = sum(w^(i-1) c_i) /
  sum(w^(i-1))`` over the hours that have a value (a missing ``c_i`` has weight 0), and no
  NowCast unless at least 2 of c1, c2, c3 have a value. For ``w = 1/2`` the guide writes
  ``sum((1/2)^i c_i)`` without the division; that equals the divided form times
  ``(1 - 2^-12)`` (0.02 % lower) when all 12 hours are there, and is biased low by each
  missing hour, so the one divided formula is used for both cases (as the guide itself does
  for ``w > 1/2``).
* **Daily AQI** (AQI^d) for a local day (its hours 01:00 .. 00:00, i.e. the 24 hourly means
  starting 00:00 .. 23:00): PM10 and PM2.5 from the 24-hour mean of the day's hourly means;
  SO2, NO2, CO from the day's largest 1-hour mean; O3 the larger of the sub-index of its largest
  1-hour mean (1-hour row) and of its largest 8-hour mean (8-hour row; left out when that mean
  is above 400 µg/m3, as the guide says). The 8-hour mean at hour h is the mean of the 8 hourly
  means ending at h (the guide's worked example reaches into the day before).
* The station's AQI is the **largest sub-index**, rounded to an integer (half up), and is only
  given when PM10 or PM2.5 has one (the guide makes one of the two mandatory).
* **Bands** (Table 1): 0-50 Tốt, 51-100 Trung bình, 101-150 Kém, 151-200 Xấu, 201-300 Rất xấu,
  301-500 Nguy hại, with their RGB colours.

Ours, where the guide says nothing: a 24-hour mean needs 18 of the 24 hourly means (the 75 %
coverage rule the stations apply to every window) and an 8-hour mean 6 of its 8 (the
``[[averaging.rolling]]`` convention of the example ambient station). The guide requires
quality-checked data; here that means the records the station marked valid. Inputs are in
µg/m3 (a record in mg/m3 is converted; one in another unit is not used).

The guide's own worked example has one figure that does not follow from its formula: the
hourly NO2 118.7 µg/m3 gives 59.35, shown as 60; with half-up rounding (which the other five
figures need) it is 59 (``tests/test_aqi.py`` pins both that and the overall 60).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from protocol.model import Record

TABLE = Path(__file__).with_name("aqi_tables") / "vn_aqi_1459_2019.toml"
HOUR = 3600
DAY = 86_400
NOWCAST_HOURS = 12
#: our coverage rules where the guide has none (module docstring)
DAY_MIN_HOURS = 18
EIGHT_HOUR_MIN = 6
#: the O3 8-hour row is not used above this (guide, daily AQI of O3)
O3_EIGHT_HOUR_MAX = 400.0
PM = ("PM10", "PM2,5")
#: µg/m3 (1 kg/m3, near the density of air itself): a larger mean is no measurement
MAX_CONCENTRATION = 1e9


@dataclass(frozen=True, slots=True)
class Band:
    """One row of Table 1: an index range, its name (Vietnamese, English) and colour."""

    low: int
    high: int
    vi: str
    en: str
    rgb: tuple[int, int, int]

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)


@dataclass(frozen=True, slots=True)
class Pollutant:
    key: str
    symbols: tuple[str, ...]
    hourly: tuple[float, ...]
    eight_hour: tuple[float, ...] = ()
    nowcast: bool = False


@dataclass(frozen=True)
class Table:
    """The breakpoint and band tables of one decision (read from its TOML file)."""

    decision: str
    index: tuple[int, ...]
    pollutants: dict[str, Pollutant]
    units: dict[str, float]
    bands: tuple[Band, ...]
    _by_symbol: dict[str, str] = field(default_factory=dict, repr=False)

    def pollutant_of(self, channel: str) -> str | None:
        """The parameter a record's channel symbol measures (``PM-2-5`` -> ``PM2,5``)."""
        return self._by_symbol.get(channel)

    def band(self, aqi: int) -> Band:
        for b in self.bands:
            if aqi <= b.high:
                return b
        return self.bands[-1]


@lru_cache(maxsize=4)
def load(path: Path = TABLE) -> Table:
    """The tables in ``path`` (default: Decision 1459/2019), read once."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    pollutants = {
        key: Pollutant(key, tuple(p["symbols"]), tuple(float(x) for x in p["hourly"]),
                       tuple(float(x) for x in p.get("eight_hour", ())),
                       bool(p.get("nowcast", False)))
        for key, p in data["pollutant"].items()
    }
    bands = tuple(Band(int(b["low"]), int(b["high"]), str(b["vi"]), str(b["en"]),
                       (int(b["rgb"][0]), int(b["rgb"][1]), int(b["rgb"][2])))
                  for b in data["band"])
    by_symbol = {s: p.key for p in pollutants.values() for s in p.symbols}
    return Table(str(data["decision"]), tuple(int(i) for i in data["index"]), pollutants,
                 {str(k): float(v) for k, v in data["units"].items()}, bands, by_symbol)


def round_half_up(x: float) -> int:
    """The guide's "rounded to an integer": 42.5 -> 43 (not Python's 42); the tiny slack
    keeps 109.4999999 (float for 109.5) from going down."""
    return math.floor(x + 0.5 + 1e-9)


def sub_index(breakpoints: Sequence[float], index: Sequence[int], c: float) -> float:
    """Formula 1/2 of the guide, unrounded; 500 (the top index) at or above the top row."""
    if c >= breakpoints[-1]:
        return float(index[len(breakpoints) - 1])
    c = max(c, 0.0)  # an analyser's small negative reading near zero is zero air
    for i in range(len(breakpoints) - 1):
        lo, hi = breakpoints[i], breakpoints[i + 1]
        if c <= hi:
            return (index[i + 1] - index[i]) / (hi - lo) * (c - lo) + index[i]
    raise AssertionError("unreachable")  # pragma: no cover


def nowcast(hours: Sequence[float | None]) -> float | None:
    """NowCast of up to 12 hourly means, newest first (``hours[0]`` is c1); None when fewer
    than 2 of c1..c3 have a value."""
    c = list(hours[:NOWCAST_HOURS])
    if sum(1 for x in c[:3] if x is not None) < 2:
        return None
    present = [x for x in c if x is not None]
    c_max, c_min = max(present), min(present)
    w = 0.5 if c_max <= 0 else max(c_min / c_max, 0.5)
    num = sum(w**i * x for i, x in enumerate(c) if x is not None)
    den = sum(w**i for i, x in enumerate(c) if x is not None)
    return num / den


@dataclass(frozen=True)
class Index:
    """One AQI: the value (None: not computable, ``why``), the parameter that made it, every
    sub-index, and the concentration each came from (µg/m3; NowCast for PM in the hourly)."""

    value: int | None
    dominant: str | None
    band: Band | None
    sub: dict[str, int]
    inputs: dict[str, float]
    why: str = ""


def _overall(table: Table, sub: dict[str, float], inputs: dict[str, float]) -> Index:
    rounded = {k: round_half_up(v) for k, v in sub.items()}
    if not any(k in rounded for k in PM):
        return Index(None, None, None, rounded, inputs,
                     "no PM10 or PM2,5 value (the guide requires one of them)")
    dominant = max(rounded, key=lambda k: (rounded[k], sub[k]))
    value = rounded[dominant]
    return Index(value, dominant, table.band(value), rounded, inputs)


Hourly = Mapping[str, Mapping[int, float]]
"""Per parameter key, hour start (UTC epoch s) -> valid 1-hour mean in µg/m3."""


def hourly_aqi(table: Table, hourly: Hourly, hour: int) -> Index:
    """AQI^h of the hour starting at ``hour``."""
    sub: dict[str, float] = {}
    inputs: dict[str, float] = {}
    for key, p in table.pollutants.items():
        series = hourly.get(key, {})
        if p.nowcast:
            c = nowcast([series.get(hour - i * HOUR) for i in range(NOWCAST_HOURS)])
        else:
            c = series.get(hour)
        if c is not None:
            inputs[key] = c
            sub[key] = sub_index(p.hourly, table.index, c)
    return _overall(table, sub, inputs)


def eight_hour_means(series: Mapping[int, float], hours: Iterable[int]) -> dict[int, float]:
    """The 8-hour mean ending with each hour of ``hours`` that has ``EIGHT_HOUR_MIN`` values."""
    out: dict[int, float] = {}
    for h in hours:
        got = [series[t] for t in range(h - 7 * HOUR, h + 1, HOUR) if t in series]
        if len(got) >= EIGHT_HOUR_MIN:
            out[h] = sum(got) / len(got)
    return out


def daily_aqi(table: Table, hourly: Hourly, day_start: int) -> Index:
    """AQI^d of the local day starting at ``day_start`` (its 24 hours from there)."""
    hours = range(day_start, day_start + DAY, HOUR)
    sub: dict[str, float] = {}
    inputs: dict[str, float] = {}
    for key, p in table.pollutants.items():
        series = hourly.get(key, {})
        day = [series[h] for h in hours if h in series]
        if p.nowcast:
            if len(day) >= DAY_MIN_HOURS:
                inputs[key] = sum(day) / len(day)
                sub[key] = sub_index(p.hourly, table.index, inputs[key])
            continue
        if not day:
            continue
        inputs[key] = max(day)
        sub[key] = sub_index(p.hourly, table.index, inputs[key])
        if p.eight_hour:
            eights = eight_hour_means(series, hours)
            top = max(eights.values(), default=None)
            if top is not None and top <= O3_EIGHT_HOUR_MAX:
                inputs[f"{key}_8h"] = top
                sub[key] = max(sub[key], sub_index(
                    p.eight_hour, table.index[:len(p.eight_hour)], top))
    return _overall(table, sub, inputs)


def hourly_means(table: Table, records: Iterable[Record]) -> dict[str, dict[int, float]]:
    """The valid 1-hour records of the index's parameters, in µg/m3, by hour start.

    A mean whose size no air can have (``MAX_CONCENTRATION`` either way) is left out like an
    invalid one: the store takes any finite float, and a station that sent 1e308 mg/m3 (a
    fault or a lie) made an infinite concentration after the unit factor, the NowCast and
    the daily mean of +inf and -inf NaN, so the index failed (or printed ``Infinity``, which
    is not JSON) for the public page of every station. Bounded inputs keep every sum of
    them finite; any value above the top breakpoint has the top index anyway."""
    out: dict[str, dict[int, float]] = {}
    for r in records:
        if r.end - r.start != HOUR or not r.valid or math.isnan(r.mean):
            continue
        key = table.pollutant_of(r.channel)
        factor = table.units.get(r.unit)
        if key is None or factor is None:
            continue
        value = r.mean * factor
        if abs(value) <= MAX_CONCENTRATION:
            out.setdefault(key, {})[r.start] = value
    return out
