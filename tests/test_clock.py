"""Clock jumps are noticed in both directions; small drift is not a jump."""

from __future__ import annotations

import pytest

from edge_agent.core.clock import ClockWatch
from edge_agent.daemon.clock_sync import kernel_clock_synchronised


def test_steady_clock_reports_nothing() -> None:
    watch = ClockWatch(tolerance=2.0)
    for i in range(10):
        assert watch.observe(100.0 + i, 1_700_000_000.0 + i + 0.1 * (i % 2)) is None
    assert watch.jumps == []


def test_forward_and_backward_jumps_are_reported_with_their_size() -> None:
    watch = ClockWatch(tolerance=2.0)
    watch.observe(10.0, 1000.0)
    forward = watch.observe(11.0, 1000.0 + 1.0 + 3600.0)
    assert forward is not None and forward.offset == pytest.approx(3600.0)
    assert not forward.backwards
    backward = watch.observe(12.0, 4601.0 + 1.0 - 120.0)
    assert backward is not None and backward.backwards
    assert backward.offset == pytest.approx(-120.0)
    assert len(watch.jumps) == 2


def test_tolerance_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ClockWatch(tolerance=0)


def test_kernel_answers_on_linux() -> None:
    # Linux with glibc: adjtimex must answer yes or no (this sandbox runs no NTP, so usually no);
    # None here would mean the struct or the call is wrong.
    assert isinstance(kernel_clock_synchronised(), bool)
