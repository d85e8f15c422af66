"""Realistic, reproducible analyser values: a pure function of (seed, channel, t).

A wastewater discharge or a stack follows the factory's day: low at night, a ramp in the
morning shift, a peak in the afternoon. Each channel gets that diurnal swing (with its own phase
drawn from the seed), a slower wander over a few hours, and noise that is smooth over seconds
(interpolated between hashed points, so two reads a second apart differ a little, not wildly).
Everything stays inside the profile's typical range. Totalisers (``...Total`` channels of an
integer type) count up instead. A wind direction (a channel in ``deg``) swings around north
instead of across its range, so a station's vane crosses 360/0 as real ones do (350 and 10
degrees in one window: the case an arithmetic mean gets wrong). Being pure, a test can
recompute any value the simulator served.
"""

from __future__ import annotations

import hashlib
import math
import struct

from drivers.profile import ChannelSpec

DAY = 86400.0
LOCAL_OFFSET = 7 * 3600.0  # the factory's day follows local time (Asia/Ho_Chi_Minh)


def _unit(seed: int, name: str, k: int) -> float:
    """A hashed number in [-1, 1) for integer step ``k``."""
    digest = hashlib.blake2b(f"{seed}/{name}/{k}".encode(), digest_size=8).digest()
    n: int = struct.unpack(">Q", digest)[0]
    return n / 2.0**63 - 1.0


def _smooth(seed: int, name: str, t: float, step: float) -> float:
    """Value noise in [-1, 1]: hashed points every ``step`` seconds, cosine-interpolated."""
    k = math.floor(t / step)
    frac = t / step - k
    w = (1 - math.cos(math.pi * frac)) / 2
    return (1 - w) * _unit(seed, name, k) + w * _unit(seed, name, k + 1)


def is_totaliser(ch: ChannelSpec) -> bool:
    return ch.name.endswith("Total") and ch.dtype in ("uint16", "uint32", "int32", "uint64",
                                                      "int64")


def is_direction(ch: ChannelSpec) -> bool:
    return ch.unit == "deg"


def channel_value(seed: int, ch: ChannelSpec, t: float) -> float:
    """The engineering value of ``ch`` at UTC epoch ``t``, within [ch.lo, ch.hi]."""
    span = ch.hi - ch.lo
    if is_direction(ch):
        # +-60 deg around north, wandering over hours, gusting over seconds; wrapped into
        # [0, 360) and kept inside the profile's range (e.g. [0, 359.9])
        swing = 45.0 * _smooth(seed, ch.name + "~", t, 3 * 3600.0) \
            + 15.0 * _smooth(seed, ch.name, t, 5.0)
        return min(ch.hi, max(ch.lo, swing % 360.0))
    if is_totaliser(ch):
        # ~100 m3/h on average, wrapping inside the range so the integer type never overflows
        return ch.lo + math.floor((t / 36.0 + 1000 * (seed % 97)) % span)
    phase = (_unit(seed, ch.name, -1) + 1) * math.pi
    day = math.sin(2 * math.pi * ((t + LOCAL_OFFSET) % DAY) / DAY - phase)
    wander = _smooth(seed, ch.name + "~", t, 3 * 3600.0)
    noise = _smooth(seed, ch.name, t, 5.0)
    x = 0.5 + 0.28 * day + 0.12 * wander + 0.06 * noise
    return ch.lo + span * min(1.0, max(0.0, x))
