"""Verify a signed export (``edge_agent.evidence.manifest``): files in, findings out.

Sans-IO: the export's files as ``{relative path: bytes}`` and a way to find the station's
trusted key in; a :class:`Report` out. It never raises on what it is given (a damaged export
is what it exists for): every problem is a :class:`Finding` naming the file and, where there
is one, the line.

What makes a record authentic: its line in ``records.csv`` recomputes (``buffer.chain.link``
from the link before it) to the link the signed manifest gives for its chain position. The
manifest is signed by the station key; the checkpoints, signed by the same key when the
records were stored, must agree with the manifest at their positions, so a manifest re-made
later over changed records is caught by the older signatures. The key itself must come from
outside the export (``--public-key`` or the centre's registry): a key shipped inside it only
proves that *someone* signed it. Whoever rewrites an export can re-sign it with a key of their
own and ship that key, so with only the shipped key the best answer is "consistent": the
files agree with a manifest signed by the key in ``station.pub``. :attr:`Report.trusted` says
which answer this is, and ``quantrac verify`` gives "consistent, but not authenticated" its
own exit code, never the one of "authentic".

Where the station deleted records, the words say what an inspector can conclude: retention
deletes old records after signing a checkpoint of the link they end on, so the records after
them still check; records given up on a full disk (or deleted by someone) leave no such
checkpoint, and the record just after them cannot be checked (its link starts from one that
is gone), nor can the first one when the export has no link before it (``anchor`` empty).
"""

from __future__ import annotations

import base64
import binascii
import csv
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from buffer import chain
from buffer.chain import Checkpoint
from edge_agent.evidence import manifest as mf
from protocol.envelope import key_id
from protocol.safe_text import escape_controls as shown

#: (station id, key id) -> the station's trusted public key, or None when not known
KeyLookup = Callable[[str, bytes], Ed25519PublicKey | None]

ALTERED = "altered"
REMOVED = "removed"
INSERTED = "inserted"
REORDERED = "re-ordered"
KEY = "key"
UNREADABLE = "unreadable"
UNTRUSTED = "untrusted"
UNCHECKABLE = "cannot be checked"


@dataclass(frozen=True)
class Finding:
    path: str
    line: int | None  # 1-based; None: the file as a whole
    kind: str
    text: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.kind}: {self.text}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)  # each one fails the export
    notes: list[str] = field(default_factory=list)  # what was checked and found sound
    authentic_records: int = 0
    authentic_files: int = 0
    #: the manifest's signature was checked with a key from outside the export
    trusted: bool = False
    #: the key ``station.pub`` holds, when it is one (for its fingerprint)
    shipped_key: Ed25519PublicKey | None = None

    @property
    def ok(self) -> bool:
        """Nothing in the export contradicts its signed manifest (see ``authentic``)."""
        return not self.findings

    @property
    def authentic(self) -> bool:
        """Consistent *and* signed by a key from outside the export: the station's."""
        return self.ok and self.trusted

    def add(self, path: str, line: int | None, kind: str, text: str) -> None:
        self.findings.append(Finding(path, line, kind, text))


def verify(files: Mapping[str, bytes], keys: KeyLookup | None) -> Report:
    """Check an export; ``keys`` None: only against the key inside it (reported as such)."""
    report = Report()
    data = files.get(mf.MANIFEST)
    if data is None:
        report.add(mf.MANIFEST, None, REMOVED, "no manifest: not a signed export (made "
                   "without --signed) or the manifest was deleted; nothing can be verified")
        return report
    try:
        m = mf.Manifest.from_bytes(data)
    except ValueError as exc:
        report.add(mf.MANIFEST, None, UNREADABLE, shown(str(exc)))
        return report
    public = _manifest_key(files, m, data, keys, report)
    checkpoints = _checkpoints(files, m, public, keys, report)
    _files(files, m, report)
    _records(files, m, checkpoints, report)
    return report


def _manifest_key(files: Mapping[str, bytes], m: mf.Manifest, data: bytes,
                  keys: KeyLookup | None, report: Report) -> Ed25519PublicKey | None:
    """The key the manifest is checked with, after checking its signature."""
    shipped: Ed25519PublicKey | None = None
    pem = files.get(mf.PUBLIC_KEY)
    if pem is not None:
        try:
            loaded = load_pem_public_key(pem)
            shipped = loaded if isinstance(loaded, Ed25519PublicKey) else None
        except (ValueError, TypeError, UnsupportedAlgorithm):  # one flipped byte in the
            shipped = None  # DER's algorithm OID names a key type nobody knows: unreadable
        if shipped is None:
            report.add(mf.PUBLIC_KEY, None, UNREADABLE, "not an Ed25519 public key (PEM)")
    report.shipped_key = shipped
    kid = m.key_id.hex()
    if keys is None:
        public = shipped
        if public is not None:
            report.notes.append(f"checked against the key inside the export only (key id "
                                f"{key_id(public).hex()}): it proves only that the holder of "
                                "that key signed this; give --public-key or --registry to "
                                "know it is the station's")
            if key_id(public) != m.key_id:
                report.add(mf.PUBLIC_KEY, None, KEY, f"key id {key_id(public).hex()}, but the "
                           f"manifest names key id {kid}")
    else:
        public = keys(m.station_id, m.key_id)
        if public is None:
            report.add(mf.MANIFEST, None, KEY, f"signed with key id {kid}, which is not a key "
                       f"of station {shown(m.station_id)} in the given key or registry: a "
                       "replaced key; nothing in this export is authentic")
            return None
        if shipped is not None and key_id(shipped) != key_id(public):
            report.add(mf.PUBLIC_KEY, None, KEY, f"holds key id {key_id(shipped).hex()}, not "
                       f"the station's key id {key_id(public).hex()}: a replaced key")
    if public is None:
        report.add(mf.MANIFEST, None, KEY, "no key to check the signature with")
        return None
    try:
        sig = base64.b64decode(files.get(mf.SIGNATURE, b"").strip(), validate=True)
        public.verify(sig, mf.MANIFEST_CONTEXT + data)
    except (InvalidSignature, binascii.Error, ValueError):
        report.add(mf.SIGNATURE, None, KEY, f"not a valid signature of manifest.json by key "
                   f"id {key_id(public).hex()}: the manifest was changed or signed by "
                   "another key")
        return None
    report.trusted = keys is not None
    report.notes.append(f"manifest signed by station {shown(m.station_id)}, key id "
                        f"{key_id(public).hex()}")
    return public


def _checkpoints(files: Mapping[str, bytes], m: mf.Manifest, public: Ed25519PublicKey | None,
                 keys: KeyLookup | None, report: Report) -> dict[int, Checkpoint]:
    """The checkpoints whose signature holds, by position; each must agree with the
    manifest's link at its position."""
    data = files.get(mf.CHECKPOINTS)
    if data is None:
        return {}  # reported missing by _files
    try:
        cps = mf.parse_checkpoints(data)
    except ValueError as exc:
        report.add(mf.CHECKPOINTS, None, UNREADABLE, shown(str(exc)))
        return {}
    links = {n: link for n, _, link in m.links}
    links[m.first - 1] = m.anchor
    good: dict[int, Checkpoint] = {}
    for i, cp in enumerate(cps, 1):
        when = mf.utc_text(cp.at) if _finite(cp.at) else "?"
        label = f"checkpoint {i} (chain {cp.n}, {shown(cp.kind)}, {when})"
        if not cp.signature:
            report.notes.append(f"{label}: unsigned (the station had no key then)")
            continue
        key = (keys(m.station_id, cp.key_id) if keys is not None
               else public if public is not None and key_id(public) == cp.key_id else None)
        if cp.station_id != m.station_id or key is None or not chain.checkpoint_valid(cp, key):
            report.add(mf.CHECKPOINTS, None, KEY, f"{label}: not signed by a key of station "
                       f"{shown(m.station_id)} (key id {cp.key_id.hex()})")
            continue
        want = links.get(cp.n)
        if want is not None and want != cp.link:
            report.add(mf.CHECKPOINTS, None, ALTERED, f"{label}: the manifest's link at chain "
                       f"{cp.n} is not the one signed then: the records up to it were changed "
                       "after it was signed")
            continue
        good[cp.n] = cp
    if good:
        report.notes.append(f"{len(good)} signed checkpoint(s) agree with the manifest")
    return good


def _finite(x: float) -> bool:
    return x == x and abs(x) < 1e11


def _files(files: Mapping[str, bytes], m: mf.Manifest, report: Report) -> None:
    listed = {f.path for f in m.files}
    by_hash = {f.sha256: f.path for f in m.files}
    for f in m.files:
        data = files.get(f.path)
        if data is None:
            report.add(f.path, None, REMOVED, "listed in the manifest, missing from the export")
            continue
        got = mf.sha256(data)
        if got == f.sha256:
            report.authentic_files += 1
            continue
        other = by_hash.get(got)
        if other is not None:
            report.add(f.path, None, REORDERED, f"holds the content of {shown(other)}")
            continue
        if f.path == mf.RECORDS:
            report.add(f.path, None, ALTERED, "changed since it was signed (records below)")
        elif f.lines:
            _lines(f, data, report)
        else:
            report.add(f.path, None, ALTERED, "changed since it was signed")
    for path in sorted(set(files) - listed - {mf.MANIFEST, mf.SIGNATURE, mf.PUBLIC_KEY}):
        report.add(path, None, INSERTED, "not in the manifest")


def _lines(entry: mf.FileEntry, data: bytes, report: Report) -> None:
    """Which lines of a changed Circular 10 file differ from the signed ones."""
    want = [h for _, h in entry.lines]
    seqs = [s for s, _ in entry.lines]
    lines = data.splitlines(keepends=True)
    got = [mf.line_hash(x) for x in lines]
    if sorted(got) == sorted(want):
        first = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        report.add(entry.path, first + 1, REORDERED, "the signed lines, in another order "
                   f"(line {first + 1} should be the record of seq {seqs[first]})")
        return
    before = len(report.findings)
    ops = difflib.SequenceMatcher(a=want, b=got, autojunk=False).get_opcodes()
    for op, a0, a1, b0, b1 in ops:
        if op == "equal":
            continue
        if op in ("replace", "delete"):
            for k in range(a0, a1):
                line = b0 + (k - a0) + 1 if op == "replace" and b0 + (k - a0) < b1 else None
                what = ALTERED if line is not None else REMOVED
                report.add(entry.path, line if line is not None else b0 + 1, what,
                           f"the line of the record of seq {seqs[k]}" if what == ALTERED else
                           f"the line of the record of seq {seqs[k]} is gone")
        if op in ("replace", "insert"):
            for k in range(b0 + (a1 - a0 if op == "replace" else 0), b1):
                report.add(entry.path, k + 1, INSERTED, "a line not in the signed file")
    if len(report.findings) == before:  # same lines, bytes differ elsewhere (line ends)
        report.add(entry.path, None, ALTERED, "changed since it was signed")


def _records(files: Mapping[str, bytes], m: mf.Manifest, checkpoints: dict[int, Checkpoint],
             report: Report) -> None:
    data = files.get(mf.RECORDS)
    if data is None:
        return  # reported missing by _files
    path = mf.RECORDS
    expected = {n: (seq, link) for n, seq, link in m.links}
    gap_ends = {b for _, b in m.gaps}
    # an export whose first record's predecessor was gone wrote no anchor (older ones: 32 zero
    # bytes, which is the genesis link only before chain 1)
    anchor = m.anchor if len(m.anchor) == chain.LINK_SIZE and (
        m.first <= 1 or m.anchor != chain.GENESIS) else None

    def prev_link(n: int) -> bytes | None:
        if n == m.first:
            return anchor
        if n - 1 in expected:
            return expected[n - 1][1]
        if n - 1 in gap_ends and n - 1 in checkpoints:
            return checkpoints[n - 1].link
        return None

    def why_unchecked(n: int) -> str:
        if n == m.first:
            return (f"the records before it (up to chain {n - 1}) are no longer on the "
                    "station and nothing kept the link it was chained to, so its own content "
                    "cannot be checked; the records after it are checked against it")
        return (f"the records just before it (ending at chain {n - 1}) were deleted on the "
                "station with no signed checkpoint (see that finding), so the link it was "
                "chained to is gone and its own content cannot be checked; the records after "
                "it are checked against it")

    text = data.decode("utf-8", errors="replace")
    rows = csv.reader(text.splitlines())
    seen: set[int] = set()
    last_n = -1
    try:
        for number, row in enumerate(rows, 1):
            if number == 1:
                if tuple(row) != mf.CSV_COLUMNS:
                    report.add(path, 1, ALTERED, "not the records.csv header")
                continue
            try:
                n, seq, rec = mf.parse_csv_line(row)
            except (ValueError, TypeError, OverflowError) as exc:
                report.add(path, number, UNREADABLE, f"not a record ({shown(str(exc))})")
                continue
            what = f"seq {seq} (chain {n}) {shown(rec.channel)} {mf.utc_text(rec.start)}" \
                if _finite(rec.start) else f"seq {seq} (chain {n})"
            if n not in expected:
                report.add(path, number, INSERTED, f"{what}: no such record in the signed "
                           "chain")
                continue
            if n in seen:
                report.add(path, number, INSERTED, f"{what}: a second line for chain {n}")
                continue
            prev = prev_link(n)
            want_seq, want = expected[n]
            if prev is None:
                report.add(path, number, UNCHECKABLE, f"{what}: {why_unchecked(n)}")
                seen.add(n)
                last_n = max(last_n, n)
                continue
            try:
                ok = seq == want_seq and chain.link(prev, n, seq, rec) == want
            except (OverflowError, ValueError, UnicodeEncodeError):  # fields no record has
                ok = False
            if not ok:
                report.add(path, number, ALTERED, f"{what}: not the record the station chained "
                           "(a value, time, status or unit differs)")
                seen.add(n)
                continue
            seen.add(n)
            if n < last_n:
                report.add(path, number, REORDERED, f"{what}: out of chain order (after chain "
                           f"{last_n})")
            last_n = max(last_n, n)
            report.authentic_records += 1
    except csv.Error as exc:
        report.add(path, None, UNREADABLE, f"CSV: {shown(str(exc))}")
    for n in sorted(set(expected) - seen):
        report.add(path, None, REMOVED, f"seq {expected[n][0]} (chain {n}) is missing")
    for a, b in m.gaps:
        count = f"{b - a + 1} record(s), chain {a}..{b}"
        if b in checkpoints:
            report.notes.append(f"{count}: deleted on the station by retention (old records); "
                                "a checkpoint signed then vouches for the records after them")
        else:
            report.add(path, None, REMOVED, f"{count}: no longer on the station, and no "
                       "checkpoint signed at the time says what they were. Retention signs "
                       "one when it deletes old records; these were not deleted that way: "
                       "given up when the station's disk was full, or deleted by someone. "
                       "What they held cannot be shown")
    if report.authentic_records:
        report.notes.append(f"{report.authentic_records} record(s) authentic (chain "
                            f"{m.first}..{m.last})")
