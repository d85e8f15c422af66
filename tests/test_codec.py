"""Value <-> register-word codec: known frames, and round trips for every type and order."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.codec import DTYPES, ORDERS, decode_value, encode_value, word_count

orders = st.sampled_from(ORDERS)
INT_RANGES = {"int16": (-0x8000, 0x7FFF), "uint16": (0, 0xFFFF),
              "int32": (-0x80000000, 0x7FFFFFFF), "uint32": (0, 0xFFFFFFFF),
              "int64": (-(1 << 63), (1 << 63) - 1), "uint64": (0, (1 << 64) - 1)}


def _bits(x: float, dtype: str) -> bytes:
    return struct.pack(">f" if dtype == "float32" else ">d", x)


def test_known_layouts() -> None:
    # 12.5 = 0x41480000: high word first (E+H), low word first (Hach sc), byte-swapped.
    assert encode_value(12.5, "float32") == [0x4148, 0x0000]
    assert encode_value(12.5, "float32", word_order="little") == [0x0000, 0x4148]
    assert encode_value(12.5, "float32", byte_order="little") == [0x4841, 0x0000]
    assert encode_value(-2, "int16") == [0xFFFE]
    assert encode_value(0x12345678, "uint32", word_order="little") == [0x5678, 0x1234]
    assert encode_value(1.0, "float64") == [0x3FF0, 0, 0, 0]
    assert [word_count(d) for d in DTYPES] == [1, 1, 2, 2, 2, 4, 4, 4]
    # a four-register totaliser, high word first: 0x0001_0002_0003_0004
    assert encode_value(0x0001000200030004, "uint64") == [1, 2, 3, 4]
    assert decode_value([4, 3, 2, 1], "uint64", word_order="little") == 0x0001000200030004
    assert decode_value([0xFFFF] * 4, "int64") == -1


def test_wrong_word_order_gives_the_tiny_denormal_of_design_9() -> None:
    wrong = decode_value(encode_value(12.5, "float32", word_order="little"), "float32")
    assert 1e-41 < wrong < 1e-40  # ~2.34e-41: the symptom of swapped words


@given(st.sampled_from(sorted(INT_RANGES)), orders, orders, st.data())
def test_integer_round_trip(dtype: str, bo: str, wo: str, data: st.DataObject) -> None:
    lo, hi = INT_RANGES[dtype]
    value = data.draw(st.integers(lo, hi))
    words = encode_value(value, dtype, bo, wo)
    assert len(words) == word_count(dtype) and all(0 <= w <= 0xFFFF for w in words)
    assert decode_value(words, dtype, bo, wo) == value


@given(st.sampled_from(("float32", "float64")), orders, orders, st.data())
def test_float_value_round_trip_is_bitwise(dtype: str, bo: str, wo: str,
                                           data: st.DataObject) -> None:
    if dtype == "float32":
        value = data.draw(st.floats(width=32, allow_nan=False))
    else:
        value = data.draw(st.floats(allow_nan=False))
    back = decode_value(encode_value(value, dtype, bo, wo), dtype, bo, wo)
    assert isinstance(back, float)
    assert _bits(back, dtype) == _bits(value, dtype)  # -0.0, inf, denormals included


@given(st.sampled_from(DTYPES), orders, orders, st.data())
def test_words_round_trip_bitwise_except_nan_canonicalised(dtype: str, bo: str, wo: str,
                                                           data: st.DataObject) -> None:
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=word_count(dtype),
                               max_size=word_count(dtype)))
    value = decode_value(words, dtype, bo, wo)
    again = encode_value(value, dtype, bo, wo)
    if isinstance(value, float) and math.isnan(value):
        canonical = encode_value(math.nan, dtype, bo, wo)
        assert again == canonical
        assert math.isnan(decode_value(canonical, dtype, bo, wo))
    else:
        assert again == words


def test_nan_encodes_to_the_canonical_quiet_nan() -> None:
    assert encode_value(math.nan, "float32") == [0x7FC0, 0]
    assert encode_value(-math.nan, "float64") == [0x7FF8, 0, 0, 0]
    signalling = [0x7F80, 0x0001]
    assert math.isnan(decode_value(signalling, "float32"))


@pytest.mark.parametrize(("value", "dtype", "match"), [
    (70000, "int16", "outside the int16 range"),
    (-1, "uint32", "outside the uint32 range"),
    (1 << 64, "uint64", "outside the uint64 range"),
    (1.5, "int32", "not an integer"),
    (1e300, "float32", "too large"),
    (1, "int8", "unknown data type"),
])
def test_encode_rejects(value: float, dtype: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        encode_value(value, dtype)


def test_decode_rejects_bad_words_and_orders() -> None:
    with pytest.raises(ValueError, match="takes 2 words"):
        decode_value([1], "float32")
    with pytest.raises(ValueError, match="not a 16-bit"):
        decode_value([0x10000], "uint16")
    with pytest.raises(ValueError, match="unknown word order 'middle'"):
        decode_value([1, 2], "int32", word_order="middle")
