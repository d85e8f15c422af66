"""The verdicts a technician reads off the buses and values pages, in words of one fix each.

Pure: the agent's device health, a scan's hits, a channel's raw words in; sentences out. The
screen shows what is wrong *and* what to do, because a technician on a serial console has no
one to ask:

* a unit that stopped answering is SILENT (power, A/B wiring, address, baud);
* a configured unit that is silent while a unit the config does not name answers *as that
  profile* is MIS-ADDRESSED: the analyser was given another address (the usual mistake after
  a swap), and the fix is the analyser's address menu or the config's ``unit``;
* a float channel the poller rejects as implausible whose words, read in the other order,
  give a plausible value has the WRONG WORD ORDER (the analyser's or the profile's
  ``word_order``).

A scan hit "looks like" a profile when that profile is among its best-scoring guesses with
at least one plausible channel (:func:`edge_agent.console.diag.guess_profile`'s score).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.codec import decode_value
from drivers.profile import ChannelSpec
from edge_agent.console.diag import ScanHit
from edge_agent.console.screen.text import clean, number
from edge_agent.core.plausibility import implausible, judged


@dataclass(frozen=True, slots=True)
class Expected:
    """A ``[[device]]`` of the config as the buses page compares it: where it should answer."""

    device: str
    bus: str
    unit: int
    profile: str


def health_verdict(d: Mapping[str, Any]) -> str | None:
    """One device's trouble from the agent's health entry (``status["devices"]``), or None.

    The error's kind (``timeout``, ``exception_02``, ``bad_frame``, ``link``) picks the advice;
    the agent's own message follows, whole."""
    failures = int(d.get("consecutive_failures") or 0)
    if not failures:
        return None
    err = clean(d.get("last_error") or "")
    name, unit = clean(d.get("device")), d.get("unit")
    kind = err.split(":", 1)[0]
    if kind == "timeout":
        what = (f"SILENT: unit {unit} ({name}) does not answer ({failures} polls); check "
                "its power, the A/B wires, its address and baud rate")
    elif kind.startswith("exception"):
        what = (f"REFUSES: unit {unit} ({name}) answers with a Modbus exception; the "
                "profile's registers or function may not match the analyser")
    elif kind == "bad_frame":
        what = (f"GARBLED: unit {unit} ({name}) answers with broken frames; check the baud "
                "rate, parity, termination and a second master on the line")
    elif kind == "link":
        what = f"NO PORT: the bus of {name} cannot be opened"
    else:
        what = f"FAILING: unit {unit} ({name}), {failures} polls"
    return f"{what}. {err}" if err else what


def looks_like(hit: ScanHit, profile: str) -> bool:
    """Is ``profile`` among the hit's best guesses (with a plausible channel at least)?"""
    if not hit.guesses or not hit.guesses[0].plausible:
        return False
    best = hit.guesses[0].score
    return any(g.profile == profile and g.score == best and g.plausible for g in hit.guesses)


def _best(hit: ScanHit) -> str:
    if not hit.guesses or not hit.guesses[0].plausible:
        return f"{hit.answer}, no built-in profile fits"
    best = hit.guesses[0].score
    return ", ".join(g.profile for g in hit.guesses if g.score == best and g.plausible)


def compare_scan(expected: Sequence[Expected], hits: Sequence[ScanHit]) -> list[str]:
    """The scan of one bus against its config: one sentence per device, then every unit
    that answers without being configured. Order: problems first."""
    by_unit = {h.unit: h for h in hits}
    configured = {e.unit for e in expected}
    strangers = [h for h in hits if h.unit not in configured]
    claimed: set[int] = set()
    bad: list[str] = []
    good: list[str] = []
    for e in expected:
        hit = by_unit.get(e.unit)
        if hit is not None and looks_like(hit, e.profile):
            good.append(f"ok: unit {e.unit} {e.device} answers as {e.profile}")
            continue
        if hit is not None:
            bad.append(f"WRONG DEVICE? unit {e.unit} ({e.device}) answers but looks like "
                       f"{_best(hit)}, not {e.profile}")
            continue
        there = [h for h in strangers if looks_like(h, e.profile)]
        if there:
            claimed.update(h.unit for h in there)
            at = ", ".join(str(h.unit) for h in there)
            bad.append(f"MIS-ADDRESSED: {e.device} ({e.profile}) is configured at unit "
                       f"{e.unit}, which is silent; a {e.profile} answers at unit {at}. Set "
                       f"the analyser's address to {e.unit} (or unit = {there[0].unit} in the "
                       "config)")
        else:
            bad.append(f"MISSING: unit {e.unit} ({e.device}, {e.profile}) does not answer "
                       "the scan")
    for h in strangers:
        if h.unit not in claimed:
            bad.append(f"UNEXPECTED: unit {h.unit} answers ({_best(h)}); no device of the "
                       "config is at that address")
    return bad + good


def word_order_verdict(spec: ChannelSpec, words: Sequence[int]) -> str | None:
    """WRONG WORD ORDER when ``words`` decode implausibly the configured way and plausibly
    the other; None when the words say nothing about it (integer, or both or neither fit)."""
    if not judged(spec) or len(words) < 2:
        return None
    try:
        as_set = float(decode_value(list(words), spec.dtype, spec.byte_order, spec.word_order))
        other = "little" if spec.word_order == "big" else "big"
        as_other = float(decode_value(list(words), spec.dtype, spec.byte_order, other))
    except (ValueError, struct.error):
        return None
    as_set, as_other = as_set * spec.scale + spec.offset, as_other * spec.scale + spec.offset
    if implausible(spec, as_set) and not implausible(spec, as_other) and as_other != 0:
        return (f"WRONG WORD ORDER: {spec.name} reads {number(as_set)} as configured "
                f"(word order {spec.word_order}) but {number(as_other)} {clean(spec.unit)} "
                f"with word order {other}; set the analyser (or the profile's word_order) "
                f"to {other}")
    return None
