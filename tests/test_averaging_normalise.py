"""Hand-worked stack-gas conversions: reference O2, wet to dry, ppm to mg/Nm3; bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_agent.averaging import (
    InputError,
    Normalisation,
    O2RangeError,
    UnknownGasError,
    UnknownUnitError,
    molar_volume,
    normalise_record,
    normalise_values,
)
from protocol.model import Record, RecordFlag, Status

BASE = 1_700_006_400


def rec(channel: str, mean: float, unit: str = "ppm", valid: bool = True) -> Record:
    return Record(channel, BASE, BASE + 300, mean, mean / 2, mean * 2, mean / 10, 300, 300,
                  valid, Status.MEASURING, unit)  # fmt: skip


def o2(percent: float, valid: bool = True) -> Record:
    return rec("O2", percent, "%", valid)


def test_o2_normalisation_hand_worked() -> None:
    # 100 mg/Nm3 measured at 11 % O2, referred to 6 % O2:
    #   C_ref = 100 * (21 - 6) / (21 - 11) = 100 * 15 / 10 = 150 mg/Nm3.
    out = normalise_record(rec("SO2", 100.0, "mg/Nm3"), Normalisation(o2_ref=6.0), o2(11.0))
    assert out.mean == pytest.approx(150.0, rel=1e-12)
    assert (out.min, out.max, out.std) == pytest.approx((75.0, 300.0, 15.0), rel=1e-12)
    assert out.flags == RecordFlag.O2_NORMALISED and out.unit == "mg/Nm3" and out.valid
    # Measured below the reference (3 % against 6 %) lowers the value: 100 * 15 / 18 = 83.33..
    out = normalise_record(rec("CO", 100.0, "mg/Nm3"), Normalisation(o2_ref=6.0), o2(3.0))
    assert out.mean == pytest.approx(250.0 / 3.0, rel=1e-12)


def test_ppm_to_mg_nm3_hand_worked() -> None:
    # Reference conditions 25 degC, 760 mmHg: Vm = 24.45 L/mol; mg/Nm3 = ppm * M / Vm.
    assert molar_volume() == 24.45
    # SO2: M = 64.066 g/mol; 64.066 / 24.45 = 2.62028629856...; 100 ppm -> 262.028629856 mg/Nm3
    so2 = normalise_record(rec("SO2", 100.0), Normalisation(to_mg_nm3=True))
    assert so2.mean == pytest.approx(262.0286298568507, rel=1e-12)
    # NOx as NO2: M = 46.0055; 46.0055 / 24.45 = 1.88161554192...; 50 ppm -> 94.0807770961
    nox = normalise_record(rec("NOx", 50.0), Normalisation(to_mg_nm3=True))
    assert nox.mean == pytest.approx(94.08077709611453, rel=1e-12)
    # CO: M = 28.010; 28.010 / 24.45 = 1.14560327198...; 200 ppm -> 229.120654397 mg/Nm3
    co = normalise_record(rec("CO", 200.0), Normalisation(to_mg_nm3=True))
    assert co.mean == pytest.approx(229.120654396728, rel=1e-12)
    for r in (so2, nox, co):
        assert r.unit == "mg/Nm3" and r.flags == RecordFlag.MG_PER_NM3


def test_molar_volume_at_other_reference_conditions() -> None:
    # 0 degC, 760 mmHg: 24.45 * 273.15 / 298.15 = 22.3998574543 (the textbook 22.414 differs
    # by 0.06 % because QCVN rounds 24.465 to 24.45); 25 degC at 380 mmHg doubles it.
    assert molar_volume(0.0) == pytest.approx(22.399857454301525, rel=1e-12)
    assert molar_volume(25.0, 380.0) == pytest.approx(48.9, rel=1e-12)


def test_wet_to_dry_then_mg_then_o2_hand_worked() -> None:
    # SO2 100 ppm wet, 20 % water: 100 / (1 - 0.2) = 125 ppm dry;
    # 125 * 64.066 / 24.45 = 327.535787321 mg/Nm3; at 11 % O2 to 6 %: * 15/10 = 491.303680982.
    how = Normalisation(o2_ref=6.0, h2o_fraction=0.2, to_mg_nm3=True)
    out = normalise_record(rec("SO2", 100.0), how, o2(11.0))
    assert out.mean == pytest.approx(491.3036809815951, rel=1e-12)
    assert out.flags == RecordFlag.O2_NORMALISED | RecordFlag.DRY_BASIS | RecordFlag.MG_PER_NM3
    dry = normalise_record(rec("SO2", 80.0), Normalisation(h2o_fraction=0.2))
    assert dry.mean == pytest.approx(100.0, rel=1e-12)
    assert (dry.unit, dry.flags) == ("ppm", RecordFlag.DRY_BASIS)


def test_nothing_asked_nothing_flagged() -> None:
    out = normalise_record(rec("SO2", 42.0, "mg/Nm3", valid=True), Normalisation(to_mg_nm3=True))
    assert (out.mean, out.unit, out.flags) == (42.0, "mg/Nm3", RecordFlag.NONE)


def test_invalid_or_missing_o2_makes_the_result_invalid() -> None:
    out = normalise_record(rec("SO2", 100.0), Normalisation(o2_ref=6.0), o2(11.0, valid=False))
    assert not out.valid
    out = normalise_record(rec("SO2", 100.0), Normalisation(o2_ref=6.0), o2(math.nan, False))
    assert not out.valid and math.isnan(out.mean)
    with pytest.raises(InputError, match="no O2 record"):
        normalise_record(rec("SO2", 100.0), Normalisation(o2_ref=6.0))
    other_window = Record("O2", BASE + 300, BASE + 600, 10.0, 10.0, 10.0, 0.0, 300, 300, True,
                          Status.MEASURING, "%")  # fmt: skip
    with pytest.raises(InputError, match="is not the window"):
        normalise_record(rec("SO2", 100.0), Normalisation(o2_ref=6.0), other_window)


@pytest.mark.parametrize("o2_meas", [21.0, 25.0, -0.5])
def test_o2_out_of_range_is_an_error_naming_channel_and_value(o2_meas: float) -> None:
    with pytest.raises(O2RangeError, match=rf"'O2'.*o2_meas={o2_meas!r}"):
        normalise_record(rec("SO2", 100.0), Normalisation(o2_ref=6.0), o2(o2_meas))


def test_reference_o2_out_of_range_is_an_error() -> None:
    with pytest.raises(O2RangeError, match=r"'SO2'.*o2_ref=21.0"):
        normalise_record(rec("SO2", 100.0), Normalisation(o2_ref=21.0), o2(10.0))


def test_unknown_unit_and_gas_are_errors() -> None:
    with pytest.raises(UnknownUnitError, match=r"'SO2'.*'ug/m3'"):
        normalise_record(rec("SO2", 1.0, "ug/m3"), Normalisation(to_mg_nm3=True))
    with pytest.raises(UnknownGasError, match="'CH4'"):
        normalise_record(rec("CH4", 1.0), Normalisation(to_mg_nm3=True))
    with pytest.raises(InputError, match=r"h2o_fraction=1\.0"):
        normalise_record(rec("SO2", 1.0), Normalisation(h2o_fraction=1.0))


def test_bulk_values_per_sample() -> None:
    # Per sample O2: 11 % -> * 1.5, 6 % -> * 1, NaN (a gap) -> NaN. SO2 ppm -> mg first.
    values, unit, flags = normalise_values(
        "SO2", "ppm", [100.0, 100.0, 100.0], Normalisation(o2_ref=6.0, to_mg_nm3=True),
        o2=[11.0, 6.0, math.nan],
    )  # fmt: skip
    assert values[:2] == pytest.approx([262.0286298568507 * 1.5, 262.0286298568507], rel=1e-12)
    assert math.isnan(values[2])
    assert (unit, flags) == ("mg/Nm3", RecordFlag.MG_PER_NM3 | RecordFlag.O2_NORMALISED)
    with pytest.raises(O2RangeError, match=r"o2\[1\]=21.0"):
        normalise_values("SO2", "ppm", np.ones(2), Normalisation(o2_ref=6.0), o2=[5.0, 21.0])
    with pytest.raises(InputError, match="no O2 values"):
        normalise_values("SO2", "ppm", np.ones(2), Normalisation(o2_ref=6.0))
