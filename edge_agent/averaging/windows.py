"""Clock-aligned window arithmetic shared by batch and streaming modes.

Windows are ``[start, end)`` with integer UTC epoch seconds. They align to the station's local
wall clock: ``(start + utc_offset_s) % width_s == 0``. For 1-min, 5-min and 1-h windows and a
whole-hour offset that is the same as aligning to UTC; for daily windows it puts the boundary at
local midnight (17:00 UTC for Asia/Ho_Chi_Minh, UTC+7, which has no DST). The offset is derived
at the edge (``utc_offset_for``) and passed in, so the core never reads the clock or a zone db.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from edge_agent.averaging.errors import WindowError

DAY_S = 86_400
DEFAULT_UTC_OFFSET_S = 7 * 3600  # Asia/Ho_Chi_Minh, no daylight saving time


def utc_offset_for(zone: str, at: float) -> int:
    """UTC offset in seconds of ``zone`` at epoch time ``at`` (edge helper, not for kernels)."""
    offset = datetime.fromtimestamp(at, tz=UTC).astimezone(ZoneInfo(zone)).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return int(offset.total_seconds())


def check_width(width_s: int, what: str = "width_s") -> int:
    """Return ``width_s`` if it can define clock-aligned windows, else raise ``WindowError``.

    It must be a positive whole number of seconds dividing a day, so that windows tile the day
    from local midnight (1 min, 5 min, 15 min, 1 h, 1 day, ...).
    """
    if isinstance(width_s, bool) or not isinstance(width_s, int):
        raise WindowError(f"{what}={width_s!r}: must be a whole number of seconds")
    if width_s <= 0:
        raise WindowError(f"{what}={width_s!r}: a window must have a positive length")
    if DAY_S % width_s != 0:
        raise WindowError(f"{what}={width_s!r}: must divide a day (86400 s) to align to the clock")
    return width_s


def n_expected(width_s: int, period_s: float, channel: str = "?") -> int:
    """Samples a window should hold: window length / the channel's sampling period."""
    if not (isinstance(period_s, int | float) and math.isfinite(period_s) and period_s > 0):
        raise WindowError(f"channel {channel!r}: period_s={period_s!r} must be positive")
    count = math.floor(width_s / period_s + 1e-9)
    if count < 1:
        raise WindowError(
            f"channel {channel!r}: period_s={period_s!r} is longer than the window {width_s} s"
        )
    return count


def floor_start(t: float, width_s: int, utc_offset_s: int) -> int:
    """Start of the window containing ``t``: the boundary ``s`` with ``s <= t < s + width_s``.

    The division only guesses; integer comparisons settle it, exactly as the kernels do, so a
    sample is always buffered for the window the kernel will put it in.
    """
    start = math.floor((t + utc_offset_s) / width_s) * width_s - utc_offset_s
    while t < start:
        start -= width_s
    while t >= start + width_s:
        start += width_s
    return start


def ceil_end(t: float, width_s: int, utc_offset_s: int) -> int:
    """The first window boundary at or after ``t``."""
    start = floor_start(t, width_s, utc_offset_s)
    return start if start == t else start + width_s
