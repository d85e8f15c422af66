"""Exponential back-off with jitter for reconnecting to the broker.

Why jitter: after a broker restart every station of a province reconnects at once; random
spread keeps them from arriving in lock-step waves. "Equal jitter": the delay is uniform in
``[d/2, d]`` where ``d = min(cap, base * 2**attempt)``, so it never collapses to zero.
The random source is a parameter, so tests can pin it.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays for successive failed attempts; ``reset()`` after a success."""

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 60.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"back-off needs 0 < base ({base}) <= cap ({cap})")
        self.base = base
        self.cap = cap
        self.rand = rand
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt, growing with each call until ``reset``."""
        ceiling = min(self.cap, self.base * (2.0 ** min(self.attempt, 62)))
        self.attempt += 1
        return ceiling / 2 + self.rand() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0
