"""The averaging core: samples -> clock-aligned window records, roll-ups, normalisation.

Call ``configure_cache(state_dir)`` first so numba's compiled kernels live in the agent's state
directory; numba itself is imported lazily on the first aggregation.

* batch, array level: ``aggregate(t, value, status, width_s=, period_s=)`` -> ``WindowStats``;
  ``rollup_arrays(...)``; ``to_records(stats, channel, unit)``.
* batch, records: ``rollup(records, width_s=3600)`` (hourly from 5-min, daily from hourly).
* streaming: ``StreamingAverager(channels, width_s=300).feed(sample)`` / ``.advance(now)`` /
  ``.close_all(now)``; ``StreamingRollup`` the same for records.
* rules: ``COVERAGE_75`` (default), ``CFR_60_13_H`` (15-minute quadrants), ``ValidityRule``.
* stack gas: ``normalise_record``, ``normalise_values`` with a ``Normalisation``.
* wind: ``aggregate_wind(t, direction, status, speed=...)`` -> ``WindStats`` (vector mean
  direction, scalar and vector mean speed, NaN with a reason when calm or cancelled).
* rolling: ``rolling_channel(channel, unit, hourly, rolling=ROLLING_8H)`` (the 8-hour CO/O3
  average of ambient air), ``rolling_arrays(...)`` -> ``RollingStats``; ``StreamingRolling``
  the same as hourly records close. ``StreamChannel(..., average="direction", speed=...)``
  makes the streaming averager average a wind vane as a vector.
"""

from edge_agent.averaging.batch import (
    WindowStats,
    aggregate,
    rollup,
    rollup_arrays,
    rollup_channel,
    to_records,
)
from edge_agent.averaging.cache import configure_cache
from edge_agent.averaging.errors import (
    AveragingError,
    InputError,
    O2RangeError,
    UnknownGasError,
    UnknownUnitError,
    UnsortedTimesError,
    WindowError,
)
from edge_agent.averaging.normalise import (
    MOLAR_MASS_G_PER_MOL,
    Normalisation,
    molar_volume,
    normalise_record,
    normalise_values,
)
from edge_agent.averaging.rolling import (
    ROLLING_8H,
    Rolling,
    RollingStats,
    rolling_arrays,
    rolling_channel,
)
from edge_agent.averaging.rules import CFR_60_13_H, COVERAGE_75, RULES, ValidityRule
from edge_agent.averaging.streaming import (
    StreamChannel,
    StreamingAverager,
    StreamingRolling,
    StreamingRollup,
)
from edge_agent.averaging.wind import WindStats, aggregate_wind
from edge_agent.averaging.windows import DEFAULT_UTC_OFFSET_S, utc_offset_for

__all__ = [
    "CFR_60_13_H",
    "COVERAGE_75",
    "DEFAULT_UTC_OFFSET_S",
    "MOLAR_MASS_G_PER_MOL",
    "ROLLING_8H",
    "RULES",
    "AveragingError",
    "InputError",
    "Normalisation",
    "O2RangeError",
    "Rolling",
    "RollingStats",
    "StreamChannel",
    "StreamingAverager",
    "StreamingRolling",
    "StreamingRollup",
    "UnknownGasError",
    "UnknownUnitError",
    "UnsortedTimesError",
    "ValidityRule",
    "WindStats",
    "WindowError",
    "WindowStats",
    "aggregate",
    "aggregate_wind",
    "configure_cache",
    "molar_volume",
    "normalise_record",
    "normalise_values",
    "rolling_arrays",
    "rolling_channel",
    "rollup",
    "rollup_arrays",
    "rollup_channel",
    "to_records",
    "utc_offset_for",
]
