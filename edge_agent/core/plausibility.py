"""The plausibility rule: could an analyser of this channel have sent this value?

One rule, asked in two places:

* the poller's live guard (:mod:`edge_agent.poll.poller`) turns an implausible float into a
  FAULT sample with no value, so a device read with the wrong word order never feeds the
  averages;
* ``quantrac diag scan`` (:mod:`edge_agent.console.diag`) scores each profile by how many of
  its channels decode to plausible values from the words a unit returned.

The rule. A profile channel declares its usual range ``lo..hi``. A finite value is plausible
when it lies within ten range-widths of the usual range and is either exactly 0 or at least a
millionth of the range's magnitude. The lower bound on the magnitude is what catches swapped
32-bit words: the two halves of a float read in the wrong order typically decode to a
denormal-looking speck such as 2.4e-41, or to something astronomically large. Ten widths leave
room for a real process excursion while still rejecting the garbage a wrong decoding gives.
Exact 0 is allowed: all-zero words decode to 0 in every word order, so 0 says nothing about
the order. This is a guard, not a proof: a swapped word order that happens to decode to a
plausible number cannot be told from a real reading by any master.

Who is judged. The live guard judges floats only (:func:`judged`): a scaled int16 cannot be
word-swapped, and a totaliser legitimately leaves any range, so an integer channel is passed
through. The scan judges every channel with the same bounds, because there the question is
"is this the right profile for this unit", and an integer that decodes far outside its range
from another profile's registers is exactly the clue it looks for.

Speed. The poller runs the guard on every sample of every poll, so the bounds are worked out
once per channel (:func:`bounds`) and the per-value test (:func:`outside`) is a tuple unpack
and two comparisons; :func:`implausible` is the one-call convenience form.

Pure: no I/O, no clock; ``tests/test_plausibility.py`` needs no bus.
"""

from __future__ import annotations

import math

from drivers.profile import ChannelSpec
from protocol.model import Sample, Status

#: (lowest, highest, smallest nonzero magnitude) a plausible value may have.
Bounds = tuple[float, float, float]

WIDTHS = 10  # how many range-widths either side of the usual range are still plausible
TINY = 1e-6  # smallest plausible nonzero magnitude, as a share of the range's magnitude


def judged(ch: ChannelSpec) -> bool:
    """Does the live guard judge this channel? Floats only (see the module docstring)."""
    return ch.dtype.startswith("float")


def bounds(ch: ChannelSpec) -> Bounds:
    """The plausible bounds of ``ch``; work them out once per channel, not per value."""
    width = ch.hi - ch.lo
    return (ch.lo - WIDTHS * width, ch.hi + WIDTHS * width,
            TINY * max(abs(ch.lo), abs(ch.hi)))


def outside(b: Bounds, value: float) -> bool:
    """True when a finite, nonzero ``value`` falls outside the bounds ``b``.

    NaN and inf are not judged here: a decoder gives them for a fault, and they are that
    sample's own status to report.
    """
    if not math.isfinite(value) or value == 0:
        return False
    lo, hi, tiny = b
    return not lo <= value <= hi or abs(value) < tiny


def implausible(ch: ChannelSpec, value: float) -> bool:
    """The live guard's verdict on one value: a judged channel and a value outside its bounds."""
    return judged(ch) and outside(bounds(ch), value)


def plausible_sample(ch: ChannelSpec, sample: Sample) -> bool:
    """The scan's verdict on one decoded sample: it carries a finite value inside the bounds.

    An OFFLINE sample (its words were missing) or a non-finite value counts as not plausible:
    a profile that cannot be decoded from the answer does not fit the unit.
    """
    if sample.status is Status.OFFLINE or not math.isfinite(sample.value):
        return False
    return not outside(bounds(ch), sample.value)
