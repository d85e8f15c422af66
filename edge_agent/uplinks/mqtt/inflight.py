"""Which sealed packets are out and waiting for the centre's acknowledgement (sans-IO).

The outbox already knows which records are sent; this small window counts packets so the
uplink keeps a bounded number in flight (the MQTT link stays full without flooding the broker)
and knows when the oldest has waited too long. Times are whatever clock the caller uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Flight:
    """One published packet: its inclusive seq range and when it left."""

    first: int
    last: int
    sent_at: float


class InFlight:
    """Packets published and not yet acknowledged, oldest first."""

    def __init__(self) -> None:
        self._flights: list[Flight] = []

    def __len__(self) -> int:
        return len(self._flights)

    def add(self, first: int, last: int, sent_at: float) -> None:
        self._flights.append(Flight(first, last, sent_at))

    def settle(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Forget every packet whose seqs lie inside ``ranges`` (acked, or to be resent).

        A packet only partly covered stays: its other records are still waiting.
        """
        spans = sorted(ranges)
        before = len(self._flights)
        self._flights = [
            f for f in self._flights if not any(a <= f.first and f.last <= b for a, b in spans)
        ]
        return before - len(self._flights)

    def drop_overlapping(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Forget every packet that shares a seq with ``ranges`` (the centre asked again)."""
        spans = list(ranges)
        before = len(self._flights)
        self._flights = [
            f for f in self._flights if not any(f.first <= b and a <= f.last for a, b in spans)
        ]
        return before - len(self._flights)

    def oldest_sent_at(self) -> float | None:
        return min((f.sent_at for f in self._flights), default=None)

    def expire(self, sent_before: float) -> int:
        """Forget packets sent at or before ``sent_before`` (their records go back to pending)."""
        before = len(self._flights)
        self._flights = [f for f in self._flights if f.sent_at > sent_before]
        return before - len(self._flights)

    def clear(self) -> int:
        n = len(self._flights)
        self._flights.clear()
        return n
