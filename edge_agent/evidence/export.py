"""``quantrac export``'s work: a period of the outbox as files in a directory, no network.

Circular 10 files are made by the uplink's own parts: the records it reads (``Store.windows``
of its window width), grouped by its rule (:func:`~edge_agent.uplinks.circular10.uplink.
group_windows`: the first record of a channel in a window counts), rendered by its renderer
(:func:`~edge_agent.uplinks.circular10.render.render_file`) and put under ``circular10/`` at
the path it uploads to (:func:`~edge_agent.uplinks.circular10.uplink.remote_path`). Nothing
here decides a file's content or place, so the stick's files cannot drift from the uploaded
ones: an inspector can compare a file on the province's server with the one on the stick
byte for byte.
``records.csv`` has every field of every record exactly; with ``signed`` the manifest, the
checkpoints and the key make it verifiable anywhere (formats in
:mod:`edge_agent.evidence.manifest`).

The outbox is only read. The files are written plainly and synced once at the end: an export
to a USB stick must be on the stick before the inspector pulls it, and one sync at the end
does that; thousands of small files with one fsync each would cost minutes on a stick or an SD
card and buy nothing more, since the command either finishes or is run again into a new
directory. Where the time goes (``bench/export.py``: 17,280 files): creating a file is a
fraction of a millisecond of kernel time each, so the files are created by a few threads
while this one renders the next (the GIL is released in ``open``/``write``); each folder is
made once, not once per file; ``records.csv`` is one CSV writer for all lines.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from buffer import Store
from buffer.chain import Signer
from edge_agent.evidence import manifest as mf
from edge_agent.uplinks.circular10 import render
from edge_agent.uplinks.circular10.settings import Circular10Settings
from edge_agent.uplinks.circular10.uplink import group_windows, remote_path
from protocol.clock import Clock
from protocol.model import Record

#: how far beyond the period ``records.csv`` reaches to start and end on a signed checkpoint
#: (chain positions): the agent signs hourly, which is at most a few thousand records
EXTEND_MAX = 20_000
FORMATS = ("circular10", "csv")
#: threads creating the files (module docstring). Measured on the 2-core build machine (20
#: days, plain export): 1 and 4 threads within noise of each other, both 10-30 % faster
#: than creating the files on the rendering thread; more only queue on the directory locks
WRITERS = 2


@dataclass(frozen=True)
class Exported:
    out: Path
    circular10_files: int
    records: int  # lines of records.csv
    first: int  # chain positions covered
    last: int
    signed: bool


def circular10_files(store: Store, settings: Circular10Settings, start_from: float,
                     end_until: float) -> Iterator[tuple[str, bytes, list[tuple[int, str]]]]:
    """(path under ``circular10/``, bytes, (seq, line hash) per line) of every file the
    uplink makes for windows in ``[start_from, end_until]``."""
    tz = ZoneInfo(settings.timezone)
    w = settings.window_s
    held = store.windows(w, start_from=start_from, end_until=end_until)
    seq_of = {id(rec): seq for seq, rec in held}
    for start, records in group_windows(held):
        f = render.render_file(settings.receiver, tz, start, w, records)
        if f.lines == 0:  # every line left out by the profile: the uplink sends no file
            continue
        # the file is its records' lines, in order, some perhaps left out by the profile:
        # one line per record tells whose line is whose at once, else render them one by one
        hashes = [mf.line_hash(x) for x in f.data.splitlines(True)]
        owners = records if f.lines == len(records) else [
            r for r in records if render.render_file(settings.receiver, tz, start, w, [r]).data]
        seqs = [seq_of[id(r)] for r in owners] if len(owners) == len(hashes) else \
            [0] * len(hashes)
        lines = list(zip(seqs, hashes, strict=True))
        server_path = remote_path(settings, f.name)[1].lstrip("/")
        yield f"{mf.CIRCULAR10_DIR}/{server_path}", f.data, lines


def _span(store: Store, start_from: float, end_until: float,
          extend: bool) -> tuple[int, int] | None:
    """The chain positions ``records.csv`` covers: the period's records, reaching out to
    the nearest signed checkpoints (within ``EXTEND_MAX``) when ``extend``."""
    span = store.chain_span(start_from, end_until)
    if span is None or not extend:
        return span
    lo, hi = span
    signed = [cp.n for cp in store.checkpoints(max(0, lo - 1 - EXTEND_MAX), hi + EXTEND_MAX)
              if cp.signature]
    before = [n for n in signed if n <= lo - 1]
    after = [n for n in signed if n >= hi]
    head = store.chain_head()[0]
    return (max(before) + 1 if before else lo,
            min(after) if after else min(head, hi))


def _write_files(store: Store, out: Path, pool: ThreadPoolExecutor, span: tuple[int, int],
                 start_from: float, end_until: float, formats: Sequence[str],
                 circular10: Circular10Settings | None, signed: bool
                 ) -> tuple[list[mf.FileEntry], int, list[tuple[int, int, Record, bytes]]]:
    """The files the manifest lists (Circular 10, ``records.csv``, with ``signed`` the
    checkpoints), created by ``pool``; their entries,
    how many Circular 10 files, and the chained rows. Returns when every file is written (a
    failed write raises its OSError here)."""
    entries: list[mf.FileEntry] = []
    folders: set[Path] = {out}
    writes: list[Future[int]] = []

    def write(rel: str, data: bytes, lines: Sequence[tuple[int, str]] = ()) -> None:
        path = out / rel
        if path.parent not in folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            folders.add(path.parent)
        writes.append(pool.submit(path.write_bytes, data))
        entries.append(mf.FileEntry(rel, mf.sha256(data), tuple(lines)))

    c10 = 0
    if circular10 is not None and "circular10" in formats:
        for rel, data, lines in circular10_files(store, circular10, start_from, end_until):
            write(rel, data, lines)
            c10 += 1
    rows = store.chained(*span)
    if "csv" in formats or signed:
        write(mf.RECORDS, mf.csv_header() + mf.csv_lines(
            (n, seq, rec) for n, seq, rec, _ in rows))
    if signed:
        write(mf.CHECKPOINTS, mf.checkpoints_bytes(store.checkpoints(span[0] - 1, span[1])))
    for done in writes:
        done.result()
    return entries, c10, rows


def export(store: Store, out: Path, start_from: float, end_until: float, *,
           formats: Sequence[str] = FORMATS, circular10: Circular10Settings | None = None,
           signer: Signer | None = None, period: tuple[str, str] = ("", ""),
           clock: Clock) -> Exported:
    """Write the period ``[start_from, end_until]`` (UTC epoch seconds; a record counts when
    its whole window lies in it) into ``out``, which must not exist or be empty.
    ValueError names what is wrong (a non-empty ``out``, nothing in the period)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an empty directory; give a new one")
    if "circular10" in formats and circular10 is None:
        raise ValueError("--format circular10 needs the station config (--config): the "
                         "receiver profile decides the folders, names and lines")
    span = _span(store, start_from, end_until, extend=signer is not None)
    if span is None:
        raise ValueError(f"{store.path}: no records with a window in {mf.utc_text(start_from)}"
                         f"..{mf.utc_text(end_until)}")
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(WRITERS, thread_name_prefix="export") as pool:
        entries, c10, rows = _write_files(store, out, pool, span, start_from, end_until,
                                          formats, circular10, signer is not None)
    lo, hi = span
    if signer is not None:
        anchor = store.link_at(lo - 1)
        held = [n for n, _, _, _ in rows]
        gaps = [(a + 1, b - 1) for a, b in zip([lo - 1, *held], [*held, hi + 1], strict=True)
                if b - a > 1]
        m = mf.Manifest(
            station_id=signer.station_id, key_id=signer.key_id, period_from=period[0],
            period_to=period[1], made_at=clock(), first=lo, last=hi,
            anchor=anchor if anchor is not None else b"",
            links=tuple((n, seq, link) for n, seq, _, link in rows), gaps=tuple(gaps),
            files=tuple(entries))
        data = m.to_bytes()
        (out / mf.MANIFEST).write_bytes(data)
        (out / mf.SIGNATURE).write_bytes(
            base64.b64encode(signer.sign(mf.MANIFEST_CONTEXT + data)) + b"\n")
        (out / mf.PUBLIC_KEY).write_bytes(signer.key.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    os.sync()
    return Exported(out, c10, len(rows) if "csv" in formats or signer else 0, lo, hi,
                    signer is not None)
