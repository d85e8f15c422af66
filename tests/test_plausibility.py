"""The one plausibility rule (edge_agent.core.plausibility), with no bus."""

from __future__ import annotations

import math

from drivers.codec import decode_value, encode_value
from drivers.profile import builtin_profile
from edge_agent.core.plausibility import bounds, implausible, judged, outside, plausible_sample
from protocol.model import Sample, Status


def test_swapped_words_of_a_float_are_implausible_and_the_right_order_is_not() -> None:
    cod = builtin_profile("hach_sc").channel("COD")
    words = encode_value(60.0, "float32", "big", "little")
    assert not implausible(cod, decode_value(words, "float32", "big", "little"))
    assert implausible(cod, decode_value(words, "float32", "big", "big"))


def test_zero_nan_and_inf_are_not_judged_and_the_bounds_are_ten_widths() -> None:
    cod = builtin_profile("hach_sc").channel("COD")  # 25..110
    b = bounds(cod)
    assert b[:2] == (-825.0, 960.0) and math.isclose(b[2], 1.1e-4)
    assert not any(outside(b, v) for v in (0.0, math.nan, math.inf, -825.0, 960.0))
    assert all(outside(b, v) for v in (-826.0, 961.0, 2.4e-41, 1e-5))


def test_the_live_guard_judges_floats_only_the_scan_judges_every_channel() -> None:
    ph = builtin_profile("ph_probe").channel("Temp")  # int16
    assert not judged(ph) and not implausible(ph, 1700.8)
    assert not plausible_sample(ph, Sample("Temp", 0.0, 1700.8, Status.MEASURING))
    assert plausible_sample(ph, Sample("Temp", 0.0, 27.0, Status.MEASURING))
    assert not plausible_sample(ph, Sample.offline("Temp", 0.0))
