"""Wind direction averaged as a vector, and wind speed as a scalar and as a vector.

An arithmetic mean of angles is wrong across north: 350 deg and 10 deg average to 180 deg,
the opposite of the truth. Each valid sample is therefore a vector (east ``sin d``, north
``cos d``, ``d`` the direction the wind blows from, in degrees clockwise from north), the
vectors are summed over the window and the mean direction is the direction of the sum,
folded into [0, 360): 350 deg and 10 deg give 0 deg.

Two weightings, because ambient networks report both and mean different things by them:

* unit-vector direction (``speed=None``, the default): every sample weighs 1. This is what
  ambient air-quality networks report as "wind direction" (US EPA's meteorological monitoring
  guidance for air-quality work, and the resultant-direction parameter of AQS): it says where
  the air came from most of the time, which is what dispersion of a pollutant follows, and a
  gusty minute does not outvote a steady hour.
* vector (speed-weighted) direction (``speed`` given): each sample weighs its speed, so the
  result is the direction of the mean wind vector, the "resultant wind" of meteorology.

With speeds, both speeds come out: the scalar mean speed (the plain mean of the speeds, what
stations report as "wind speed") and the vector mean speed (the length of the mean speed
vector; never larger than the scalar mean, equal only for a steady direction: 2 m/s from 90
deg and 2 m/s from 180 deg give 135 deg, scalar 2 m/s, vector sqrt(8)/2 = 1.414 m/s).

A direction that does not exist is NaN with a reason, never a random angle: no valid sample;
calm (speed-weighted and every valid speed 0); cancelled (the resultant is shorter than
``CANCEL_RATIO`` of the total weight, e.g. 90 deg and 270 deg). Such a window is not valid.
A direction outside [0, 360] (an analyser's error code such as -1 or 999) is not a valid
sample; 360 is north. ``ratio`` (``|sum| / sum of weights``, 1 steady to 0 no prevailing
direction) is kept so the centre can judge how meaningful a mean direction is.

Validity is the coverage rule of the other windows (valid samples >= the rule's share of the
expected ones); the quadrant rule of stack gas does not apply to meteorology and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.averaging.batch import _as_f64, _span
from edge_agent.averaging.cache import kernels
from edge_agent.averaging.errors import InputError, UnsortedTimesError, WindowError
from edge_agent.averaging.rules import COVERAGE_75, ValidityRule
from edge_agent.averaging.windows import check_width, n_expected
from protocol.model import Status

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

OK, NO_DATA, CALM, CANCELLED = 0, 1, 2, 3
REASONS = {
    OK: "",
    NO_DATA: "no valid sample in the window",
    CALM: "calm: every valid wind speed was 0, so there is no direction",
    CANCELLED: "the wind vectors cancel out: no prevailing direction",
}
"""Why a window has no direction, by the reason code of ``WindStats.reason``."""


@dataclass(frozen=True, slots=True)
class WindStats:
    """Per-window arrays (``start[k] = start0 + k*width_s``); speeds are NaN without speeds."""

    start0: int
    width_s: int
    n_expected: int
    n_samples: I64
    n_valid: I64
    direction: F64
    ratio: F64
    scalar_speed: F64
    vector_speed: F64
    valid: npt.NDArray[np.bool_]
    status: npt.NDArray[np.int8]
    reason: npt.NDArray[np.int8]

    @property
    def start(self) -> I64:
        return self.start0 + self.width_s * np.arange(len(self.n_valid), dtype=np.int64)

    def why(self, k: int) -> str:
        """Why window ``k`` has no direction ("" when it has one)."""
        return REASONS[int(self.reason[k])]

    def __len__(self) -> int:
        return len(self.n_valid)


def _status(channel: str, name: str, status: npt.ArrayLike, n: int) -> npt.NDArray[np.int8]:
    ss = np.ascontiguousarray(status)
    if ss.size == 0:
        ss = np.zeros(0, np.int8)
    if ss.ndim != 1 or not np.issubdtype(ss.dtype, np.integer) or len(ss) != n:
        raise InputError(f"channel {channel!r}: {name} must be a 1-D integer array of {n} "
                         f"codes, got {ss.dtype} {ss.shape}")
    bad = np.flatnonzero((ss < 0) | (ss >= len(Status)))
    if len(bad):
        i = int(bad[0])
        raise InputError(f"channel {channel!r}: {name}[{i}]={int(ss[i])} is not a Status")
    return ss.astype(np.int8)


def aggregate_wind(
    t: npt.ArrayLike,
    direction: npt.ArrayLike,
    status: npt.ArrayLike,
    *,
    width_s: int,
    period_s: float,
    speed: npt.ArrayLike | None = None,
    speed_status: npt.ArrayLike | None = None,
    utc_offset_s: int = 0,
    rule: ValidityRule = COVERAGE_75,
    start: float | None = None,
    end: float | None = None,
    channel: str = "?",
) -> WindStats:
    """Average one wind vane's directions (degrees) into windows covering [start, end).

    ``speed`` (m/s or any unit: only ratios matter to the direction) pairs each direction
    sample with the anemometer's reading of the same poll, and turns on the speed-weighted
    direction and both mean speeds; ``speed_status`` is that reading's status, and a pair
    counts only when both are MEASURING. Windows and spans as ``batch.aggregate``.
    """
    if rule.parts != 1:
        raise WindowError(f"channel {channel!r}: rule {rule.name!r} cuts windows into parts; "
                          "wind averages take a coverage rule")
    check_width(width_s)
    expected = n_expected(width_s, period_s, channel)
    tt = _as_f64("t", channel, t)
    dd = _as_f64("direction", channel, direction)
    ss = _status(channel, "status", status, len(tt))
    if len(dd) != len(tt):
        raise InputError(f"channel {channel!r}: t and direction differ in length "
                         f"({len(tt)}, {len(dd)})")
    if speed is None:
        if speed_status is not None:
            raise InputError(f"channel {channel!r}: speed_status given without speed")
        ww = np.zeros(0, np.float64)
    else:
        ww = _as_f64("speed", channel, speed)
        if len(ww) != len(tt):
            raise InputError(f"channel {channel!r}: speed has {len(ww)} values for "
                             f"{len(tt)} directions (pair each direction with its speed)")
        if speed_status is not None:
            sp = _status(channel, "speed_status", speed_status, len(tt))
            ss = np.where(ss == 0, sp, ss).astype(np.int8)
    k = kernels()
    err, index = k.check_inputs(tt, ss)
    if err == k.ERR_UNSORTED:
        raise UnsortedTimesError(channel, int(index), float(tt[index - 1]), float(tt[index]))
    start0, n_windows = _span(tt, start, end, width_s, utc_offset_s)
    out = k.wind_stats(tt, dd, ww, ss, speed is not None, start0, width_s, n_windows,
                       rule.min_valid(expected))
    return WindStats(start0, width_s, expected, *out)
