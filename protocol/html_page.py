"""HTML for the station page and the centre dashboard: one skeleton, one escaping rule.

Every string that came from outside (a station's channel names, units and id, an analyser's
state text, a config value, a query parameter echoed back) is shown through :func:`esc`:
control characters made visible (``protocol.safe_text.escape_controls``), then
``html.escape`` with quotes, so a unit ``<script>alert(1)</script>`` is read as text and can
neither open an element nor leave an attribute. HTML we write ourselves is a :class:`Safe`
string; the builders take ``str`` (escaped) or ``Safe`` (kept) children, so a caller never
concatenates raw outside text into markup by accident: forgetting ``Safe`` shows markup as
text (visible, harmless), it never runs it.

The pages carry no script at all and no outside resource (no CDN, no web font): stations and
many centres have no internet, and a page with no script of ours makes "a script ran" a bug
that a test can see (any ``<script>`` in the DOM was injected). The server adds a
Content-Security-Policy that forbids scripts (``protocol.web_app``), a second fence.

API (pure, text in, text out):

* ``esc(text) -> Safe``: outside text for element content or a quoted attribute value.
* ``Safe(str)``: markup we wrote. ``join(parts, sep="") -> Safe`` joins escaping each ``str``.
* ``el(tag, *children, **attrs) -> Safe``: one element; ``class_="x"`` for ``class``,
  ``data_start="1"`` for ``data-start``; an attribute of ``None`` or ``False`` is left out,
  ``True`` writes the bare name. ``void(tag, **attrs)`` for ``<input>``, ``<meta>``...
* ``table(headings, rows, class_=None) -> Safe``: cells are ``str`` or ``Safe``.
* ``page(title, *body, refresh_s=None, nav=()) -> str``: the whole document with the shared
  style sheet inline; ``nav`` is ``(href, label)`` pairs shown as a bar at the top;
  ``refresh_s`` adds ``<meta http-equiv="refresh">`` (live values without a script).
* ``STYLE``: the style sheet (classes ``ok``, ``bad``, ``warn``, ``muted``, ``num`` for
  right-aligned number cells, ``card``, ``grid``, ``error``). The plots carry their own
  colours as SVG attributes (``protocol.svg_plot``), so they look the same on any page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from protocol.safe_text import escape_controls


class Safe(str):
    """Markup this program wrote; the builders insert it unescaped."""

    __slots__ = ()


Child = str | Safe
Attr = str | int | float | bool | None


def esc(text: str) -> Safe:
    """Outside text, safe in element content and in a double-quoted attribute value."""
    if isinstance(text, Safe):
        return text
    return Safe(html.escape(escape_controls(str(text)), quote=True))


def join(parts: Iterable[Child], sep: str = "") -> Safe:
    """The parts as one ``Safe``: each plain ``str`` escaped, each ``Safe`` kept."""
    return Safe(esc(sep).join(esc(p) for p in parts))


def _attrs(attrs: dict[str, Attr]) -> str:
    out = []
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        out.append(f" {name}" if value is True else f' {name}="{esc(str(value))}"')
    return "".join(out)


def el(tag: str, *children: Child, **attrs: Attr) -> Safe:
    """``<tag attrs>children</tag>``; ``tag`` and attribute names are ours, never outside text."""
    return Safe(f"<{tag}{_attrs(attrs)}>{join(children)}</{tag}>")


def void(tag: str, **attrs: Attr) -> Safe:
    """An element with no content and no end tag (``input``, ``meta``, ``br``)."""
    return Safe(f"<{tag}{_attrs(attrs)}>")


def table(headings: Sequence[Child], rows: Iterable[Sequence[Child]],
          class_: str | None = None) -> Safe:
    """A table with a heading row; a cell that is a ``Safe`` ``<td>`` is kept as the cell."""
    head = el("tr", *(el("th", h) for h in headings))
    body = Safe("".join(
        el("tr", *(c if c.startswith("<td") and isinstance(c, Safe) else el("td", c)
                   for c in row))
        for row in rows))
    return el("table", el("thead", head), el("tbody", body), class_=class_)


def td(content: Child, class_: str | None = None, title: str | None = None) -> Safe:
    """A cell with a class (``ok``/``bad``/``num``) or a hover text, for :func:`table`."""
    return el("td", content, class_=class_, title=title)


STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1d3b53;color:#fff;padding:.5rem 1rem;display:flex;gap:1rem;
 align-items:baseline;flex-wrap:wrap}
header h1{font-size:1.2rem;margin:0}
header a{color:#cfe3f5}
main{padding:1rem;max-width:1400px}
h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;background:#fff;font-size:.9rem}
th,td{border:1px solid #d5d9de;padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#17692c}.bad{color:#b3261e;font-weight:600}.warn{color:#8a5a00}.muted{color:#6b7280}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(580px,1fr));gap:.8rem}
.card svg{width:100%}
.card{background:#fff;border:1px solid #d5d9de;padding:.5rem}
.card h3{font-size:.95rem;margin:0 0 .3rem}
svg{display:block;max-width:100%;height:auto}
svg text{fill:#4b5563}
form.inline{display:inline}
.error{background:#fde8e7;border:1px solid #e3a19c;padding:.4rem .6rem;display:inline-block}
"""


def page(title: str, *body: Child, refresh_s: int | None = None,
         nav: Sequence[tuple[str, str]] = ()) -> str:
    """The whole HTML document: ``title`` (escaped) as ``<title>`` and heading, the nav bar,
    then ``body``. No script, no outside resource (module docstring)."""
    head = [void("meta", charset="utf-8"),
            void("meta", name="viewport", content="width=device-width, initial-scale=1"),
            el("title", title), el("style", Safe(STYLE))]
    if refresh_s is not None:
        head.append(void("meta", http_equiv="refresh", content=str(int(refresh_s))))
    links = [el("a", label, href=href) for href, label in nav]
    bar = el("header", el("h1", title), *links)
    return "<!DOCTYPE html>\n" + el("html", el("head", *head),
                                    el("body", bar, el("main", *body)), lang="en") + "\n"
