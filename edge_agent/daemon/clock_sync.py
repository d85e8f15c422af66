"""Does the kernel think the station clock is synchronised? (an edge: it asks the OS)

A logger's timestamps are legal evidence: records made while the clock is not synchronised
carry ``CLOCK_UNSYNCED``. The daemon asks here, once per tick, and passes the answer to the
pipeline (:meth:`edge_agent.core.pipeline.Pipeline.clock_state`), which stays free of I/O.
The jump detection itself is pure and lives in :mod:`edge_agent.core.clock`.
"""

from __future__ import annotations

import ctypes
import ctypes.util


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
