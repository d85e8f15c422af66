"""docs/config.md against the config reader: every key it accepts is documented, and no other.

The reader has no schema apart from its code: each table is checked by a ``Reader.table(value,
path, allowed)`` call, and the ``allowed`` set is the truth of what a table accepts. So the key
list is taken from a real parse: the full example in docs/config.md is read by the real
``load_config``, with ``Reader.table`` and ``Reader.get`` recording what the station-config
code passes them (only calls made from ``edge_agent/config/``; a profile file's own keys are
not station config). A table the example never reaches would hide its keys, so every
``.table(...)`` call in ``edge_agent/config/*.py`` must be reached by the example: a new table
in the reader fails here until the example uses it and the doc lists its keys.

The doc's form, which this test reads:

* a heading naming a table in backticks, as TOML writes it: ``### `[[bus]]` ``,
  ``### `[device.channels.<channel>]` `` (``<...>`` is a name the installer chooses);
* under it a table whose header row starts ``| key | type | default |``; one row per key,
  the key in backticks in the first cell (``<symbol>`` for a table keyed by the station's
  own Circular 10 symbols, such as ``[uplink.circular10.receiver.aliases]``).

Types and defaults are checked where the reader states them (``Reader.get``'s kind and
default): ``required`` for a key without a default; a number, boolean or array default must be
written as its TOML literal in backticks.
``none`` is also accepted for a key without a default that is needed only with another
(``port`` for a serial bus, ``password_file`` instead of ``password``).
"""

from __future__ import annotations

import ast
import math
import re
import sys
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config.model import is_symbol
from edge_agent.config.reader import ConfigError, load_config
from protocol.config_file import MISSING, Reader

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "config.md"
CONFIG_DIR = ROOT / "edge_agent" / "config"

_KIND_WORD = {"str": "string", "int": "integer", "number": "number", "bool": "boolean",
              "list": "array", "table": "table"}


# --------------------------------------------------------------------------- the code's keys


@dataclass
class Seen:
    """What the station-config code asked the Reader while reading the example."""

    tables: list[tuple[str, frozenset[str]]] = field(default_factory=list)  # raw path, allowed
    gets: list[tuple[str, str, str, Any]] = field(default_factory=list)  # path, key, kind, dflt
    sites: set[tuple[Path, int]] = field(default_factory=set)  # (file, line) of table() calls


def _caller_in_config() -> tuple[Path, int] | None:
    frame = sys._getframe(2)  # 0: this, 1: the recording wrapper, 2: the reader's code
    file = Path(frame.f_code.co_filename).resolve()
    return (file, frame.f_lineno) if file.parent == CONFIG_DIR else None


def read_recorded(text: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Seen:
    """Parse ``text`` as a station config file with the real reader, recording its schema."""
    seen = Seen()
    table, get = Reader.table, Reader.get

    def recording_table(self: Reader, value: Any, path: str,
                        allowed: Collection[str]) -> Mapping[str, Any]:
        site = _caller_in_config()
        if site is not None:
            seen.tables.append((path, frozenset(allowed)))
            seen.sites.add(site)
        return table(self, value, path, allowed)

    def recording_get(self: Reader, doc: Mapping[str, Any], key: str, path: str, kind: str,
                      default: Any = MISSING, **kw: Any) -> Any:
        if _caller_in_config() is not None:
            seen.gets.append((path, key, kind, default))
        return get(self, doc, key, path, kind, default, **kw)

    monkeypatch.setattr(Reader, "table", recording_table)
    monkeypatch.setattr(Reader, "get", recording_get)
    path = tmp / "station.toml"
    path.write_text(text, encoding="utf-8")
    _make_named_files(tomllib.loads(text), tmp)
    load_config(path)  # a ConfigError here: the doc's example is not a valid config
    return seen


def _make_named_files(doc: Any, tmp: Path) -> None:
    """The example names files (password_file, ca_file); they must exist to be read."""
    if isinstance(doc, Mapping):
        for key, value in doc.items():
            if key.endswith("_file") and isinstance(value, str):
                (tmp / value).write_text("secret\n", encoding="utf-8")
            else:
                _make_named_files(value, tmp)
    elif isinstance(doc, list):
        for item in doc:
            _make_named_files(item, tmp)


_PART = re.compile(r"(?P<name>[^\[\]]*)(?P<index>(\[\d+\])*)")


@dataclass
class Schema:
    """The reader's tables by normalised path (``bus``, ``device.channels.*``)."""

    allowed: dict[str, set[str]] = field(default_factory=dict)
    arrays: set[str] = field(default_factory=set)  # paths that are arrays of tables

    def normalise(self, raw: str) -> str:
        """``device[1].channels.Flow`` -> ``device.channels.*``: indexes dropped, and a name
        its parent table does not list (a channel name the installer chose) becomes ``*``."""
        prefix = ""
        for comp in raw.split(".") if raw else []:
            m = _PART.fullmatch(comp)
            assert m is not None, raw
            name = m["name"] if m["name"] in self.allowed.get(prefix, ()) \
                and not is_symbol(m["name"]) else "*"
            prefix = f"{prefix}.{name}" if prefix else name
            if m["index"]:
                self.arrays.add(prefix)
        return prefix

    def keys(self) -> set[str]:
        """Full key paths; a table keyed by the station's own symbols (``receiver.aliases``
        accepts exactly the symbols the config reports) has one placeholder key, ``*``."""
        return {f"{p}.{k}" if p else k
                for p, ks in self.allowed.items() for k in {"*" if is_symbol(k) else k
                                                            for k in ks}}


def schema_of(seen: Seen) -> Schema:
    schema = Schema()
    for raw, allowed in seen.tables:  # parents are read before their children
        schema.allowed.setdefault(schema.normalise(raw), set()).update(allowed)
    return schema


# --------------------------------------------------------------------------- the doc's keys


_HEADING = re.compile(r"^#{1,6}\s.*?`(?P<open>\[\[?)(?P<path>[^\]`]+)(?P<close>\]\]?)`")
_KEY_HEADER = re.compile(r"^\|\s*key\s*\|\s*type\s*\|\s*default\s*\|", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class Row:
    key: str  # full normalised path: device.channels.*.symbol
    type: str
    default: str
    line: int


@dataclass
class DocKeys:
    rows: dict[str, Row] = field(default_factory=dict)
    headings: dict[str, tuple[bool, int]] = field(default_factory=dict)  # path: (array?, line)
    problems: list[str] = field(default_factory=list)

    def keys(self) -> set[str]:
        out = set(self.rows)
        for path in self.headings:
            parts = path.split(".")
            out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1)
                       if parts[i - 1] != "*")
        return out


def doc_keys(text: str, name: str = "docs/config.md") -> DocKeys:
    out = DocKeys()
    heading: str | None = None
    in_keys = in_fence = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:  # a "# comment" in a TOML or shell block is not a heading
            continue
        if line.startswith("#"):
            m = _HEADING.match(line)
            heading = _PLACEHOLDER.sub("*", m["path"].strip()) if m else None
            if heading is not None:
                out.headings[heading] = (m is not None and m["open"] == "[[", n)
            in_keys = False
            continue
        if _KEY_HEADER.match(line):
            in_keys = True
            if heading is None:
                out.problems.append(f"{name}:{n}: a key table under a heading that names no "
                                    "table (write the table in backticks: ### `[agent]`)")
            continue
        if not line.startswith("|"):
            in_keys = False
            continue
        if not in_keys or heading is None or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([^`]+)`", cells[0])
        if m is None or len(cells) < 3:
            out.problems.append(f"{name}:{n}: a key row must start | `key` | type | default |")
            continue
        key = f"{heading}.{_PLACEHOLDER.sub('*', m[1])}"
        if key in out.rows:
            out.problems.append(f"{name}:{n}: {key} is documented twice "
                                f"(also line {out.rows[key].line})")
        out.rows[key] = Row(key, cells[1], cells[2], n)
    return out


# --------------------------------------------------------------------------- the comparison


def _table_heading(path: str, schema: Schema) -> str:
    shown = ".".join("<name>" if p == "*" else p for p in path.split("."))
    return f"`[[{shown}]]`" if path in schema.arrays else f"`[{shown}]`"


def compare(schema: Schema, seen: Seen, doc: DocKeys) -> list[str]:
    """Every difference between what the reader accepts and docs/config.md, one line each."""
    problems = list(doc.problems)
    code, documented = schema.keys(), doc.keys()
    for key in sorted(code - documented):
        table, _, leaf = key.rpartition(".")
        leaf = "<name>" if leaf == "*" else leaf
        where = (f"a row | `{leaf}` | type | default | ... | in the key table under the heading "
                 f"{_table_heading(table, schema)}" if table else
                 f"a heading {_table_heading(key, schema)} with its key table")
        problems.append(f"docs/config.md does not document {key}, which the reader accepts: "
                        f"add {where}")
    for key in sorted(documented - code):
        line = doc.rows[key].line if key in doc.rows else doc.headings.get(key, (False, 0))[1]
        problems.append(f"docs/config.md:{line} documents {key}, which the reader does not "
                        f"accept (a typo, or a key that was removed): remove it or fix the name")
    for path, (array, line) in doc.headings.items():
        if path in schema.allowed and array != (path in schema.arrays):
            problems.append(f"docs/config.md:{line}: the heading of {path} should be "
                            f"{_table_heading(path, schema)}")
    for raw, key, kind, default in seen.gets:
        full = f"{schema.normalise(raw)}.{key}" if raw else key
        row = doc.rows.get(full)
        if row is None:
            continue  # reported above, or a heading-level key
        problems.extend(_type_and_default(row, kind, default))
    return sorted(set(problems))


def _type_and_default(row: Row, kind: str, default: Any) -> list[str]:
    out = []
    word = _KIND_WORD[kind]
    if word not in row.type.lower():
        out.append(f"docs/config.md:{row.line}: {row.key} is read as {word}, "
                   f"the doc says {row.type!r}")
    if default is MISSING:
        if not re.match(r"(required|none)\b", row.default.lower()):
            out.append(f"docs/config.md:{row.line}: {row.key} has no default in the reader; "
                       f"its default cell should say 'required' (or 'none' for a key that "
                       f"is needed only with another), not {row.default!r}")
        return out
    if default is None:
        return out  # absent means "not used"; the doc says in words what that means
    literal = re.search(r"`([^`]*)`", row.default)
    value: Any = MISSING
    if literal is not None:
        try:
            value = tomllib.loads(f"v = {literal[1]}")["v"]
        except tomllib.TOMLDecodeError:
            value = MISSING
    if value is MISSING:
        if not isinstance(default, str):  # a number/bool/array default is stated exactly
            out.append(f"docs/config.md:{row.line}: {row.key} defaults to {default!r} in the "
                       f"reader; write it in the default cell as `{_toml(default)}`")
        return out
    if not _same(value, default):
        out.append(f"docs/config.md:{row.line}: {row.key} defaults to {_toml(default)} in the "
                   f"reader, the doc says {literal[1] if literal else row.default}")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b)
    if isinstance(a, list) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


# --------------------------------------------------------------------------- the example


def full_examples(text: str) -> list[tuple[int, str]]:
    """(line, text) of the fenced ```toml blocks that are whole station configs ([station])."""
    out = []
    for m in re.finditer(r"^```toml\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        if re.search(r"^\[station\]", m[1], re.MULTILINE):
            out.append((text.count("\n", 0, m.start()) + 1, m[1]))
    return out


def table_call_sites() -> list[tuple[Path, int, int]]:
    """Every ``x.table(value, path, allowed)`` call in the station-config code."""
    sites = []
    for file in sorted(CONFIG_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "table" and len(node.args) == 3:
                sites.append((file.resolve(), node.lineno, node.end_lineno or node.lineno))
    return sites


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Seen:
    examples = full_examples(DOC.read_text(encoding="utf-8"))
    assert examples, "docs/config.md has no full example (a ```toml block with [station])"
    seen = Seen()
    for i, (line, text) in enumerate(examples):
        tmp = tmp_path / str(i)
        tmp.mkdir()
        try:
            one = read_recorded(text, tmp, monkeypatch)
        except ConfigError as exc:
            pytest.fail(f"the full example at docs/config.md:{line} is not a valid station "
                        f"config (the reader has changed? fix the example and document any "
                        f"new key):\n{exc}", pytrace=False)
        seen.tables += one.tables
        seen.gets += one.gets
        seen.sites |= one.sites
    return seen


def test_the_example_reaches_every_table_the_reader_checks(recorded: Seen) -> None:
    missed = [
        f"{file.relative_to(ROOT)}:{first}" for file, first, last in table_call_sites()
        if not any(f == file and first <= line <= last for f, line in recorded.sites)
    ]
    assert not missed, (
        "the full example in docs/config.md never reaches the table read at "
        + ", ".join(missed) + ": its keys cannot be compared with the doc; add that table "
        "to the example (a ```toml block starting with [station])")


def test_docs_config_lists_every_key_the_reader_accepts(recorded: Seen) -> None:
    problems = compare(schema_of(recorded), recorded,
                       doc_keys(DOC.read_text(encoding="utf-8")))
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- the checker itself


def test_a_key_missing_from_the_doc_is_named_with_its_heading(recorded: Seen) -> None:
    """Drop one row (bus.tcp_port) and one table (uplink.mqtt): both named, with the fix."""
    text = DOC.read_text(encoding="utf-8")
    lines = text.splitlines()
    kept, drop_mqtt = [], False
    for line in lines:
        if _HEADING.match(line):
            drop_mqtt = "`[uplink.mqtt]`" in line
        if drop_mqtt or line.startswith("| `tcp_port` |"):
            continue
        kept.append(line)
    problems = compare(schema_of(recorded), recorded, doc_keys("\n".join(kept)))
    assert any("does not document bus.tcp_port" in p and "`[[bus]]`" in p for p in problems), \
        problems
    assert any("does not document uplink.mqtt.window" in p and "`[uplink.mqtt]`" in p
               for p in problems), problems


def test_a_key_the_reader_refuses_is_named_with_its_line(recorded: Seen) -> None:
    text = DOC.read_text(encoding="utf-8").replace(
        "| `tcp_port` |", "| `tcp_prot` | integer | `502` | | |\n| `tcp_port` |", 1)
    problems = compare(schema_of(recorded), recorded, doc_keys(text))
    assert any("documents bus.tcp_prot, which the reader does not accept" in p
               for p in problems), problems


def test_a_wrong_default_or_type_is_named(recorded: Seen) -> None:
    doc = doc_keys(DOC.read_text(encoding="utf-8"))
    row = doc.rows["poll.retries"]
    doc.rows["poll.retries"] = Row(row.key, "number", "`3`", row.line)
    problems = compare(schema_of(recorded), recorded, doc)
    assert any("poll.retries is read as integer" in p for p in problems), problems
    assert any("poll.retries defaults to 1 in the reader, the doc says 3" in p
               for p in problems), problems
