"""Is the station clock trustworthy? Jump detection (pure) and kernel sync state (edge).

A logger's timestamps are legal evidence, so the agent must notice when the wall clock jumps
(an NTP step, an RTC battery gone flat, an installer setting the date by hand) and flag the
records made across the jump, and must know whether the clock is synchronised at all.

``ClockWatch`` is sans-IO: it is fed pairs of (monotonic, wall) readings that the caller takes,
and says whether the wall clock moved differently from the monotonic one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClockJump:
    """The wall clock moved ``offset`` seconds more than elapsed time (negative: backwards)."""

    at_wall: float
    offset: float

    @property
    def backwards(self) -> bool:
        return self.offset < 0


class ClockWatch:
    """Compares wall-clock progress with monotonic progress between two observations."""

    def __init__(self, tolerance: float = 2.0) -> None:
        if tolerance <= 0:
            raise ValueError(f"clock jump tolerance must be positive, got {tolerance}")
        self.tolerance = tolerance
        self._last: tuple[float, float] | None = None
        self.jumps: list[ClockJump] = []

    def observe(self, monotonic: float, wall: float) -> ClockJump | None:
        last, self._last = self._last, (monotonic, wall)
        if last is None:
            return None
        offset = (wall - last[1]) - (monotonic - last[0])
        if abs(offset) <= self.tolerance:
            return None
        jump = ClockJump(at_wall=wall, offset=offset)
        self.jumps.append(jump)
        return jump


# --------------------------------------------------------------------------- edge: the kernel

class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (Linux, 64-bit): only ``status`` is read here.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    ]


_TIME_ERROR = 5  # adjtimex return value: the clock is not synchronised
_STA_UNSYNC = 0x0040


def kernel_clock_synchronised() -> bool | None:
    """The kernel's own verdict (what ``timedatectl`` shows as "System clock synchronized").

    None when it cannot be asked (not Linux, no libc): the caller reports "unknown", not "ok".
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        timex = _Timex()  # modes = 0: read only, needs no privilege
        state = libc.adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR and not (timex.status & _STA_UNSYNC)
