"""The signed export's format: what ``quantrac export --signed`` writes and ``quantrac verify``
reads. Sans-IO: records and bytes in, bytes out.

An export directory holds::

    records.csv        the chained records (one line each, every field exact)
    circular10/...     the Circular 10 files, in the dated folders and names the uplink uses
    checkpoints.json   the outbox's signed checkpoints of the chain head over that span
    manifest.json      every file's SHA-256; per Circular 10 file, each line's hash and the
                       record it shows; the chain positions and links of the records
    manifest.sig       the station's Ed25519 signature of manifest.json (base64)
    station.pub        the station's public key (PEM) that signed it

``records.csv`` holds every record the outbox chained from just after the last signed
checkpoint before the period to the first signed checkpoint after it (the other window widths
interleaved), not only the period's: a verifier recomputes each link from the one before, so
it needs the run unbroken between two signatures made at the time. Its floats are written with
``repr`` (they read back bit for bit), an empty field for no value (NaN), times as UTC epoch
seconds plus ``start_utc`` for the reader (checked against ``start``).
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from buffer.chain import Checkpoint
from protocol.model import Record, RecordFlag, Status
from protocol.safe_text import csv_cell

FORMAT = "quantrac-export/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "station.pub"
CHECKPOINTS = "checkpoints.json"
RECORDS = "records.csv"
CIRCULAR10_DIR = "circular10"
#: the station signs MANIFEST_CONTEXT || manifest.json: a manifest signature is never valid
#: as a packet, command or checkpoint signature (each has its own context string)
MANIFEST_CONTEXT = b"quantrac-edge/export-manifest/v1\x00"
_JSON = "json:"
CSV_COLUMNS = ("chain_n", "seq", "channel", "start", "end", "start_utc", "mean", "min", "max",
               "std", "n_valid", "n_expected", "valid", "status", "unit", "flags")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def line_hash(line: bytes) -> str:
    """A line's hash in the manifest (with its line end): 128 bits is plenty to tell lines
    apart; the file's own SHA-256 is what the signature binds."""
    return hashlib.sha256(line).hexdigest()[:32]


@functools.lru_cache(maxsize=1024)
def utc_text(t: float) -> str:
    """Cached: every channel of a window has the same start, and an export writes 170,000
    of them (strftime was a tenth of its time)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _real(x: float) -> str:
    return "" if math.isnan(x) else repr(float(x))


def _parse_real(text: str) -> float:
    return math.nan if text == "" else float(text)


@functools.lru_cache(maxsize=4096)
def _text(text: str) -> str:
    """A channel or unit cell: as is when a spreadsheet would show it as is, else ``json:``
    and its JSON string (controls escaped, never a formula start), so the cell is both safe
    to open and the exact text the chain covers. Cached: a store holds a few channels and
    units, and an export writes each 170,000 times."""
    if csv_cell(text) == text and not text.startswith(_JSON):
        return text
    return _JSON + json.dumps(text)


def _parse_text(cell: str) -> str:
    if not cell.startswith(_JSON):
        return cell
    value = json.loads(cell[len(_JSON):])
    if not isinstance(value, str):
        raise ValueError(f"{cell!r}: not a JSON string")
    return value


def csv_header() -> bytes:
    return (",".join(CSV_COLUMNS) + "\n").encode("ascii")


def csv_lines(rows: Iterable[tuple[int, int, Record]]) -> bytes:
    """Chained records ``(n, seq, record)`` as CSV lines (each ``\\n`` ended), by one writer
    (a writer and a buffer per line cost more than the line)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows((
        n, seq, _text(rec.channel), rec.start, rec.end, utc_text(rec.start), _real(rec.mean),
        _real(rec.min), _real(rec.max), _real(rec.std), rec.n_valid, rec.n_expected,
        1 if rec.valid else 0, int(rec.status), _text(rec.unit), int(rec.flags))
        for n, seq, rec in rows)
    return out.getvalue().encode("utf-8")


def csv_line(n: int, seq: int, rec: Record) -> bytes:
    """One chained record as one CSV line."""
    return csv_lines([(n, seq, rec)])


def parse_csv_line(fields: Sequence[str]) -> tuple[int, int, Record]:
    """(n, seq, record) from one CSV row; ValueError when it is not one."""
    if len(fields) != len(CSV_COLUMNS):
        raise ValueError(f"{len(fields)} fields, want {len(CSV_COLUMNS)}")
    f = dict(zip(CSV_COLUMNS, fields, strict=True))
    if f["valid"] not in ("0", "1"):
        raise ValueError(f"valid {f['valid']!r}")
    rec = Record(
        channel=_parse_text(f["channel"]), start=int(f["start"]), end=int(f["end"]),
        mean=_parse_real(f["mean"]), min=_parse_real(f["min"]), max=_parse_real(f["max"]),
        std=_parse_real(f["std"]), n_valid=int(f["n_valid"]), n_expected=int(f["n_expected"]),
        valid=f["valid"] == "1", status=Status(int(f["status"])), unit=_parse_text(f["unit"]),
        flags=RecordFlag(int(f["flags"])))
    if utc_text(rec.start) != f["start_utc"]:
        raise ValueError(f"start_utc {f['start_utc']!r} is not start {rec.start}")
    return int(f["chain_n"]), int(f["seq"]), rec


@dataclass(frozen=True)
class FileEntry:
    """One file of the export: its hash and, for a Circular 10 file, (seq, line hash) per
    line in order (seq 0: a line not made from one record)."""

    path: str
    sha256: str
    lines: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Manifest:
    station_id: str
    key_id: bytes
    period_from: str
    period_to: str
    made_at: float
    first: int  # chain position of the first record in records.csv
    last: int  # ... and of the last
    anchor: bytes  # link_{first - 1}; empty: gone from the station (nothing kept it)
    links: tuple[tuple[int, int, bytes], ...]  # (n, seq, link) of every record, chain order
    gaps: tuple[tuple[int, int], ...]  # chain positions no longer held in the outbox
    files: tuple[FileEntry, ...]

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT, "station_id": self.station_id, "key_id": self.key_id.hex(),
            "period": {"from": self.period_from, "to": self.period_to},
            "made_at": self.made_at,
            "chain": {"first": self.first, "last": self.last, "anchor": self.anchor.hex(),
                      "gaps": [list(g) for g in self.gaps],
                      "records": [[n, s, link.hex()] for n, s, link in self.links]},
            "files": [{"path": f.path, "sha256": f.sha256,
                       **({"lines": [list(x) for x in f.lines]} if f.lines else {})}
                      for f in self.files],
        }
        return (json.dumps(doc, sort_keys=True, allow_nan=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """ValueError (with what is wrong) for anything that is not a manifest."""
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, want {FORMAT!r}")
            c = doc["chain"]
            files = tuple(FileEntry(str(f["path"]), str(f["sha256"]), tuple(
                (int(s), str(h)) for s, h in f.get("lines", []))) for f in doc["files"])
            return cls(
                station_id=str(doc["station_id"]), key_id=bytes.fromhex(doc["key_id"]),
                period_from=str(doc["period"]["from"]), period_to=str(doc["period"]["to"]),
                made_at=float(doc["made_at"]), first=int(c["first"]), last=int(c["last"]),
                anchor=bytes.fromhex(c["anchor"]),
                links=tuple((int(n), int(s), bytes.fromhex(h)) for n, s, h in c["records"]),
                gaps=tuple((int(a), int(b)) for a, b in c["gaps"]), files=files)
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError,
                json.JSONDecodeError) as exc:
            raise ValueError(f"not an export manifest ({type(exc).__name__}: {exc})") from None


def checkpoints_bytes(cps: Sequence[Checkpoint]) -> bytes:
    return (json.dumps([{
        "station_id": c.station_id, "n": c.n, "seq": c.seq, "link": c.link.hex(),
        "at": c.at, "kind": c.kind, "key_id": c.key_id.hex(),
        "signature": base64.b64encode(c.signature).decode("ascii"), "note": c.note}
        for c in cps], indent=0, allow_nan=False) + "\n").encode()


def parse_checkpoints(data: bytes) -> list[Checkpoint]:
    """ValueError for anything that is not a checkpoints file."""
    try:
        doc: Any = json.loads(data)
        if not isinstance(doc, list):
            raise ValueError("not a list")
        return [Checkpoint(str(c["station_id"]), int(c["n"]), int(c["seq"]),
                           bytes.fromhex(c["link"]), float(c["at"]), str(c["kind"]),
                           bytes.fromhex(c["key_id"]),
                           base64.b64decode(c["signature"], validate=True), str(c["note"]))
                for c in doc]
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError,
            json.JSONDecodeError) as exc:
        raise ValueError(f"not a checkpoints file ({type(exc).__name__}: {exc})") from None
