"""Circular 10/2021/TT-BTNMT text files: one window's records in, folder, name and bytes out.

Sans-IO: no file, socket or clock here. The uplink (:mod:`edge_agent.uplinks.circular10.uplink`)
spools and sends what :func:`render_file` returns, and ``quantrac export`` writes the very same
bytes for an inspector, so the one function is the only place the format is decided. One file
per window; one line per parameter, exactly five TAB-separated fields::

    symbol <TAB> value <TAB> unit <TAB> yyyyMMddHHmmss <TAB> status <CR LF>

What receivers in service do decided each rule (the receiver profile,
:class:`edge_agent.config.model.Circular10Receiver`, holds what varies by province):

* **Name and folder.** ``<file_prefix><yyyyMMddHHmmss>.txt``, the prefix verbatim as the
  province issued it, in the dated folder ``remote_dir`` (receivers scan only dated
  sub-folders; a file in the station's base folder is never read).
* **Time.** The station's zone (UTC+7); every line carries the file name's time, because
  receivers take the time from the name and reject a line whose time differs. The stamp is
  the window's *end* by default (``stamp = "end"``): the 10:00-10:05 mean exists at 10:05;
  stamped 10:00 and sent at 10:05:32 it reads as 5.5 minutes late to a centre that checks the
  5-minute rule. ``stamp = "start"`` for a province that asks for it.
* **Status = the instrument's status**, not our validity judgement (the record's dominant
  status): measuring ``00``; calibrating ``01``; maintenance ``01`` (serviced: not measuring,
  not broken); fault ``02``; offline (the analyser did not answer) ``02``. A window whose
  coverage is below the validity rule keeps its mean and the instrument's status
  (``invalid = "report"``) or is left out (``invalid = "omit"``); it is never dressed up as a
  device fault.
* **No value is never a number**: a window without a mean gets ``missing_value`` (``""`` by
  default, ``---`` for some receivers) or no line at all (``omit_missing``).
* **Units are ASCII** (``oC``, ``m3/h``, ``ug/m3``): the display label's ASCII form, or the
  profile's transmit unit with the value converted
  (:mod:`edge_agent.config.circular10_units`). An empty unit (pH) is written as
  ``empty_unit``: ``""`` for TAB-splitting receivers; a receiver that splits on whitespace
  needs a placeholder such as ``-``, or every later field shifts left (the config insists).
* **Value**: plain decimal, at most 4 decimals, trailing zeros dropped, never an exponent
  (legacy parsers read ``1e-05`` as text).
* **Bytes**: ASCII, lines ending in CR LF by default (``line_end``): receivers in service are
  Windows programs fed until now by Windows data loggers; ``lf`` for one that wants it.
* Lines follow the order of the records given (the uplink gives the config's channel order).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo

from edge_agent.config.circular10_units import ascii_unit, conversion, is_ascii_unit
from edge_agent.config.model import Circular10Receiver, fill_remote_dir
from protocol.model import Record, Status

TIME_FORMAT = "%Y%m%d%H%M%S"
_FORBIDDEN = ("\t", "\r", "\n")

STATUS_CODES = {
    Status.MEASURING: "00",
    Status.CALIBRATING: "01",
    Status.MAINTENANCE: "01",
    Status.FAULT: "02",
    Status.OFFLINE: "02",
}
"""The status column: what the instrument was doing (module docstring)."""


@dataclass(frozen=True, slots=True)
class Circular10File:
    """One rendered file: ``remote_dir`` (``2026/11/23``, ``""``: the base folder), ``name``
    and ``data``; ``stamp`` is the UTC instant of the time in the name."""

    remote_dir: str
    name: str
    data: bytes
    stamp: int
    lines: int

    @property
    def path(self) -> str:
        """Relative to the station's base folder."""
        return f"{self.remote_dir}/{self.name}" if self.remote_dir else self.name


def local(t: float, tz: tzinfo) -> dt.datetime:
    """UTC epoch seconds as the station's wall clock."""
    return dt.datetime.fromtimestamp(t, tz)


def stamp_of(receiver: Circular10Receiver, start: int, window_s: int) -> int:
    """The instant that names the window ``[start, start + window_s)``."""
    return start + window_s if receiver.stamp == "end" else start


def file_name(prefix: str, at_local: dt.datetime) -> str:
    """``<prefix>yyyyMMddHHmmss.txt``; ``at_local`` already in the station's zone."""
    return f"{prefix}{at_local.strftime(TIME_FORMAT)}.txt"


def value_text(x: float) -> str:
    """A mean as the file writes it: plain decimal (the caller handles NaN)."""
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _ascii(text: str) -> str:
    return "".join(c if "!" <= c <= "~" else "?" for c in text)


def _unit_and_factor(receiver: Circular10Receiver, channel: str, unit: str) -> tuple[str, float]:
    """The unit column and the factor for the value. A stored record whose unit does not
    convert to the profile's transmit unit (made before a config change) keeps its own unit,
    in ASCII, and its value: a wrong label on a right number would be worse."""
    transmit = receiver.unit_for(channel)
    if transmit is not None:
        factor = conversion(unit, transmit)
        if factor is not None:
            return transmit, factor
    shown = ascii_unit(unit)
    if not shown:
        return receiver.empty_unit, 1.0
    return (shown if is_ascii_unit(shown) else _ascii(shown)[:32]), 1.0


@functools.lru_cache(maxsize=4096)
def _columns(receiver: Circular10Receiver, channel: str, unit: str) -> tuple[str, str, float]:
    """(symbol column, unit column, value factor) of a channel stored in ``unit``: the same
    for every window of it, so worked out once (an export renders 170,000 lines of a few
    channels, and this was a third of each). ValueError for a symbol that would break the
    line (the config admits only Circular 10 symbols, so a stored record cannot have one);
    an exception is not cached."""
    if not channel or any(c in channel for c in _FORBIDDEN):
        raise ValueError(f"Circular 10 line: symbol {channel!r}: must not be empty nor "
                         "hold a tab or line break")
    shown, factor = _unit_and_factor(receiver, channel, unit)
    return _ascii(receiver.alias(channel)), shown, factor


def line(receiver: Circular10Receiver, rec: Record, when: str) -> str | None:
    """One record as one line without its end, or None when the profile leaves it out.
    ValueError for a symbol that would break the line (``_columns``)."""
    symbol, unit, factor = _columns(receiver, rec.channel, rec.unit)
    missing = not math.isfinite(rec.mean)
    if (missing and receiver.omit_missing) or (
            not missing and not rec.valid and receiver.invalid == "omit"):
        return None
    value = receiver.missing_value if missing else value_text(rec.mean * factor)
    status = STATUS_CODES.get(rec.status)
    return "\t".join((symbol, value, unit, when,
                      STATUS_CODES[Status(rec.status)] if status is None else status))


def render_file(receiver: Circular10Receiver, tz: tzinfo, start: int, window_s: int,
                records: Sequence[Record]) -> Circular10File:
    """The file of the window ``[start, start + window_s)`` for this receiver, in zone ``tz``:
    the one entry point of the format (the uplink and ``quantrac export`` both call it)."""
    stamp = stamp_of(receiver, start, window_s)
    at = local(stamp, tz)
    when = at.strftime(TIME_FORMAT)
    lines = [text for r in records if (text := line(receiver, r, when)) is not None]
    data = "".join(text + receiver.line_end for text in lines).encode("ascii")
    return Circular10File(fill_remote_dir(receiver.remote_dir, at),
                          file_name(receiver.file_prefix, at), data, stamp, len(lines))
