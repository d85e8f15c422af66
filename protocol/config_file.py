"""Reading a TOML config file, and the one way every config mistake is reported.

Four files are read this way: the station config (``edge_agent.config.reader``), analyser
profiles (``drivers.profile``), the simulated station (``hw_sim.config``) and the centre's
receiver config (``centre.serve_config``). They used to check types and word their errors four
ways; now each mistake is a :class:`Problem` and every message reads the same::

    station.toml: device[0].unit = 300: expected a Modbus unit id in 1..247
    station.toml: station.id: missing; expected a station id: ...

naming the file, the key path, the value (as ``repr`` writes it, so ESC, CR and LF show as
``\\x1b``, ``\\r``, ``\\n`` and a message stays one line that cannot drive a terminal; a long
string cut, with its length) and what was expected.

Why it lives in ``protocol``: every side (the station, the simulator, the centre, the drivers)
reads config files, and ``protocol`` is the one package all of them may import. It is pure
(``tomllib`` and the file read only), so it is on the ``sans-io`` list.

Two ways to use :class:`Reader`: the station config collects every mistake and raises them
together (an installer fixes a config in one pass: ``collect=True``); a profile or a simulator
config raises at the first (``collect=False``), because later checks rely on earlier values.
The exception class is the caller's (``ProfileError``, ``hw_sim.ConfigError``, ...), each a
subclass of :class:`ConfigError`, so ``except ProfileError`` keeps working and the CLI catches
them all as one.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.cli_error import UserError

MISSING: Any = object()  # a key that is absent: Problem.value, and get()'s "no default"


def shown(value: Any, limit: int = 120) -> str:
    """The value as Python writes it (repr: ESC, CR, LF appear as ``\\x1b``, ``\\r``,
    ``\\n``, so a message is one line and cannot drive the terminal), a long string cut."""
    text = repr(value)
    if isinstance(value, str) and len(text) > limit:
        return f"{text[: limit - 20]}... ({len(value)} characters)"
    return text


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake: where (file, key path), what was found, what was expected."""

    file: str
    key: str
    value: Any
    expected: str

    def __str__(self) -> str:
        if self.value is MISSING:
            return f"{self.file}: {self.key}: missing; expected {self.expected}"
        return f"{self.file}: {self.key} = {shown(self.value)}: expected {self.expected}"


class ConfigError(UserError, ValueError):
    """A config file that cannot be used; ``problems`` lists every mistake, one per line.

    ``file``, ``key``, ``value`` and ``expected`` are the first problem's (a reader that stops
    at the first mistake has exactly one).
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def one(cls, file: str | Path, key: str, value: Any, expected: str) -> ConfigError:
        return cls([Problem(str(file), key, value, expected)])

    @property
    def file(self) -> str:
        return self.problems[0].file

    @property
    def key(self) -> str:
        return self.problems[0].key

    @property
    def value(self) -> Any:
        return self.problems[0].value

    @property
    def expected(self) -> str:
        return self.problems[0].expected


def read_toml(path: str | Path, error: type[ConfigError] = ConfigError,
              toml_hint: str = "") -> dict[str, Any]:
    """The parsed document at ``path``; ``error`` names the file when it cannot be.

    Unreadable, not UTF-8 (a Windows editor's Latin-1/Windows-1252 file: the byte, line and
    column are named) or not TOML (``toml_hint`` adds a word on what that can mean).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error.one(path, "<file>", str(path),
                        f"a readable file ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error.one(
            path, f"byte {exc.start} (line {line}, column {column})", data[exc.start:exc.end],
            "UTF-8 text (the file is in another encoding, such as Latin-1 or Windows-1252; "
            "save it as UTF-8)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error.one(path, "<toml>", str(exc), "valid TOML" + toml_hint) from None


_KIND_TEXT = {"str": "a string", "int": "an integer", "number": "a number",
              "bool": "true or false", "list": "an array", "table": "a table"}


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value))
    return isinstance(value, {"str": str, "bool": bool, "list": list, "table": Mapping}[kind])


class Reader:
    """Typed access to a parsed TOML document; each mistake becomes a :class:`Problem`.

    ``collect=True``: problems are recorded (``problems``) and parsing carries on with a
    default, so the next mistake is found too; the caller raises ``error(problems)`` at the
    end. ``collect=False``: the first problem raises ``error`` at once.
    """

    def __init__(self, source: str | Path, error: type[ConfigError] = ConfigError, *,
                 collect: bool = True) -> None:
        self.source = str(source)
        self.error_class = error
        self.collect = collect
        self.problems: list[Problem] = []

    def error(self, key: str, value: Any, expected: str) -> ConfigError:
        """The exception for one problem (``raise r.error(...)`` where parsing cannot go on)."""
        return self.error_class([Problem(self.source, key, value, expected)])

    def fail(self, key: str, value: Any, expected: str) -> None:
        if not self.collect:
            raise self.error(key, value, expected)
        self.problems.append(Problem(self.source, key, value, expected))

    def check(self) -> None:
        """Raise every problem recorded so far, if any."""
        if self.problems:
            raise self.error_class(self.problems)

    def table(self, value: Any, path: str, allowed: Collection[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, value, "a table")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(f"{path}.{key}" if path else key, value[key],
                          f"a known key (one of {', '.join(sorted(allowed))})")
        return value

    def tables(self, doc: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = doc.get(key, [])
        if not isinstance(value, list):
            self.fail(path, value, f"an array of tables ([[{path}]])")
            return []
        return value

    def get(self, doc: Mapping[str, Any], key: str, path: str, kind: str,
            default: Any = MISSING, check: Callable[[Any], bool] | None = None,
            expected: str | None = None) -> Any:
        """``doc[key]`` if present and of ``kind`` (str, int, number, bool, list, table).

        ``path`` is the table's key path (``""`` at the top). A number is finite and returned
        as a float. A missing required key or a wrong value is a problem; when collecting, the
        default (or None) is returned so parsing carries on and finds the next mistake too.
        """
        where = f"{path}.{key}" if path else key
        if key not in doc:
            if default is MISSING:
                self.fail(where, MISSING, expected or _KIND_TEXT[kind])
                return None
            return default
        value = doc[key]
        if not _is_kind(value, kind) or (check is not None and not check(value)):
            self.fail(where, value, expected or _KIND_TEXT[kind])
            return None if default is MISSING else default
        return float(value) if kind == "number" else value

    def choice(self, doc: Mapping[str, Any], key: str, path: str, options: Collection[Any],
               default: Any = MISSING) -> Any:
        """``doc[key]`` if it is one of ``options`` (strings or integers)."""
        where = f"{path}.{key}" if path else key
        expected = f"one of {', '.join(map(str, options))}"
        if key not in doc:
            if default is MISSING:
                self.fail(where, MISSING, expected)
                return None
            return default
        value = doc[key]
        if isinstance(value, bool) or not isinstance(value, str | int) or value not in options:
            self.fail(where, value, expected)
            return None if default is MISSING else default
        return value
