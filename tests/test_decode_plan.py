"""The fast decoder (a plan cached per profile) gives exactly what the word-by-word one gave.

``reference`` below is the decoder as it was before the plan existed: every word looked up,
checked and joined one at a time. Any image (words missing, None, out of range; statuses of
any value), any channel list, any built-in profile: same samples bit for bit, same errors.
"""

from __future__ import annotations

import gc
import math
import struct
from collections.abc import Sequence
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.decode import decode_samples, worst
from drivers.profile import (
    ChannelSpec,
    Profile,
    StatusSpec,
    builtin_profile,
    builtin_profile_names,
    parse_profile,
    profile_registers,
)
from protocol.model import Sample, Status

_FORMATS = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f",
            "float64": ">d"}
Image = dict[tuple[int, int], Any]  # None and out-of-range words are the point
PROFILES = {name: builtin_profile(name) for name in builtin_profile_names()}


def _reference_value(words: list[int], ch: ChannelSpec) -> float | int:
    for i, w in enumerate(words):
        if not 0 <= w <= 0xFFFF:
            raise ValueError(f"word {i} = {w} is not a 16-bit register value")
    ordered = words[::-1] if ch.word_order == "little" else words
    order: Literal["big", "little"] = "big" if ch.byte_order == "big" else "little"
    raw = b"".join(w.to_bytes(2, order) for w in ordered)
    value: float | int = struct.unpack(_FORMATS[ch.dtype], raw)[0]
    return value


def _reference_status(spec: StatusSpec | None,
                      image: Image) -> Status | None:
    if spec is None:
        return Status.MEASURING
    word = image.get((spec.function, spec.address))
    return None if word is None else spec.status_of(word)


def reference(profile: Profile, image: Image, t: float,
              channels: Sequence[str] | None) -> list[Sample]:
    specs = profile.channels if channels is None else [profile.channel(n) for n in channels]
    out = []
    for ch in specs:
        words = [image.get((ch.function, ch.address + i)) for i in range(ch.words)]
        own = _reference_status(ch.status, image)
        dev = _reference_status(profile.device_status, image)
        if own is None or dev is None or any(w is None for w in words):
            out.append(Sample.offline(ch.name, t))
            continue
        value = _reference_value([w for w in words if w is not None], ch) * ch.scale + ch.offset
        if not math.isfinite(value):
            out.append(Sample(ch.name, t, math.nan, Status.FAULT))
        else:
            out.append(Sample(ch.name, t, float(value), worst(own, dev)))
    return out


def _key(samples: list[Sample]) -> list[tuple[str, float, bytes, Status]]:
    """Comparable bit for bit: -0.0 differs from 0.0, and NaN equals NaN."""
    return [(s.channel, s.t, struct.pack(">d", s.value), s.status) for s in samples]


def _outcome(fn: object, *args: object) -> object:
    try:
        return _key(fn(*args))  # type: ignore[operator]
    except (ValueError, KeyError) as exc:
        return (type(exc), str(exc))


@st.composite
def cases(draw: st.DrawFn) -> tuple[Profile, Image,
                                    list[str] | None]:
    profile = PROFILES[draw(st.sampled_from(sorted(PROFILES)))]
    names = profile.channel_names
    channels = draw(st.none() | st.lists(st.sampled_from(names), min_size=1, max_size=6))
    word = st.integers(0, 0xFFFF)
    odd = st.none() | st.integers(-3, -1) | st.integers(0x10000, 0x10002)
    image: Image = {}
    for reg in sorted(profile_registers(profile)):
        kind = draw(st.sampled_from(["word"] * 8 + ["special", "missing", "odd"]))
        if kind == "word":
            image[reg] = draw(word)
        elif kind == "special":  # NaN, Inf, -0.0 and small status codes, as analysers send
            image[reg] = draw(st.sampled_from([0, 1, 2, 3, 4, 0x0100, 0x0300, 0x7FC0, 0x7F80,
                                               0xFF80, 0x8000, 0xFFFF]))
        elif kind == "odd":
            image[reg] = draw(odd)
    return profile, image, channels


@settings(max_examples=400, deadline=None)
@given(cases(), st.floats(0, 2e9, allow_nan=False))
def test_fast_decoder_matches_the_word_by_word_one(
        case: tuple[Profile, Image, list[str] | None],
        t: float) -> None:
    profile, image, channels = case
    assert _outcome(decode_samples, profile, image, t, channels) == \
        _outcome(reference, profile, image, t, channels)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_word_present_takes_the_fast_path_and_agrees(name: str) -> None:
    profile = PROFILES[name]
    image: Image = {
        reg: (0x4148 + 7 * i) & 0xFFFF for i, reg in enumerate(sorted(profile_registers(profile)))}
    for channels in (None, list(reversed(profile.channel_names)), profile.channel_names[:1]):
        got = decode_samples(profile, image, 1.5, channels)
        assert _key(got) == _key(reference(profile, image, 1.5, channels))
        # asked twice (the cached plan): the same answer
        assert _key(decode_samples(profile, image, 1.5, channels)) == _key(got)


def test_no_channels_asked_gives_no_samples() -> None:
    for profile in (PROFILES["ph_probe"], PROFILES["hach_sc"], _one_channel_profile("big", 1.0)):
        assert decode_samples(profile, {}, 0.0, []) == []


def test_a_profile_of_one_word() -> None:
    profile = parse_profile({"name": "t", "defaults": {"function": 4, "dtype": "int16"},
                             "channels": {"X": {"address": 7, "range": [-5.0, 5.0],
                                                "scale": 0.5}}}, "<test>")
    assert _key(decode_samples(profile, {(4, 7): 0xFFFE}, 2.0)) == \
        _key([Sample("X", 2.0, -1.0, Status.MEASURING)])
    assert decode_samples(profile, {}, 2.0)[0].status is Status.OFFLINE


def test_unknown_channel_is_still_a_key_error() -> None:
    with pytest.raises(KeyError, match="no channel 'nope'"):
        decode_samples(PROFILES["liquiline"], {}, 0.0, ["pH", "nope"])


def _one_channel_profile(word_order: str, scale: float) -> Profile:
    return parse_profile({
        "name": "t", "defaults": {"function": 3, "dtype": "float32", "word_order": word_order},
        "channels": {"X": {"address": 0, "range": [0.0, 100.0], "scale": scale}},
    }, "<test>")


def test_a_new_profile_never_gets_a_dead_profiles_plan() -> None:
    """Plans are cached by id(profile); ids are reused once a profile is gone."""
    image: Image = {(3, 0): 0x4148, (3, 1): 0x0000}
    for i in range(200):
        word_order = ("big", "little")[i % 2]
        scale = float(1 + i % 3)
        profile = _one_channel_profile(word_order, scale)
        expected = 12.5 * scale if word_order == "big" else \
            struct.unpack(">f", bytes.fromhex("00004148"))[0] * scale
        assert decode_samples(profile, image, 0.0)[0].value == expected
        del profile
        if i % 50 == 0:
            gc.collect()
