"""Is the station clock trustworthy? Jump detection: pure, fed the readings the caller takes.

A logger's timestamps are legal evidence, so the agent must notice when the wall clock jumps
(an NTP step, an RTC battery gone flat, an installer setting the date by hand) and flag the
records made across the jump, and must know whether the clock is synchronised at all.

``ClockWatch`` is sans-IO: it is fed pairs of (monotonic, wall) readings that the caller takes,
and says whether the wall clock moved differently from the monotonic one. Asking the kernel
whether the clock is synchronised is I/O (``adjtimex``) and lives with the daemon, in
:mod:`edge_agent.daemon.clock_sync`; the pipeline is told the answer.
"""

from __future__ import annotations

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
