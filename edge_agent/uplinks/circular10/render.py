"""Circular 10/2021/TT-BTNMT text files: records in, file name and bytes out.

Sans-IO: no file, socket or clock here; :mod:`edge_agent.uplinks.circular10.ftp` writes and sends
what this renders. One file per window; one line per parameter, tab separated::

    symbol <TAB> value <TAB> unit <TAB> YYYYMMDDhhmmss <TAB> status

Rules chosen here (the circular leaves them open), and why:

* **Time** is the window's *start*, in the station's zone: the same instant ``quantrac centre
  query`` shows first for a record, so a line and a stored record are matched by eye. The file
  name carries the same time.
* **Status**: ``01`` whenever the record's dominant status is calibrating (the centre must
  know the analyser was being calibrated, value or not); else ``02`` when the window has no
  value (no valid sample: offline, fault, maintenance) or is invalid (coverage below the
  validity rule); else :meth:`protocol.model.Status.circular10_code` (``00`` measuring).
* **No value is never a number**: a record whose mean is NaN gets an *empty* value field
  (``symbol<TAB><TAB>unit<TAB>time<TAB>02``). An invalid record with a mean keeps its mean,
  flagged ``02``, so the centre sees what was measured but does not count it.
* **Value**: plain decimal, at most 4 decimals, trailing zeros dropped, never an exponent
  (legacy centre parsers read ``1e-05`` as text).
* Lines follow the order of the records given (the uplink gives the config's channel order).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from datetime import tzinfo

from edge_agent.config.model import NAME_PART
from protocol.model import Record, Status
from protocol.payload import safe_unit, unit_problem

TIME_FORMAT = "%Y%m%d%H%M%S"
_FORBIDDEN = ("\t", "\r", "\n")


def file_name(province: str, facility: str, station: str, at_local: dt.datetime) -> str:
    """``Province_Facility_Station_YYYYMMDDhhmmss.txt``; ``at_local`` already in the station's
    zone (see :func:`local`). ValueError names the part that cannot go into a file name."""
    for what, part in (("province", province), ("facility", facility), ("station", station)):
        if not NAME_PART.fullmatch(part):
            raise ValueError(f"Circular 10 file name: {what} {part!r} must be 1 to 64 ASCII "
                             "letters, digits or '-'")
    return f"{province}_{facility}_{station}_{at_local.strftime(TIME_FORMAT)}.txt"


def local(t: float, tz: tzinfo) -> dt.datetime:
    """UTC epoch seconds as the station's wall clock."""
    return dt.datetime.fromtimestamp(t, tz)


def value_text(x: float) -> str:
    """A mean as the file writes it: empty for NaN (no value), else plain decimal."""
    if not math.isfinite(x):
        return ""
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def status_code(rec: Record) -> str:
    """The status column for a record (rules in the module docstring)."""
    status = Status(rec.status)
    if status is Status.CALIBRATING:
        return "01"
    if math.isnan(rec.mean) or not rec.valid:
        return "02"
    return status.circular10_code()


def line(rec: Record, tz: tzinfo) -> str:
    """One record as one line, without the line end. ValueError for a symbol that would break
    the line (empty, or a tab or line break in it: the config admits only Circular 10
    symbols, so a stored record cannot have one).

    A unit that breaks the label rule (a control character, too long: the config refuses
    those now, but an outbox can hold records made before) is written in its safe form
    (:func:`protocol.payload.safe_unit`: controls as visible escapes, cut) rather than
    refused: a refusal would stop every later file of the legal channel behind this one, and
    a raw CR, LF or TAB would split the line into fields a receiver misreads."""
    if not rec.channel or any(c in rec.channel for c in _FORBIDDEN):
        raise ValueError(f"Circular 10 line: symbol {rec.channel!r}: must not be empty nor "
                         "hold a tab or line break")
    unit = rec.unit if unit_problem(rec.unit) is None else safe_unit(rec.unit)
    return "\t".join((rec.channel, value_text(rec.mean), unit,
                      local(rec.start, tz).strftime(TIME_FORMAT), status_code(rec)))


def render(records: Sequence[Record], tz: tzinfo) -> bytes:
    """The file's bytes: UTF-8 without BOM, one ``\\n``-ended line per record, in the order
    given (``\\n``, not ``\\r\\n``: a reader that splits on ``\\n`` would otherwise see the
    status as ``00\\r``, while every Windows line reader also accepts a bare ``\\n``)."""
    return "".join(line(r, tz) + "\n" for r in records).encode("utf-8")
