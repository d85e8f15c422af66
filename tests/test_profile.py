"""Analyser profiles: built-ins load, broken ones are rejected clearly, decoding is faithful."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.codec import decode_value, encode_value
from drivers.decode import DEVICE, decode_samples, encode_image
from drivers.profile import (
    ProfileError,
    builtin_profile,
    builtin_profile_names,
    load_profile,
    profile_registers,
)
from protocol.model import Status

NAMES = builtin_profile_names()

GOOD = """
name = "t"
[defaults]
function = 4
dtype = "float32"
[device_status]
address = 20
map = { 0 = "measuring", 1 = "calibrating" }
[channels.COD]
address = 0
unit = "mg/L"
range = [1.0, 2.0]
[channels.TSS]
address = 2
unit = "mg/L"
range = [1.0, 2.0]
"""


def test_all_six_kinds_are_shipped() -> None:
    assert set(NAMES) >= {"ph_probe", "hach_sc", "liquiline", "wastewater_multi", "flowmeter",
                          "cems"}
    assert builtin_profile("cems").channel_names == ["SO2", "NOx", "CO", "O2", "PM", "Temp", "P",
                                                     "Flow"]
    assert set(builtin_profile("wastewater_multi").channel_names) == {"COD", "TSS", "NH4", "TN",
                                                                      "TP"}
    hach = builtin_profile("hach_sc")
    assert hach.channel("COD").word_order == "little" and hach.device_status is not None
    eh = builtin_profile("liquiline")
    assert all(ch.status is not None and ch.status.mask == 0xFF00 for ch in eh.channels)
    flow = builtin_profile("flowmeter")
    assert flow.channel("FlowTotal").dtype == "uint32"


def _bits(x: float) -> bytes:
    return struct.pack(">d", x)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("status", [Status.MEASURING, Status.CALIBRATING, Status.MAINTENANCE,
                                    Status.FAULT])
def test_encode_then_decode_every_profile(name: str, status: Status) -> None:
    profile = builtin_profile(name)
    values = {ch.name: (ch.lo + ch.hi) / 3 for ch in profile.channels}
    specs = [s for s in [profile.device_status, *(c.status for c in profile.channels)] if s]
    has_status = bool(specs)
    statuses = {ch.name: status for ch in profile.channels}
    if not all(status in s.mapping.values() or status is s.default for s in specs):
        with pytest.raises(ValueError, match=f"cannot say {status.name}"):
            encode_image(profile, values, statuses)
        return  # e.g. a flowmeter has no calibration state
    image = encode_image(profile, values, statuses)
    assert set(image) == profile_registers(profile)
    samples = decode_samples(profile, image, t=1000.0)
    assert [s.channel for s in samples] == profile.channel_names
    for s, ch in zip(samples, profile.channels, strict=True):
        assert s.t == 1000.0
        assert math.isclose(s.value, values[ch.name], rel_tol=1e-6, abs_tol=ch.scale)
        expected = status if has_status and (ch.status or profile.device_status) else \
            Status.MEASURING
        if name == "flowmeter" and ch.name == "FlowTotal":
            expected = Status.MEASURING  # the alarm word belongs to Flow only
        assert s.status is expected
        # the decoded value is exactly what the words say: raw * scale + offset
        raw = decode_value([image[r] for r in ch.registers()], ch.dtype, ch.byte_order,
                           ch.word_order)
        assert _bits(s.value) == _bits(raw * ch.scale + ch.offset)


def test_device_status_codes_map_and_unknown_is_fault() -> None:
    p = builtin_profile("hach_sc")
    image = encode_image(p, {"COD": 50.0, "NH4": 2.0, "Temp": 25.0})
    for raw, status in [(0, Status.MEASURING), (1, Status.CALIBRATING), (2, Status.MAINTENANCE),
                        (3, Status.MEASURING), (4, Status.FAULT), (99, Status.FAULT)]:
        image[(3, 48)] = raw
        assert {s.status for s in decode_samples(p, image, 0.0)} == {status}


def test_state_byte_uses_only_its_byte() -> None:
    p = builtin_profile("liquiline")
    image = encode_image(p, {"pH": 7.0, "Temp": 25.0, "TSS": 20.0},
                         {"pH": Status.CALIBRATING})
    assert image[(4, 2)] == 0x0100
    image[(4, 5)] |= 0x00FF  # low byte noise must not change the state
    by = {s.channel: s.status for s in decode_samples(p, image, 0.0)}
    assert by == {"pH": Status.CALIBRATING, "Temp": Status.MEASURING, "TSS": Status.MEASURING}


def test_device_key_overrides_device_status() -> None:
    p = builtin_profile("cems")
    image = encode_image(p, {"SO2": 100.0}, {DEVICE: Status.CALIBRATING})
    assert decode_samples(p, image, 0.0, channels=["SO2"])[0].status is Status.CALIBRATING


def test_missing_word_is_offline_never_invented() -> None:
    p = builtin_profile("cems")
    image = encode_image(p, {ch.name: ch.lo for ch in p.channels})
    del image[(4, 15)]  # second word of Flow
    by = {s.channel: s for s in decode_samples(p, image, 5.0)}
    assert by["Flow"].status is Status.OFFLINE and math.isnan(by["Flow"].value)
    assert by["SO2"].status is Status.MEASURING
    del image[(3, 0)]  # the device status: nothing can be said about any channel
    assert {s.status for s in decode_samples(p, image, 5.0)} == {Status.OFFLINE}
    assert all(math.isnan(s.value) for s in decode_samples(p, {}, 5.0))


def test_non_finite_float_is_fault_with_nan() -> None:
    p = builtin_profile("liquiline")
    image = encode_image(p, {"pH": 7.0, "Temp": 25.0, "TSS": 20.0})
    image[(4, 0)], image[(4, 1)] = 0x7F80, 0  # +inf
    s = decode_samples(p, image, 0.0, channels=["pH"])[0]
    assert s.status is Status.FAULT and math.isnan(s.value)


@settings(max_examples=60)
@given(st.sampled_from(NAMES), st.dictionaries(
    st.tuples(st.sampled_from((3, 4)), st.integers(0, 30)), st.integers(0, 0xFFFF)))
def test_random_images_never_crash_decode(name: str, image: dict[tuple[int, int], int]) -> None:
    p = builtin_profile(name)
    samples = decode_samples(p, image, 0.0)
    assert len(samples) == len(p.channels)
    for s in samples:
        assert isinstance(s.value, float)
        assert math.isnan(s.value) == (s.status in (Status.OFFLINE, Status.FAULT)) or \
            s.status is Status.FAULT


# --------------------------------------------------------------------------- broken profiles

def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    return path


def test_good_fixture_loads(tmp_path: Path) -> None:
    p = load_profile(_write(tmp_path, GOOD))
    assert p.channel_names == ["COD", "TSS"] and p.source.endswith("broken.toml")


@pytest.mark.parametrize(("old", "new", "key", "value"), [
    ('dtype = "float32"', 'dtype = "float16"', "channels.COD.dtype", "'float16'"),
    ('function = 4', 'function = 5', "defaults.function", "5"),
    ('address = 0\n', 'address = 0\nfunction = 16\n', "channels.COD.function", "16"),
    ('address = 2\n', 'address = 1\n', "channels.TSS.address", "1"),  # overlaps COD
    ('address = 20', 'address = 3', "device_status.address", "3"),  # overlaps TSS
    ('address = 2\n', 'address = 65535\n', "channels.TSS.address", "65535"),  # runs past end
    ('address = 2\n', 'address = -1\n', "channels.TSS.address", "-1"),
    ('name = "t"', 'name = "t"\nmax_read = 200', "max_read", "200"),
    ('name = "t"', 'name = "t"\nmax_read = 0', "max_read", "0"),
    ('[channels.TSS]', '[channels.COD]', "<toml>", "Cannot declare ('channels', 'COD') twice"),
    ('[channels.TSS]', '[channels.cod]', "channels.cod", "'cod'"),  # duplicate channel
    ('unit = "mg/L"\nrange = [1.0, 2.0]\n[channels.TSS]',
     'range = [1.0, 2.0]\n[channels.TSS]', "", ""),  # unit is optional: loads
    ('range = [1.0, 2.0]\n[channels.TSS]', '[channels.TSS]', "channels.COD.range", "missing"),
    ('address = 0', 'adress = 0', "channels.COD.adress", "0"),  # typo: unknown key
    ('range = [1.0, 2.0]\n[channels.TSS]', 'range = [3.0, 2.0]\n[channels.TSS]',
     "channels.COD.range", "[3.0, 2.0]"),
    ('1 = "calibrating"', '1 = "calibrate"', "device_status.map.1", "'calibrate'"),
    ('1 = "calibrating"', 'x = "calibrating"', "device_status.map.x", "'x'"),
    ('[device_status]', '[device_status]\nmask = 0x00F0\nshift = 5', "device_status.shift",
     "5"),
    ('dtype = "float32"', 'dtype = "float32"\nword_order = "middle"',
     "channels.COD.word_order", "'middle'"),
    ('dtype = "float32"', 'dtype = "float32"\nbyte_order = "pdp"', "channels.COD.byte_order",
     "'pdp'"),
    ('name = "t"', 'name = "t"\n[oops', "<toml>", "line"),
    ('name = "t"', '', "name", "missing"),
])
def test_broken_profile_names_file_key_and_value(tmp_path: Path, old: str, new: str, key: str,
                                                 value: str) -> None:
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    if not key:
        load_profile(path)
        return
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    err = info.value
    assert err.file == str(path) and err.key == key
    message = str(err)
    assert message.startswith((f"{path}: {key} = ", f"{path}: {key}: missing;")) and \
        value in message
    assert "expected" in message or "missing" in message or "duplicate" in message or \
        "overlaps" in message or "not valid TOML" in message


def test_unknown_builtin_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"no such built-in profile; known: ambient_co, .*cems"):
        builtin_profile("nope")
    with pytest.raises(ProfileError, match="expected a readable file"):
        load_profile(tmp_path / "absent.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ProfileError, match="expected UTF-8 text"):
        load_profile(tmp_path / "bin.toml")


def test_a_four_register_uint64_totaliser_decodes_to_its_count(tmp_path: Path) -> None:
    p = load_profile(_write(tmp_path, """
name = "meter64"
[channels.VolTotal]
function = 3
address = 10
dtype = "uint64"
word_order = "little"
unit = "L"
range = [0.0, 1.8e19]
"""))
    ch = p.channel("VolTotal")
    assert ch.words == 4
    count = 123_456_789_012_345  # above any uint32 (4.29e9), exact in a float64 (< 2**53)
    words = encode_value(count, "uint64", word_order="little")
    image = {(3, 10 + i): w for i, w in enumerate(words)}
    (s,) = decode_samples(p, image, 1.0)
    assert s.value == float(count) and s.status is Status.MEASURING
