"""Structured logging: one logfmt line per event, fit for journald.

Every package logs with the standard library only, the event name as the message and the
fields as ``extra``::

    log.warning("poll_failed", extra={"device": "ph1", "unit": 3, "reason": "timeout"})

This module renders such records as ``level=warning logger=quantrac.drivers event=poll_failed
device=ph1 unit=3 reason=timeout``. Fields whose name looks secret are masked so that a key can
never reach a log by accident.

Values are often chosen by someone else (a station's state message, a unit, a topic). Every
value goes through ``_quote``, which escapes CR, LF, ESC and every other control character
(``protocol.safe_text``): one record is always exactly one line, so a station can neither
forge a log line of ours nor send escape sequences to the terminal reading the journal.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from protocol.safe_text import escape_controls

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}
_SECRET_WORDS = ("secret", "private", "password", "passphrase", "token")


def _quote(value: Any) -> str:
    """One logfmt value, quoted when it holds a space, ``"``, ``=`` or anything non-printable;
    inside the quotes ``\\`` and ``"`` are escaped, then every control character is written
    as an escape (``\\r``, ``\\x1b``), so the value can never end the line."""
    text = str(value)
    if text == "" or any(c in text for c in ' "=') or not text.isprintable():
        text = '"' + escape_controls(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    """Formats a record as one logfmt line; ``timestamps`` off under journald (it stamps)."""

    def __init__(self, timestamps: bool = True) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        parts: list[str] = []
        if self.timestamps:
            parts.append("ts=" + self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"))
        parts.append("level=" + record.levelname.lower())
        parts.append("logger=" + record.name)
        parts.append("event=" + _quote(record.getMessage()))
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRS or key.startswith("_"):
                continue
            if any(word in key.lower() for word in _SECRET_WORDS):
                value = "***"
            parts.append(f"{key}={_quote(value)}")
        if record.exc_info and record.exc_info[1] is not None:
            parts.append("error=" + _quote(repr(record.exc_info[1])))
        return " ".join(parts)


def configure(level: str = "INFO", stream: TextIO | None = None, timestamps: bool = True,
              show: bool = True) -> None:
    """Install the logfmt handler on the root logger (idempotent).

    ``show=False`` (an interactive command, see ``edge_agent.daemon.cli``) keeps the handler but
    lets nothing through it: with no handler at all, Python's last-resort handler would print
    warnings to stderr anyway, and the root level stays ``level`` so a caller's own handler
    (a test's caplog) still receives every record."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_quantrac", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter(timestamps=timestamps))
    if not show:
        handler.setLevel(logging.CRITICAL + 1)
    handler._quantrac = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
