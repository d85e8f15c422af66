"""Text for an 80-column serial console: long lines wrap, they are never cut.

A technician's terminal is 80x24 and a cut line loses its end, which in a message is the
part that says what to do (``timeout: unit 2: no an``) or which port (``link: cannot open
/dev/``). So ``diag`` and ``status`` wrap every long line here, continuation lines indented,
words longer than a line (a path) broken where they must be rather than dropped. Pure.
"""

from __future__ import annotations

import textwrap

WIDTH = 80


def wrap(text: str, indent: str = "    ", width: int = WIDTH) -> list[str]:
    """``text`` as lines of at most ``width`` columns, continuation lines starting with
    ``indent``; an empty text is one empty line."""
    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=True) or [""]
