"""What provincial receiving software in service does with a station's FTP folder, as a test part.

Fed by what the uplink really uploaded (the folder a pyftpdlib server writes to), it applies the
rules those programs apply, and says for each file whether it was ingested or why not:

* only **dated sub-folders** of the station's base folder are scanned (``<base>/yyyy/MM/dd/`` or
  ``<base>/yyyyMMdd/``); a file in the base folder itself is never seen;
* only ``<prefix><yyyyMMddHHmmss>.txt`` is taken (the prefix the province issued, verbatim),
  and the folder must be the name's date;
* the time comes from the file name, and **every line's time must equal it**;
* each line is split on TAB into **exactly 5 fields** (``split="whitespace"``: on any run of
  blanks, as some receivers do; an empty field then shifts the columns and the line is
  refused); the status is ``00``, ``01`` or ``02``; the value is a number or the placeholder;
* the file is read as ASCII (a ``°`` in UTF-8 is refused, as mojibake would be stored).

:class:`NewestOnlyReceiver` is the variant that, every ``period_s``, takes only the newest file
of the folder and deletes the rest: a backlog drained faster than that is lost.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

LAYOUTS = {"ymd": re.compile(r"(\d{4})/(\d{2})/(\d{2})"),
           "flat": re.compile(r"(\d{4})(\d{2})(\d{2})")}


@dataclass
class Reading:
    """One file as the receiver stored it."""

    name: str
    time: str  # yyyyMMddHHmmss from the name
    lines: list[list[str]]  # the 5 fields of each line


@dataclass
class Scan:
    ingested: list[Reading] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # relative path -> why
    unseen: list[str] = field(default_factory=list)  # files outside the dated folders
    ignored: list[str] = field(default_factory=list)  # in a dated folder, not <prefix>*.txt

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.ingested]


class Receiver:
    """Scan a station's base folder like receivers in service (module docstring)."""

    def __init__(self, base: Path, prefix: str, *, layout: str = "ymd", split: str = "tab",
                 missing: tuple[str, ...] = ("", "---")) -> None:
        self.base = base
        self.prefix = prefix
        self.folder = LAYOUTS[layout]
        self.split = split
        self.missing = missing
        self.name = re.compile(re.escape(prefix) + r"(\d{14})\.txt")

    def dated_files(self) -> tuple[list[tuple[Path, str]], list[str]]:
        """(file, its folder's yyyyMMdd) for files in dated folders; the rest, unseen."""
        seen: list[tuple[Path, str]] = []
        unseen: list[str] = []
        for p in sorted(self.base.rglob("*")):
            if not p.is_file():
                continue
            rel = p.parent.relative_to(self.base).as_posix()
            m = self.folder.fullmatch(rel)
            if m is None:
                unseen.append(p.relative_to(self.base).as_posix())
            else:
                seen.append((p, "".join(m.groups())))
        return seen, unseen

    def read(self, path: Path, folder_day: str) -> Reading | str:
        """The reading of one file, or why the receiver refuses it."""
        m = self.name.fullmatch(path.name)
        if m is None:
            return "not <prefix>yyyyMMddHHmmss.txt: ignored"
        when = m[1]
        if when[:8] != folder_day:
            return f"in folder {folder_day}, named for {when[:8]}"
        try:
            text = path.read_bytes().decode("ascii")
        except UnicodeDecodeError:
            return "not ASCII"
        lines: list[list[str]] = []
        for n, raw in enumerate(text.replace("\r\n", "\n").split("\n")[:-1], 1):
            fields = raw.split("\t") if self.split == "tab" else raw.split()
            if len(fields) != 5:
                return f"line {n}: {len(fields)} fields, not 5: {raw!r}"
            _symbol, value, _unit, time, status = fields
            if time != when:
                return f"line {n}: time {time} is not the name's {when}"
            if status not in ("00", "01", "02"):
                return f"line {n}: status {status!r}"
            if value not in self.missing:
                try:
                    float(value)
                except ValueError:
                    return f"line {n}: value {value!r} is not a number"
            lines.append(fields)
        if not text.endswith("\n") or not lines:
            return "no complete line"
        return Reading(path.name, when, lines)

    def scan(self) -> Scan:
        out = Scan()
        files, out.unseen = self.dated_files()
        for path, day in files:
            if self.name.fullmatch(path.name) is None:
                out.ignored.append(path.relative_to(self.base).as_posix())
                continue
            got = self.read(path, day)
            if isinstance(got, Reading):
                out.ingested.append(got)
            else:
                out.refused[path.relative_to(self.base).as_posix()] = got
        return out


class NewestOnlyReceiver(threading.Thread):
    """Every ``period_s``: ingest the newest acceptable file, delete every other one."""

    def __init__(self, receiver: Receiver, period_s: float) -> None:
        super().__init__(name="newest-only-receiver", daemon=True)
        self.receiver = receiver
        self.period_s = period_s
        self.ingested: list[str] = []
        self.deleted: list[str] = []
        self._halt = threading.Event()

    def scan_once(self) -> None:
        files, _ = self.receiver.dated_files()
        ours = [(p, d) for p, d in files if self.receiver.name.fullmatch(p.name)]
        if not ours:
            return
        newest = max(ours, key=lambda f: f[0].name)
        got = self.receiver.read(*newest)
        if isinstance(got, Reading) and got.name not in self.ingested:
            self.ingested.append(got.name)
        for p, _ in ours:
            if p != newest[0]:
                p.unlink(missing_ok=True)
                self.deleted.append(p.name)

    def run(self) -> None:
        while not self._halt.wait(self.period_s):
            self.scan_once()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        self.scan_once()  # what the next scan would still find
