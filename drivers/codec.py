"""Sans-IO conversion between numbers and 16-bit Modbus register words.

Modbus itself only moves 16-bit words; how a 32- or 64-bit value is spread over them is up to
each analyser maker, so both orders are parameters taken from the profile:

* ``byte_order`` is the order of the two bytes inside each word ("big" is the Modbus norm);
* ``word_order`` is the order of the words: "big" sends the high word first (Endress+Hauser,
  most CEMS), "little" sends the low word first (Hach sc controllers by default).

Reading a float32 with the wrong word order does not fail, it gives a plausible-looking but
absurd number: 12.5 (0x41480000) read with its words swapped is 0x00004148, a denormal of about
2.4e-41. A value of that size in a log means the profile's ``word_order`` is wrong.

NaN rule (so that round trips are exact and identical on x86 and aarch64, whose FPUs treat NaN
payloads differently): *decoding* any NaN pattern gives a NaN; *encoding* any NaN gives the
canonical quiet NaN with a clear sign bit (float32 0x7FC00000, float64 0x7FF8000000000000).
So words -> value -> words is bitwise identical for every non-NaN pattern (infinities, -0.0 and
denormals included) and maps every NaN pattern to the canonical one; value -> words -> value is
bitwise identical for every value the type can hold.

64-bit integers (``int64``, ``uint64``: the four-register totalisers of some flowmeters and
energy meters, which never wrap in a station's life) decode exactly to a Python int here; a
sample carries a float64, which holds every count up to 2**53 (9.0e15: a litre counter at
10 m3/s for 28 years) exactly and rounds larger ones to 53 bits.

The decoder (drivers.decode) turns any
non-finite value into a FAULT sample anyway, so a NaN payload never carries meaning here.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from typing import Literal, NamedTuple, cast

DTYPES = ("int16", "uint16", "int32", "uint32", "float32", "float64", "int64", "uint64")
ORDERS = ("big", "little")

_FORMATS = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
    "float64": ">d",
    "int64": ">q",
    "uint64": ">Q",
}
_INT_RANGES = {
    "int16": (-0x8000, 0x7FFF),
    "uint16": (0, 0xFFFF),
    "int32": (-0x80000000, 0x7FFFFFFF),
    "uint32": (0, 0xFFFFFFFF),
    "int64": (-0x8000000000000000, 0x7FFFFFFFFFFFFFFF),
    "uint64": (0, 0xFFFFFFFFFFFFFFFF),
}
_CANONICAL_NAN = {"float32": b"\x7f\xc0\x00\x00", "float64": b"\x7f\xf8" + bytes(6)}


def _check(dtype: str, byte_order: str, word_order: str) -> None:
    if dtype not in _FORMATS:
        raise ValueError(f"unknown data type {dtype!r}, expected one of {', '.join(DTYPES)}")
    if byte_order not in ORDERS:
        raise ValueError(f"unknown byte order {byte_order!r}, expected 'big' or 'little'")
    if word_order not in ORDERS:
        raise ValueError(f"unknown word order {word_order!r}, expected 'big' or 'little'")


def word_count(dtype: str) -> int:
    """How many 16-bit registers one value of ``dtype`` occupies."""
    if dtype not in _FORMATS:
        raise ValueError(f"unknown data type {dtype!r}, expected one of {', '.join(DTYPES)}")
    return struct.calcsize(_FORMATS[dtype]) // 2


def _to_bytes(value: float | int, dtype: str) -> bytes:
    """The value as big-endian bytes (high byte of the high word first)."""
    if dtype in _INT_RANGES:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{value!r} is not an integer, cannot be stored as {dtype}")
            value = int(value)
        lo, hi = _INT_RANGES[dtype]
        if not lo <= value <= hi:
            raise ValueError(f"{value} is outside the {dtype} range {lo}..{hi}")
        return struct.pack(_FORMATS[dtype], value)
    x = float(value)
    if math.isnan(x):
        return _CANONICAL_NAN[dtype]
    try:
        return struct.pack(_FORMATS[dtype], x)
    except OverflowError:
        raise ValueError(f"{value!r} is too large for {dtype}") from None


def encode_value(value: float | int, dtype: str, byte_order: str = "big",
                 word_order: str = "big") -> list[int]:
    """The register words that carry ``value``, in the order they sit in the register map.

    Integers must fit the type exactly (a float with a fraction or out of range raises
    ValueError: a simulator or test must not silently wrap); floats round to nearest.
    """
    _check(dtype, byte_order, word_order)
    raw = _to_bytes(value, dtype)
    order = cast(Literal["big", "little"], byte_order)
    words = [int.from_bytes(raw[i:i + 2], order) for i in range(0, len(raw), 2)]
    # int.from_bytes(pair, "little") swaps the two bytes of each word.
    if word_order == "little":
        words.reverse()
    return words


class ValueCodec(NamedTuple):
    """How to read one value of a (dtype, byte order, word order) with two struct calls.

    The words are packed as big-endian 16-bit integers, in the order given by ``reverse`` (True
    reverses the words of one value), and the value is read back with ``unpack`` (big- or
    little-endian ``dtype``). That covers all four orders: a little byte order inside each word
    read as big-endian words is the whole value read little-endian with its words reversed.
    """

    words: int
    reverse: bool
    unpack: struct.Struct


@functools.cache
def value_codec(dtype: str, byte_order: str = "big", word_order: str = "big") -> ValueCodec:
    """The decoding recipe for one type and order, built once (raises ValueError if unknown)."""
    _check(dtype, byte_order, word_order)
    prefix = ">" if byte_order == "big" else "<"
    return ValueCodec(word_count(dtype), byte_order != word_order,
                      struct.Struct(prefix + _FORMATS[dtype][1]))


_PACK_WORDS = [struct.Struct(f">{n}H") for n in range(5)]  # 0..4 words, by count


def decode_value(words: Sequence[int], dtype: str, byte_order: str = "big",
                 word_order: str = "big") -> float | int:
    """The value carried by ``words`` (exactly :func:`word_count` of them, each 0..65535).

    Integer types give an ``int``, float types a ``float``.
    """
    n, reverse, unpack = value_codec(dtype, byte_order, word_order)
    if len(words) != n:
        raise ValueError(f"{dtype} takes {n} words, got {len(words)}")
    try:
        raw = _PACK_WORDS[n].pack(*(reversed(words) if reverse else words))
    except struct.error:  # a word out of range or not an int: say which, as the slow path does
        return _decode_checked(words, dtype, byte_order, word_order)
    value: float | int = unpack.unpack(raw)[0]
    return value


def _decode_checked(words: Sequence[int], dtype: str, byte_order: str,
                    word_order: str) -> float | int:
    """The word-by-word decoder: slow, but its errors name the word at fault."""
    ordered = list(words)
    for i, w in enumerate(ordered):
        if not 0 <= w <= 0xFFFF:
            raise ValueError(f"word {i} = {w} is not a 16-bit register value")
    if word_order == "little":
        ordered.reverse()
    order: Literal["big", "little"] = "big" if byte_order == "big" else "little"
    raw = b"".join(w.to_bytes(2, order) for w in ordered)
    value: float | int = struct.unpack(_FORMATS[dtype], raw)[0]
    return value
