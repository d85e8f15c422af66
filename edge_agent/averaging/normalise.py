"""Normalisation of stack-gas concentrations: wet to dry, ppm to mg/Nm3, reference O2.

Emission limits (QCVN 19:2024, QCVN 19:2009, 40 CFR 60) are stated as mass per normal dry
cubic metre at a reference O2, so a raw ppm reading is not comparable to the limit until
converted:

* wet to dry: ``C_dry = C_wet / (1 - H2O_fraction)``, the water fraction a constant of the
  analyser or, better, the H2O % a moisture analyser measured in the same window;
* ppm to mg/Nm3: ``C_mg = C_ppm * M / Vm`` with M in g/mol and Vm the molar volume in L/mol at
  the standard's reference conditions (QCVN 19:2009: 25 degC, 760 mmHg, Vm = 24.45 L/mol; the
  standards themselves are data, in ``edge_agent/config/standards/``, and give Vm as printed);
* reference O2: ``C_ref = C * (21 - O2_ref) / (21 - O2_meas)`` (O2 in % by volume, dry; an
  in-situ zirconia probe measures wet O2, made dry first by the same water fraction:
  ``O2_dry = O2_wet / (1 - H2O_fraction)``).
  Near 21 % (a stack at shutdown breathes air) the factor explodes (at 20.9 % and a 6 %
  reference it is 150), so above ``o2_max`` (20 % unless configured) the window is not
  referred at all: the caller keeps it, invalid, with the reason logged.

Conversions are applied in that order, and every one applied is recorded in the record's flags
(DRY_BASIS, MG_PER_NM3, O2_NORMALISED) so the centre never mistakes a converted value for a raw
one. The factors are positive constants per window, so a record's mean, min, max and std scale
by the same factor; ``normalise_values`` does the same per sample for bulk arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from edge_agent.averaging.errors import InputError, O2RangeError, UnknownGasError, UnknownUnitError
from protocol.model import Record, RecordFlag

MOLAR_MASS_G_PER_MOL = {
    "SO2": 64.066,
    "NO2": 46.0055,
    "NOx": 46.0055,  # NOx is reported as NO2
    "CO": 28.010,
    "NO": 30.006,
    "H2S": 34.08,
    "NH3": 17.031,
    "HCl": 36.461,
    "HF": 20.006,
}
QCVN_MOLAR_VOLUME_L = 24.45  # at 25 degC and 760 mmHg, as QCVN 19:2009 states it
QCVN_TEMP_C = 25.0
QCVN_PRESSURE_MMHG = 760.0

PPM = "ppm"
MG_NM3 = "mg/Nm3"
UNITS = (PPM, MG_NM3)

F64 = npt.NDArray[np.float64]


def molar_volume(temp_c: float = QCVN_TEMP_C, pressure_mmhg: float = QCVN_PRESSURE_MMHG) -> float:
    """Molar volume in L/mol, scaled from QCVN's 24.45 L/mol by the ideal gas law.

    Scaling from the regulator's constant (rather than computing R*T/P = 24.465) keeps the
    default conditions giving exactly the number the regulation prints.
    """
    if not (math.isfinite(temp_c) and temp_c > -273.15):
        raise InputError(f"reference temp_c={temp_c!r} is not a temperature")
    if not (math.isfinite(pressure_mmhg) and pressure_mmhg > 0):
        raise InputError(f"reference pressure_mmhg={pressure_mmhg!r} must be positive")
    return QCVN_MOLAR_VOLUME_L * ((temp_c + 273.15) / (QCVN_TEMP_C + 273.15)) * (
        QCVN_PRESSURE_MMHG / pressure_mmhg
    )


def gas_of(channel: str) -> str:
    """The gas a channel measures: its symbol before a point tag (``SO2_inlet`` is SO2)."""
    return channel.partition("_")[0]


def ppm_factor(gas: str, vm_l: float = QCVN_MOLAR_VOLUME_L) -> float:
    """mg/Nm3 per ppm of ``gas``: ``M / Vm``."""
    try:
        mass = MOLAR_MASS_G_PER_MOL[gas_of(gas)]
    except KeyError:
        known = ", ".join(MOLAR_MASS_G_PER_MOL)
        raise UnknownGasError(f"gas {gas!r} has no molar mass on file (known: {known})") from None
    return mass / vm_l


def _check_o2(channel: str, what: str, o2: float) -> None:
    if math.isfinite(o2) and not (0.0 <= o2 < 21.0):
        raise O2RangeError(f"channel {channel!r}: {what}={float(o2)!r} % is outside [0, 21)")


def o2_factor(o2_meas: float, o2_ref: float, channel: str = "?",
              o2_max: float = 21.0) -> float:
    """``(21 - O2_ref) / (21 - O2_meas)``; NaN when the O2 reading is NaN (a gap).

    A reading above ``o2_max`` is refused like one at 21 %: the factor is too steep there for
    the result to mean anything (a 0.1 % O2 error at 20.5 % moves it by a fifth).
    """
    _check_o2(channel, "o2_ref", o2_ref)
    if not math.isfinite(o2_ref):
        raise O2RangeError(f"channel {channel!r}: o2_ref={o2_ref!r} is not a number")
    _check_o2(channel, "o2_meas", o2_meas)
    if o2_meas > o2_max:
        raise O2RangeError(
            f"channel {channel!r}: o2_meas={float(o2_meas)!r} % is above o2_max={o2_max!r} %, "
            "too near 21 % to refer to the reference O2 (shutdown or air ingress?)")
    return (21.0 - o2_ref) / (21.0 - o2_meas)


def dry_factor(h2o_fraction: float, channel: str = "?") -> float:
    """``1 / (1 - H2O_fraction)`` for a water fraction in [0, 1)."""
    if not (math.isfinite(h2o_fraction) and 0.0 <= h2o_fraction < 1.0):
        raise InputError(
            f"channel {channel!r}: h2o_fraction={h2o_fraction!r} must be a fraction in [0, 1)"
        )
    return 1.0 / (1.0 - h2o_fraction)


@dataclass(frozen=True, slots=True)
class Normalisation:
    """Which conversions a stack-gas channel gets, at which reference conditions."""

    o2_ref: float | None = None  # reference O2 %, None: no O2 normalisation
    h2o_fraction: float | None = None  # water fraction of a wet-basis analyser, None: dry
    to_mg_nm3: bool = False
    temp_c: float = QCVN_TEMP_C
    pressure_mmhg: float = QCVN_PRESSURE_MMHG
    vm_l: float | None = None  # molar volume as the standard prints it; None: from temp/pressure
    o2_max: float = 20.0  # measured O2 above this: not referred (the window is invalid)
    h2o_measured: bool = False  # wet analyser: the water fraction is the H2O record's % / 100
    o2_wet: bool = False  # the O2 is measured wet (an in-situ zirconia probe): made dry first

    @property
    def molar_volume_l(self) -> float:
        return self.vm_l if self.vm_l is not None else molar_volume(self.temp_c,
                                                                     self.pressure_mmhg)


def _unit_factor(channel: str, unit: str, how: Normalisation) -> tuple[float, str, RecordFlag]:
    """Factor, unit and flags of the O2-independent steps (wet to dry, ppm to mg/Nm3)."""
    if unit not in UNITS:
        raise UnknownUnitError(f"channel {channel!r}: unit {unit!r} is not one of {UNITS}")
    factor, flags = 1.0, RecordFlag.NONE
    if how.h2o_fraction is not None and how.h2o_measured:
        raise InputError(f"channel {channel!r}: h2o_fraction and h2o_measured both set")
    if how.h2o_fraction is not None:
        factor *= dry_factor(how.h2o_fraction, channel)
        flags |= RecordFlag.DRY_BASIS
    if how.h2o_measured:
        flags |= RecordFlag.DRY_BASIS  # the factor is the window's, applied by the caller
    if how.to_mg_nm3 and unit == PPM:
        factor *= ppm_factor(channel, how.molar_volume_l)
        flags |= RecordFlag.MG_PER_NM3
        unit = MG_NM3
    if how.o2_ref is not None:
        _check_o2(channel, "o2_ref", how.o2_ref)
        flags |= RecordFlag.O2_NORMALISED
    return factor, unit, flags


def _same_window(record: Record, other: Record, what: str) -> None:
    if (other.start, other.end) != (record.start, record.end):
        raise InputError(
            f"channel {record.channel!r}: {what} record [{other.start}, {other.end}) is not "
            f"the window [{record.start}, {record.end})"
        )


def normalise_record(record: Record, how: Normalisation, o2: Record | None = None,
                     h2o: Record | None = None) -> Record:
    """Convert one averaged record; ``o2`` is the O2 record (dry %) of the same window, ``h2o``
    the moisture record (% by volume) when ``how.h2o_measured``.

    The gas is the record's channel (a Circular 10 symbol). If the O2 or H2O record is invalid,
    so is the result: a concentration cannot be referred to an O2 or a moisture nobody
    measured.
    """
    factor, unit, flags = _unit_factor(record.channel, record.unit, how)
    valid = record.valid
    water = how.h2o_fraction  # the window's water fraction, if the conversion needs one
    if how.h2o_measured:
        if h2o is None:
            raise InputError(f"channel {record.channel!r}: h2o_measured but no H2O record given")
        _same_window(record, h2o, "H2O")
        water = h2o.mean / 100.0
        factor *= dry_factor(water, h2o.channel) if math.isfinite(water) else math.nan
        valid = valid and h2o.valid and math.isfinite(h2o.mean)
    if how.o2_ref is not None:
        if o2 is None:
            raise InputError(f"channel {record.channel!r}: o2_ref set but no O2 record given")
        _same_window(record, o2, "O2")
        o2_meas = o2.mean
        if how.o2_wet:  # O2_dry = O2_wet / (1 - H2O): the reference O2 is on dry gas
            if water is None:
                raise InputError(f"channel {record.channel!r}: o2_wet but no water fraction")
            o2_meas = o2_meas / (1.0 - water) if math.isfinite(water) else math.nan
        factor *= o2_factor(o2_meas, how.o2_ref, o2.channel, how.o2_max)
        valid = valid and o2.valid and math.isfinite(o2.mean)
    return replace(
        record,
        mean=record.mean * factor,
        min=record.min * factor,
        max=record.max * factor,
        std=record.std * factor,
        valid=valid,
        unit=unit,
        flags=record.flags | flags,
    )


def normalise_values(
    channel: str,
    unit: str,
    values: npt.ArrayLike,
    how: Normalisation,
    o2: npt.ArrayLike | None = None,
    h2o: npt.ArrayLike | None = None,
) -> tuple[F64, str, RecordFlag]:
    """Convert samples (or record means) in bulk; ``o2`` (and ``h2o`` in % when
    ``how.h2o_measured``) per element, NaN marks a gap.

    Returns the converted values, their unit and the flags to put on records made from them.
    """
    factor, out_unit, flags = _unit_factor(channel, unit, how)
    out = np.asarray(values, dtype=np.float64) * factor
    if how.h2o_measured:
        if h2o is None:
            raise InputError(f"channel {channel!r}: h2o_measured but no H2O values given")
        wet = np.broadcast_to(np.asarray(h2o, dtype=np.float64), out.shape) / 100.0
        bad = np.isfinite(wet) & ((wet < 0.0) | (wet >= 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"channel {channel!r}: h2o[{i}]={float(wet[i]) * 100.0!r} % is outside [0, 100)"
            )
        out = out / (1.0 - wet)
    if how.o2_ref is not None:
        if o2 is None:
            raise InputError(f"channel {channel!r}: o2_ref set but no O2 values given")
        o2a = np.broadcast_to(np.asarray(o2, dtype=np.float64), out.shape)
        if how.o2_wet:
            if how.h2o_measured:
                o2a = o2a / (1.0 - wet)
            elif how.h2o_fraction is not None:
                o2a = o2a / (1.0 - how.h2o_fraction)
            else:
                raise InputError(f"channel {channel!r}: o2_wet but no water fraction")
        bad = np.isfinite(o2a) & ((o2a < 0.0) | (o2a >= 21.0) | (o2a > how.o2_max))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise O2RangeError(
                f"channel {channel!r}: o2[{i}]={float(o2a[i])!r} % is outside [0, 21) or "
                f"above o2_max={how.o2_max!r} %"
            )
        out = out * ((21.0 - how.o2_ref) / (21.0 - o2a))
    return out, out_unit, flags
