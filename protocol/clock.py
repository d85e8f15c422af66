"""The clock type every part of the project takes as a parameter.

A wall clock is passed in, never read from a global, so that tests move time (a clock that
jumps back 40 s, one that ran an hour fast, a day in a second) and every time-dependent rule
(windows, back-off, command age, retention) can be checked without waiting. It returns seconds
since the Unix epoch, UTC, like ``time.time``; a monotonic clock has the same type and is named
``monotonic`` where one is meant.
"""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]
