"""The data model every package speaks: samples, records, flags (wire form: docs/protocol.md).

Times are UTC epoch seconds. A sample's ``t`` is when it was measured, never when it was sent or
stored. Display and Circular 10 files convert to the station's zone at the edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import NamedTuple


class Status(IntEnum):
    """What an analyser said about a reading. Only MEASURING counts toward an average."""

    MEASURING = 0
    CALIBRATING = 1
    FAULT = 2
    MAINTENANCE = 3
    OFFLINE = 4  # no answer: the value is NaN, never invented

    def circular10_code(self) -> str:
        """Circular 10/2021 status column: 00 measuring, 01 calibrating, 02 error."""
        if self is Status.MEASURING:
            return "00"
        if self is Status.CALIBRATING:
            return "01"
        return "02"


class RecordFlag(IntFlag):
    """What was done to, or happened around, a record; the centre re-judges with these."""

    NONE = 0
    O2_NORMALISED = 1  # converted to the reference O2
    DRY_BASIS = 2  # converted from wet to dry gas
    MG_PER_NM3 = 4  # converted from ppm to mg/Nm3 at reference conditions
    CLOCK_JUMP = 8  # the clock jumped (either way) inside the window
    PARTIAL = 16  # closed early (shutdown), covers less than its window
    CLOCK_UNSYNCED = 32  # the station clock was not synchronised while measuring
    LATE_DROPPED = 64  # samples arrived after the grace period and were dropped
    UNIT_ESCAPED = 128  # the stored unit label broke the label rule: sent escaped/shortened
    EXCEEDANCE = 256  # a valid record over (or under) its configured limit ([[limit]])
    SAMPLER_TRIGGERED = 512  # this record made the station trigger its automatic sampler


class Sample(NamedTuple):
    """One decoded reading of one channel.

    A NamedTuple rather than a frozen dataclass: it is built for every channel of every poll,
    and a frozen dataclass's ``__init__`` costs twice as much (it sets each field through
    ``object.__setattr__``). Immutable and compared field by field all the same.
    """

    channel: str
    t: float
    value: float
    status: Status

    @classmethod
    def offline(cls, channel: str, t: float) -> Sample:
        """The only sample a failed read may produce: no value, status OFFLINE."""
        return cls(channel, t, math.nan, Status.OFFLINE)


@dataclass(frozen=True, slots=True)
class Record:
    """An aggregate of one channel over one clock-aligned window ``[start, end)``."""

    channel: str
    start: int
    end: int
    mean: float
    min: float
    max: float
    std: float
    n_valid: int
    n_expected: int
    valid: bool
    status: Status
    unit: str
    flags: RecordFlag = RecordFlag.NONE
