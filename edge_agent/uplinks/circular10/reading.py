"""Reading a Circular 10 file back, as a provincial receiver would, to show and check it.

``quantrac circular10 show`` takes a file from the spool or from anywhere (one an inspector
copied off the province's server), so the bytes are outside input: nothing here trusts them,
and nothing here escapes them either (the caller shows them, and escapes there). Sans-IO: a
name and bytes in, a :class:`Reading` out.

The checks are the rules receivers in service apply (docs/circular10.md): the name is
``<prefix><yyyyMMddHHmmss>.txt``; the file is ASCII; each line splits on TAB into exactly five
fields (symbol, value, unit, time, status); every line's time is the name's; the status is
``00``/``01``/``02``; the value is a plain number or the "no value" placeholder. A file that
breaks one is a file some receiver refuses or misreads, so each problem names its line.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from edge_agent.uplinks.circular10.render import TIME_FORMAT

FIELDS = ("symbol", "value", "unit", "time", "status")
STATUS_MEANINGS = {"00": "measuring", "01": "calibrating/maintenance",
                   "02": "fault/offline"}
"""What the status column says about the instrument (the uplink's mapping: render.py)."""

_NAME = re.compile(r"(.*?)(\d{14})\.txt")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
MISSING = ("", "---")
"""The "no value" placeholders receivers in service take (``missing_value``)."""


@dataclass(frozen=True)
class Line:
    number: int  # from 1
    fields: tuple[str, ...]  # the line split on TAB
    problems: tuple[str, ...]


@dataclass
class Reading:
    name: str
    prefix: str | None  # None: the name is not <prefix>yyyyMMddHHmmss.txt
    time: str | None  # the 14 digits of the name
    line_end: str = ""  # "crlf", "lf" or "mixed"
    lines: list[Line] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # of the file as a whole

    @property
    def ok(self) -> bool:
        return not self.problems and not any(x.problems for x in self.lines)

    def local_time(self) -> dt.datetime | None:
        """The name's time (the station's wall clock), or None when it is not a time."""
        if self.time is None:
            return None
        try:
            return dt.datetime.strptime(self.time, TIME_FORMAT)
        except ValueError:
            return None


def _line(number: int, text: str, when: str | None, missing: tuple[str, ...]) -> Line:
    fields = tuple(text.split("\t"))
    problems: list[str] = []
    if len(fields) != len(FIELDS):
        problems.append(f"{len(fields)} TAB field(s), not 5")
    else:
        _symbol, value, _unit, time, status = fields
        if when is not None and time != when:
            problems.append(f"time {time} is not the name's {when}")
        if status not in STATUS_MEANINGS:
            problems.append(f"status {status} is not 00, 01 or 02")
        if value not in missing and _NUMBER.fullmatch(value) is None:
            problems.append(f"value {value} is not a plain number nor a no-value placeholder")
        if not fields[0]:
            problems.append("empty symbol")
    if any(c == " " for c in text) and len(fields) == len(FIELDS):
        problems.append("a blank inside a field: receivers that split on blanks misread it")
    return Line(number, fields, tuple(problems))


def read(name: str, data: bytes, missing: tuple[str, ...] = MISSING) -> Reading:
    """The file ``name`` (its base name) with bytes ``data``, read and checked."""
    m = _NAME.fullmatch(name)
    out = Reading(name, m[1] if m else None, m[2] if m else None)
    if m is None:
        out.problems.append("the name is not <prefix>yyyyMMddHHmmss.txt: receivers ignore it")
    elif out.local_time() is None:
        out.problems.append(f"the name's time {out.time} is not a date and time")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        out.problems.append(f"byte {exc.start} is not ASCII (0x{data[exc.start]:02x}): "
                            "receivers store it as mojibake or refuse the file")
        text = data.decode("utf-8", errors="replace")
    if not text:
        out.problems.append("the file is empty")
        return out
    if not text.endswith("\n"):
        out.problems.append("the last line has no line end: some receivers drop it")
    crlf, lf = text.count("\r\n"), text.count("\n")
    out.line_end = "crlf" if crlf == lf else "lf" if crlf == 0 else "mixed"
    if out.line_end == "mixed":
        out.problems.append("line ends are mixed (CR LF and LF)")
    raw = text.replace("\r\n", "\n").split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    for n, text_line in enumerate(raw, 1):
        out.lines.append(_line(n, text_line, out.time, missing))
    return out
