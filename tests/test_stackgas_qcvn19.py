"""Stack gas under QCVN 19:2024 (issue 15 item 3): reference conditions and reference O2 per
source category as data, ppm -> mg/Nm3 at the standard's molar volume, wet -> dry with the
measured H2O, O2 correction with the guard near 21 %, the 2009 settings still selectable.

Hand-worked through the real config reader and the agent's pipeline (samples in, records
out, the clock a parameter). The numbers below follow the shipped data files
(edge_agent/config/standards/*.toml); where a row there is corrected after checking the
gazetted text, the arithmetic here is to be redone with it.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from edge_agent.averaging import Normalisation, normalise_values
from edge_agent.config.model import StationConfig
from edge_agent.config.reader import ConfigError, load_config, parse_config
from edge_agent.config.standards import StandardError, load_standard, standards
from edge_agent.core.pipeline import Pipeline
from protocol.model import Record, RecordFlag, Sample, Status

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_790_000_000 - 1_790_000_000 % 3600  # an hour boundary
F = "/virtual/station.toml"


def station(normalise: str, gas: str = "NOx") -> str:
    """A stack with a CEMS reporting ``gas`` in ppm (the label says so) and O2, and a moisture
    analyser; ``normalise`` is the [[normalise]] table's body."""
    return f"""
[station]
id = "T-SG-1"
[agent]
state_dir = "/nonexistent"
[[bus]]
name = "lan"
host = "127.0.0.1"
[[device]]
name = "cems"
bus = "lan"
profile = "cems"
unit = 1
interval = 1.0
[device.channels.{gas}]
symbol = "{gas}"
unit = "ppm"
[device.channels.O2]
symbol = "O2"
unit = "%"
[[device]]
name = "moisture"
bus = "lan"
profile = "stack_moisture"
unit = 3
interval = 1.0
channels = ["H2O"]
[averaging]
windows = [10]
grace_s = 1.0
[[normalise]]
{normalise}
"""


def config(normalise: str, gas: str = "NOx") -> StationConfig:
    return parse_config(tomllib.loads(station(normalise, gas)), Path(F))


def problems(normalise: str) -> str:
    with pytest.raises(ConfigError) as err:
        config(normalise)
    return str(err.value)


def one_window(cfg: StationConfig, gas: str, ppm: float, o2: float,
               h2o: float | None = None, h2o_status: Status = Status.MEASURING) -> Record:
    """Feed 10 one-second samples of constant values, close the window, return the gas."""
    p = Pipeline(cfg, utc_offset_s=0)
    for i in range(10):
        t = T0 + i
        p.feed("cems", [Sample(gas, t, ppm, Status.MEASURING),
                        Sample("O2", t, o2, Status.MEASURING)], t + 0.1)
        if h2o is not None:
            p.feed("moisture", [Sample("H2O", t, h2o, h2o_status)], t + 0.1)
    (out,) = [r for r in p.tick(T0 + 11.5) if r.channel == gas]
    return out


GAS_TURBINE_2024 = 'channels = ["NOx"]\nstandard = "QCVN 19:2024"\nsource = "gas_turbine"\n' \
                   'o2_channel = "O2"\nto_mg_nm3 = true'


def test_gas_turbine_under_qcvn_19_2024_hand_worked() -> None:
    # A gas turbine's NOx, 25 ppm dry at 14 % O2 measured. QCVN 19:2024 data: Nm3 at 25 degC,
    # 760 mmHg (section 1.3.10; Vm = 24.45 L/mol), gas turbine reference O2 15 % (category 2.4).
    #   ppm -> mg/Nm3 (NOx as NO2, M = 46.0055 g/mol): 25 * 46.0055 / 24.45
    #                                                 = 25 * 1.88161554192... = 47.0403885481
    #   reference O2: * (21 - 15) / (21 - 14) = * 6/7      -> 40.3203330412 mg/Nm3 at 15 % O2
    cfg = config(GAS_TURBINE_2024)
    assert cfg.normalise[0].how.o2_ref == 15.0 and cfg.normalise[0].how.vm_l == 24.45
    nox = one_window(cfg, "NOx", 25.0, 14.0)
    assert nox.mean == pytest.approx(40.320333041191944, rel=1e-12)
    assert (nox.unit, nox.valid) == ("mg/Nm3", True)
    assert nox.flags == RecordFlag.MG_PER_NM3 | RecordFlag.O2_NORMALISED


def test_solid_fuel_boiler_under_qcvn_19_2024_wet_analyser_hand_worked() -> None:
    # A coal-fired boiler's SO2 from a hot-wet analyser: 300 ppm wet, the moisture analyser
    # measuring 10 % H2O in the same window, O2 9 % dry. Reference O2 6 % (solid fuel).
    #   wet -> dry: 300 / (1 - 10/100) = 300 / 0.9             = 333.333333333 ppm dry
    #   ppm -> mg/Nm3 (SO2, M = 64.066): 333.333... * 64.066 / 24.45
    #                                   = 333.333... * 2.62028629857 = 873.428766190 mg/Nm3
    #   reference O2: * (21 - 6) / (21 - 9) = * 15/12 = * 1.25      -> 1091.78595774 mg/Nm3
    cfg = config('channels = ["SO2"]\nstandard = "QCVN 19:2024"\nsource = "solid_fuel_boiler"\n'
                 'o2_channel = "O2"\nh2o_channel = "H2O"\nto_mg_nm3 = true', gas="SO2")
    so2 = one_window(cfg, "SO2", 300.0, 9.0, h2o=10.0)
    assert so2.mean == pytest.approx(1091.785957736878, rel=1e-12)
    assert so2.valid and so2.unit == "mg/Nm3"
    assert so2.flags == RecordFlag.DRY_BASIS | RecordFlag.MG_PER_NM3 | RecordFlag.O2_NORMALISED
    # The moisture is the window's: at 20 % H2O the same reading is 300 / 0.8 = 375 ppm dry,
    # 375 * 2.62028629857 * 1.25 = 1228.25920245 mg/Nm3.
    wetter = one_window(cfg, "SO2", 300.0, 9.0, h2o=20.0)
    assert wetter.mean == pytest.approx(375.0 * 64.066 / 24.45 * 1.25, rel=1e-12)


def test_the_2009_settings_give_the_2009_number() -> None:
    # The gas turbine above under the 2009 settings (a station in transition until 2031): Nm3
    # at 25 degC, 760 mmHg (Vm = 24.45 L/mol), reference O2 15 % (QCVN 22:2009).
    #   25 * 46.0055 / 24.45 = 25 * 1.88161554192 = 47.0403885481 mg/Nm3; * 6/7 = 40.3203330412
    # The same number as under 2024: both define Nm3 at 25 degC / 760 mmHg (2024 section
    # 1.3.10), both refer a gas turbine to 15 % O2. What differs between them for a turbine is
    # the limit, not the normalisation.
    cfg = config(GAS_TURBINE_2024.replace("19:2024", "19:2009"))
    nox = one_window(cfg, "NOx", 25.0, 14.0)
    assert nox.mean == pytest.approx(40.320333041191944, rel=1e-12)
    assert nox.mean == one_window(config(GAS_TURBINE_2024), "NOx", 25.0, 14.0).mean


def test_wet_o2_of_an_in_situ_probe_is_made_dry_first_hand_worked() -> None:
    # The gas turbine above seen by in-situ probes on wet gas with 10 % H2O: NOx 22.5 ppm wet,
    # O2 12.6 % wet.
    #   O2 dry: 12.6 / (1 - 0.10) = 14.0 %;  NOx dry: 22.5 / 0.9 = 25 ppm
    #   then as above: 25 * 46.0055 / 24.45 * (21 - 15) / (21 - 14)   = 40.3203330412 mg/Nm3
    # Taken as dry, the 12.6 % would give 47.0403885481 * 6 / 8.4 = 33.60 (17 % too low).
    cfg = config(GAS_TURBINE_2024 + '\nh2o_channel = "H2O"\no2_basis = "wet"')
    nox = one_window(cfg, "NOx", 22.5, 12.6, h2o=10.0)
    assert nox.mean == pytest.approx(40.320333041191944, rel=1e-12)
    assert nox.flags == RecordFlag.DRY_BASIS | RecordFlag.MG_PER_NM3 | RecordFlag.O2_NORMALISED
    as_dry = one_window(config(GAS_TURBINE_2024 + '\nh2o_channel = "H2O"'), "NOx", 22.5, 12.6,
                        h2o=10.0)
    assert as_dry.mean == pytest.approx(25 * 46.0055 / 24.45 * 6 / 8.4, rel=1e-12)


def test_o2_near_21_percent_keeps_the_window_invalid() -> None:
    # At 20.5 % O2 (a stack at shutdown breathing air) the factor to 15 % would be 6 / 0.5 = 12:
    # above o2_max (20 % by default) the window is kept, invalid, never referred.
    cfg = config(GAS_TURBINE_2024)
    shut = one_window(cfg, "NOx", 2.0, 20.5)
    assert not shut.valid and shut.flags & RecordFlag.O2_NORMALISED
    # 19.5 % is still referred: 2 ppm * 1.88161554192 * 6 / 1.5 = 15.0529243354 mg/Nm3
    low_load = one_window(cfg, "NOx", 2.0, 19.5)
    assert low_load.valid and low_load.mean == pytest.approx(2 * 46.0055 / 24.45 * 4.0)
    # o2_max is the installer's: at 20.8 it refers 20.5 % too (2 * 1.8816... * 12)
    loose = config(GAS_TURBINE_2024 + "\no2_max = 20.8")
    assert one_window(loose, "NOx", 2.0, 20.5).mean == pytest.approx(2 * 46.0055 / 24.45 * 12)


def test_an_unmeasured_moisture_makes_the_window_invalid() -> None:
    cfg = config('channels = ["SO2"]\nstandard = "QCVN 19:2024"\nsource = "process"\n'
                 'h2o_channel = "H2O"\nto_mg_nm3 = true', gas="SO2")
    # "process": no reference O2 and so no O2 channel needed; dry from the measured H2O
    ok = one_window(cfg, "SO2", 90.0, 9.0, h2o=10.0)
    assert ok.valid and ok.mean == pytest.approx(100.0 * 64.066 / 24.45, rel=1e-12)
    assert ok.flags == RecordFlag.DRY_BASIS | RecordFlag.MG_PER_NM3
    faulty = one_window(cfg, "SO2", 90.0, 9.0, h2o=10.0, h2o_status=Status.FAULT)
    assert not faulty.valid


def test_bulk_values_with_measured_moisture() -> None:
    how = Normalisation(o2_ref=6.0, to_mg_nm3=True, vm_l=24.45, h2o_measured=True)
    out, unit, flags = normalise_values("SO2", "ppm", [300.0, 300.0, 300.0], how,
                                        o2=[9.0, 9.0, 9.0], h2o=[10.0, math.nan, 0.0])
    assert out[0] == pytest.approx(1091.785957736878, rel=1e-12)
    assert math.isnan(out[1]) and out[2] == pytest.approx(300 * 64.066 / 24.45 * 1.25)
    assert unit == "mg/Nm3" and flags & RecordFlag.DRY_BASIS
    with pytest.raises(ValueError, match=r"h2o\[0\]=100.0 %"):
        normalise_values("SO2", "ppm", [1.0], how, o2=[9.0], h2o=[100.0])
    with pytest.raises(ValueError, match=r"o2\[0\]=20.5.*o2_max=20.0"):
        normalise_values("SO2", "ppm", [1.0], how, o2=[20.5], h2o=[0.0])
    # wet O2 per sample: 12.6 % at 10 % H2O is 14 % dry (the gas turbine, NOx 22.5 ppm wet)
    wet_o2 = Normalisation(o2_ref=15.0, to_mg_nm3=True, vm_l=24.45, h2o_measured=True,
                           o2_wet=True)
    out, _, _ = normalise_values("NOx", "ppm", [22.5], wet_o2, o2=[12.6], h2o=[10.0])
    assert out[0] == pytest.approx(40.320333041191944, rel=1e-12)


# ------------------------------------------------------------------------- mistakes named


@pytest.mark.parametrize(("body", "expected"), [
    ('channels = ["NOx"]\nstandard = "QCVN 19:2023"\nsource = "gas_turbine"\no2_channel = "O2"',
     f"{F}: normalise[0].standard = 'QCVN 19:2023': expected a standard on file "
     "(QCVN 19:2009, QCVN 19:2024)"),
    ('channels = ["NOx"]\nstandard = "QCVN 19:2024"\nsource = "turbine"\no2_channel = "O2"',
     f"{F}: normalise[0].source = 'turbine': expected a source category of QCVN 19:2024 "
     "(gas_turbine, solid_fuel_boiler, liquid_fuel_boiler, gas_fuel_boiler, incinerator, "
     "cement_kiln, process)"),
    ('channels = ["NOx"]\nstandard = "QCVN 19:2009"\nsource = "incinerator"\no2_channel = "O2"',
     f"{F}: normalise[0].source = 'incinerator': expected a source category of QCVN 19:2009 "
     "(gas_turbine, solid_fuel_boiler, liquid_fuel_boiler, gas_fuel_boiler, process)"),
    ('channels = ["NOx"]\nstandard = "QCVN 19:2024"\no2_channel = "O2"',
     f"{F}: normalise[0].source: missing; expected the source category under QCVN 19:2024"),
    ('channels = ["NOx"]\nsource = "gas_turbine"\no2_channel = "O2"',
     f"{F}: normalise[0].standard: missing; expected the standard source = 'gas_turbine' "
     "belongs to (QCVN 19:2009, QCVN 19:2024)"),
    (GAS_TURBINE_2024 + "\no2_ref = 6.0",
     f"{F}: normalise[0].o2_ref = 6.0: expected no o2_ref with standard = 'QCVN 19:2024': "
     "the standard sets it"),
    (GAS_TURBINE_2024 + "\ntemp_c = 25.0",
     f"{F}: normalise[0].temp_c = 25.0: expected no temp_c with standard"),
    ('channels = ["NOx"]\nstandard = "QCVN 19:2024"\nsource = "gas_turbine"',
     f"{F}: normalise[0].o2_channel: missing; expected the O2 channel's symbol: QCVN 19:2024 "
     "refers source 'gas_turbine' to 15 % O2"),
    (GAS_TURBINE_2024 + "\no2_max = 14.0",
     f"{F}: normalise[0].o2_max = 14.0: expected more than the reference O2 (15 %)"),
    (GAS_TURBINE_2024 + '\nh2o_channel = "H2O"\nh2o_fraction = 0.1',
     f"{F}: normalise[0].h2o_channel = 'H2O': expected either h2o_channel (measured) or "
     "h2o_fraction (fixed), not both"),
    (GAS_TURBINE_2024 + '\nh2o_channel = "NOx"',
     f"{F}: normalise[0].h2o_channel = 'NOx': expected a moisture channel in % by volume "
     "(its unit is 'ppm')"),
    (GAS_TURBINE_2024 + '\no2_basis = "wet"',
     f"{F}: normalise[0].o2_basis = 'wet': expected a water content to make the O2 dry with "
     "(h2o_channel or h2o_fraction)"),
    (GAS_TURBINE_2024 + '\no2_basis = "moist"',
     f"{F}: normalise[0].o2_basis = 'moist': expected one of dry, wet"),
    (GAS_TURBINE_2024 + '\n[[normalise]]\nchannels = ["NOx"]\nstandard = "QCVN 19:2009"\n'
     'source = "process"',
     f"{F}: normalise[1].channels = 'NOx': expected a channel no other [[normalise]] converts "
     "(normalise[0] does)"),
])
def test_a_broken_reference_condition_is_refused_naming_key_and_value(body: str,
                                                                      expected: str) -> None:
    assert expected in problems(body)


def test_config_check_refuses_an_unknown_category_and_warns_about_unverified_rows(
        tmp_path: Path) -> None:
    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "config", "check",
                               "--offline", str(path)],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)

    example = ROOT / "examples" / "stackgas.toml"
    ok = check(example)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{example}: ok:" in ok.stdout
    # the 2024 rows are not verified against the gazetted text: said, not hidden
    assert (f"{example}: warning: normalise[0]: QCVN 19:2024 source 'solid_fuel_boiler': "
            "reference O2 6 % (") in ok.stdout
    assert "reference conditions 25 degC, 101.325 kPa, 24.45 L/mol" in ok.stdout
    broken = tmp_path / "stackgas.toml"
    text = example.read_text(encoding="utf-8")
    assert 'source = "solid_fuel_boiler"' in text
    broken.write_text(text.replace('source = "solid_fuel_boiler"', 'source = "coal"'),
                      encoding="utf-8")
    bad = check(broken)
    assert bad.returncode == 1
    assert (f"{broken}: normalise[0].source = 'coal': expected a source category of "
            "QCVN 19:2024 (gas_turbine, solid_fuel_boiler,") in bad.stdout + bad.stderr


# ------------------------------------------------------------------------- the data files


def test_the_shipped_standards_are_complete_and_say_where_each_value_comes_from() -> None:
    known = standards()
    assert set(known) == {"QCVN 19:2024", "QCVN 19:2009"}
    new, old = known["QCVN 19:2024"], known["QCVN 19:2009"]
    assert (new.in_force, old.replaced_by) == ("2025-07-01", "QCVN 19:2024")
    assert (old.temp_c, old.molar_volume_l, old.pressure_mmhg) == (25.0, 24.45, 760.0)
    # 2024 section 1.3.10 as quoted by the one secondary source found: 25 degC, 760 mmHg; its
    # dry basis is not stated, so the conditions row stays unverified. Of the O2 rows only the
    # gas turbine's (category 2.4, 15 %) was seen: verified = true for it alone.
    assert (new.temp_c, new.molar_volume_l, new.pressure_mmhg) == (25.0, 24.45, 760.0)
    assert not new.verified
    assert {k for k, c in new.categories.items() if c.verified} == {"gas_turbine"}
    assert {k: c.o2_ref for k, c in new.categories.items()} == {
        "gas_turbine": 15.0, "solid_fuel_boiler": 6.0, "liquid_fuel_boiler": 3.0,
        "gas_fuel_boiler": 3.0, "incinerator": 11.0, "cement_kiln": 10.0, "process": None}
    for std in known.values():
        assert std.dry and std.note
        assert all(c.note and c.title for c in std.categories.values())


@pytest.mark.parametrize(("change", "key"), [
    (("molar_volume_l = 24.45", "molar_volume_l = 22.414"), "conditions.molar_volume_l = 22.414"),
    (("o2_ref = 15.0", "o2_ref = 21.0"), "category.gas_turbine.o2_ref = 21.0"),
    (("verified = true\nnote = \"15 %", "note = \"15 %"), "category.gas_turbine.verified"),
])
def test_a_broken_data_file_is_refused_naming_the_key(tmp_path: Path, change: tuple[str, str],
                                                      key: str) -> None:
    text = (ROOT / "edge_agent/config/standards/qcvn19_2024.toml").read_text(encoding="utf-8")
    assert change[0] in text
    path = tmp_path / "qcvn19_2024.toml"
    path.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    with pytest.raises(StandardError, match=rf"{path}: {key}"):
        load_standard(path)


def test_the_example_station_selects_the_2024_standard() -> None:
    cfg = load_config(ROOT / "examples" / "stackgas.toml")
    (n,) = cfg.normalise
    assert (n.standard, n.source, n.how.o2_ref, n.how.vm_l) == ("QCVN 19:2024",
                                                                "solid_fuel_boiler", 6.0, 24.45)
    assert np.isclose(n.how.molar_volume_l, 24.45)
