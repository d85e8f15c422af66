"""Errors of the averaging core.

Every one is a ``ValueError`` so that a caller who only knows "bad input" can catch it, and
every message names the channel, parameter and value at fault: a wrong average costs a plant a
fine, so bad input must stop loudly instead of turning into a silent NaN.
"""

from __future__ import annotations


class AveragingError(ValueError):
    """Base class: input the averaging core refuses to aggregate or convert."""


class UnsortedTimesError(AveragingError):
    """Sample times go backwards (or are not finite); the kernels rely on ascending order."""

    def __init__(self, channel: str, index: int, previous: float, value: float) -> None:
        super().__init__(
            f"channel {channel!r}: sample times must be finite and ascending, but t[{index}]="
            f"{value!r} follows t[{index - 1}]={previous!r}"
            if index > 0
            else f"channel {channel!r}: sample time t[0]={value!r} is not finite"
        )
        self.channel = channel
        self.index = index


class WindowError(AveragingError):
    """A window length (or sampling period) that cannot define clock-aligned windows."""


class InputError(AveragingError):
    """Arrays of different lengths, a status code that is not a ``Status``, and the like."""


class UnknownUnitError(AveragingError):
    """A unit the normaliser does not know how to convert."""


class UnknownGasError(AveragingError):
    """A gas with no molar mass on file, so ppm cannot become mg/Nm3."""


class O2RangeError(AveragingError):
    """An oxygen value (measured or reference) outside [0, 21) %: the O2 formula divides by
    ``21 - O2`` and would return infinity or a negative concentration."""
