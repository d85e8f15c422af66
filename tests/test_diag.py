"""`quantrac diag` pieces that need no bus: interpretations, tables, config, unit ranges."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pytest

from drivers.codec import encode_value
from drivers.decode import encode_image
from drivers.profile import builtin_profile
from edge_agent.config.reader import ConfigError, load_poll_config
from edge_agent.console.diag import Row, guess_profile, pair_table, watch_table, word_table
from edge_agent.console.diag_cli import _units
from protocol.model import Sample, Status


def test_pair_table_shows_both_word_orders_of_a_float() -> None:
    words = encode_value(25.3, "float32", "big", "little")  # Hach-style: low word first
    lines = pair_table(100, words)
    assert all(len(line) <= 80 for line in lines)
    abcd, cdab = lines[1], lines[2]
    assert "100-101" in abcd and "ABCD" in abcd
    assert "CDAB" in cdab and cdab.split()[-1] == "25.3"
    assert not math.isclose(float(abcd.split()[-1]), 25.3, rel_tol=0.1)


def test_word_table_signed_and_hex() -> None:
    lines = word_table(7, [0xFFFE, 0x0010])
    assert lines[1].split() == ["7", "0xFFFE", "65534", "-2"]
    assert lines[2].split() == ["8", "0x0010", "16", "16"]


def test_watch_table_fits_80_columns() -> None:
    rows = [
        Row("a-very-long-device-name", "NOx", "mg/Nm3",
            Sample("NOx", 95.0, 123.456789, Status.MEASURING)),
        Row("flow1", "Flow", "m3/h", Sample.offline("Flow", 99.0)),
        Row("ph1", "pH", "pH", None),
    ]
    lines = watch_table(rows, now=100.0)
    assert all(len(line) <= 80 for line in lines)
    assert "123.457" in lines[1] and "measuring" in lines[1] and lines[1].endswith("5.0")
    assert "offline" in lines[2] and " - " in lines[2]
    assert "waiting" in lines[3]


def test_guess_prefers_the_profile_whose_values_are_plausible() -> None:
    hach = builtin_profile("hach_sc")
    ph = builtin_profile("ph_probe")
    image = encode_image(hach, {"COD": 60.0, "NH4": 3.0, "Temp": 27.0})
    g = guess_profile(hach, image)
    assert (g.plausible, g.channels) == (3, 3)
    assert guess_profile(ph, image).plausible < 2
    swapped = {k: v for k, v in image.items() if k[1] >= 48}  # status alone: values missing
    assert guess_profile(hach, swapped).plausible == 0


def test_units_ranges() -> None:
    assert _units("1-3,7") == [1, 2, 3, 7]
    with pytest.raises(argparse.ArgumentTypeError, match=r"1\.\.247"):
        _units("0-5")
    with pytest.raises(argparse.ArgumentTypeError, match="'x'"):
        _units("x")


def test_poll_config_loads_and_names_the_key_at_fault(tmp_path: Path) -> None:
    good = tmp_path / "station.toml"
    good.write_text(
        '[poll]\ntimeout = 0.2\n'
        '[[bus]]\nname = "a"\nport = "/dev/ttyUSB0"\nbaud = 19200\nparity = "E"\n'
        '[[bus]]\nname = "b"\nhost = "127.0.0.1"\ntcp_port = 1502\n'
        '[[device]]\nname = "ph1"\nbus = "a"\nprofile = "ph_probe"\nunit = 3\ninterval = 2\n'
        '[[device]]\nname = "gas"\nbus = "b"\nprofile = "cems"\nunit = 1\nchannels = ["SO2"]\n'
    )
    cfg = load_poll_config(good)
    assert cfg.policy.timeout == 0.2
    assert [b.name for b in cfg.buses] == ["a", "b"]
    assert cfg.buses[0].serial is not None and cfg.buses[0].serial.parity == "E"
    assert [(b, d.name, d.unit) for b, d in cfg.devices] == [("a", "ph1", 3), ("b", "gas", 1)]
    assert cfg.devices[1][1].channel_names == ["SO2"]
    assert not math.isnan(cfg.devices[0][1].interval)

    cases = {
        '[[bus]]\nname = "a"\n': "bus 'a' = {}: expected either port",
        '[[bus]]\nname = "a"\nhost = "h"\n[[device]]\nname = "d"\nbus = "z"\n'
        'profile = "ph_probe"\nunit = 1\n': "device 'd': bus = 'z': expected the name of a",
        '[[bus]]\nname = "a"\nhost = "h"\n[[device]]\nname = "d"\nbus = "a"\n'
        'profile = "ph_probe"\nunit = 300\n': "bus 'a' device 'd': unit = 300: expected a Modbus",
        '[[bus]]\nname = "a"\nhost = "h"\n[[device]]\nname = "d"\nbus = "a"\n'
        'profile = "ph_probe"\nunit = "1"\n': "bus 'a' device 'd': unit = '1': expected a Modbus",
        '[[bus]]\nname = "a"\nport = "p"\nparity = "X"\n': "parity = 'X': expected 'N'",
        '[[bus]\n': "expected valid TOML",
        '[[bus]]\nname = "a"\nhost = "h"\n[[device]]\nname = "d"\nbus = "a"\n'
        'profile = "nope"\nunit = 1\n': "bus 'a' device 'd': profile = 'nope': expected a built-in",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(message)) as info:
            load_poll_config(bad)
        assert str(bad) in str(info.value)
