"""Station-chosen text made safe to show: control characters become visible escapes.

Strings that come from a station (units, a state message, whatever a packet or a topic
carried) end up in front of people: in a terminal table (``centre query``, ``centre
stations``), in a log line (journald, ``grep``), in a spreadsheet (CSV export). Raw, they
can act on the reader instead of being read:

* ESC starts a terminal control sequence (clear the screen, recolour, move the cursor,
  rewrite the title); BEL rings; CR moves back to the start of the line, so what follows
  overwrites what an operator should have seen;
* CR or LF in a log value starts a new line the station wrote: a forged
  ``level=error event=...`` record indistinguishable from ours;
* a CSV cell starting with ``=``, ``+``, ``-``, ``@``, TAB or CR is a formula to Excel and
  LibreOffice (``=HYPERLINK(...)``, ``-2+3+cmd|'/Ccalc'!A0``: "formula injection").

``escape_controls`` replaces every character Python does not call printable (Unicode classes
Other and Separator, except the ASCII space: C0/C1 controls, DEL, line/paragraph separators,
bidi overrides) by a backslash escape, so the reader sees that it was there but it does
nothing. Printable text, Vietnamese letters and ``°C`` included, is left alone. This module
is pure and imported by both the centre and the station side (it lives in ``protocol`` so
the dependency arrows stay one-way).
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

#: what a spreadsheet takes as the start of a formula (OWASP "CSV injection")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _escape(c: str) -> str:
    named = _NAMED.get(c)
    if named is not None:
        return named
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character written as ``\\n``, ``\\x1b``, ``\\u2028``..."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def csv_cell(text: str) -> str:
    """A string cell from outside, neutralised for spreadsheets: controls escaped (a raw CR
    is not even quoted by ``csv`` with a ``\\n`` line end, so it would split the row and let
    the station write rows of its own), then a leading ``'`` if it would start a formula.
    Only for text cells: numbers we render ourselves (a negative mean) stay numbers, they
    never pass through here."""
    text = escape_controls(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
