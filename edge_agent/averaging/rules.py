"""Validity rules: when does a window's average count?

One parametrised rule covers both rule sets so that one kernel judges every window:

* coverage: at least ``min_fraction`` of the expected samples (or sub-windows) are valid;
* parts: the window is cut into ``parts`` equal pieces and each needs ``min_per_part`` valid
  points (40 CFR 60.13(h)(2): an hour is valid with a valid point in each 15-minute quadrant).

A window with no valid point is never valid, whatever the rule says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge_agent.averaging.errors import WindowError


@dataclass(frozen=True, slots=True)
class ValidityRule:
    """A window is valid when both the coverage and the per-part conditions hold."""

    name: str
    min_fraction: float = 0.75
    parts: int = 1
    min_per_part: int = 0

    def __post_init__(self) -> None:
        if not (0.0 <= self.min_fraction <= 1.0):
            raise WindowError(
                f"rule {self.name!r}: min_fraction={self.min_fraction!r} is not in [0, 1]"
            )
        if self.parts < 1 or self.min_per_part < 0:
            raise WindowError(
                f"rule {self.name!r}: parts={self.parts!r} must be >= 1 and "
                f"min_per_part={self.min_per_part!r} >= 0"
            )

    def min_valid(self, n_expected: int) -> int:
        """Valid points needed for coverage, as an exact integer (0.75 * 300 -> 225).

        Computed once in Python so the numba kernel and the reference compare integers and can
        never disagree on a float rounding at exactly 75 %.
        """
        return max(1, math.ceil(self.min_fraction * n_expected - 1e-9))

    def check_width(self, width_s: int) -> None:
        """The parts must tile the window in whole seconds."""
        if width_s % self.parts != 0:
            raise WindowError(
                f"rule {self.name!r}: window of {width_s} s cannot be cut into {self.parts} parts"
            )


COVERAGE_75 = ValidityRule("coverage_75", min_fraction=0.75)
"""Default: valid points cover at least 75 % of the expected ones."""

CFR_60_13_H = ValidityRule("cfr_60_13_h", min_fraction=0.0, parts=4, min_per_part=1)
"""40 CFR 60.13(h)(2), stack gas: an hour is valid with at least one valid point in each of its
four 15-minute quadrants. The reduced two-point rule for hours with QA or maintenance,
60.13(h)(2)(iii), is not implemented."""

RULES = {rule.name: rule for rule in (COVERAGE_75, CFR_60_13_H)}
