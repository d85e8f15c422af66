"""The verdicts a technician reads off the buses and values pages, in words of one fix each.

Pure: the agent's device health, a channel's raw words in; sentences out. The
screen shows what is wrong *and* what to do, because a technician on a serial console has no
one to ask:

* a unit that stopped answering is SILENT (power, A/B wiring, address, baud);
* a scan compared with the config (silent, answering like another profile, answering at
  another address: mis-addressed) is :func:`edge_agent.console.diag.compare_with_config`,
  the one comparison ``diag scan`` prints too;
* a float channel the poller rejects as implausible whose words, read in the other order,
  give a plausible value has the WRONG WORD ORDER (the analyser's or the profile's
  ``word_order``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from drivers.codec import decode_value
from drivers.profile import ChannelSpec
from edge_agent.console.screen.text import clean, number
from edge_agent.core.plausibility import implausible, judged


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
