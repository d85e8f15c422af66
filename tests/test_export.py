"""quantrac export: the Circular 10 files it writes are byte for byte what the real uplink put
on a pyftpdlib server, in the same dated folders and names; it needs no network (the server is
stopped before it runs); a signed export with Circular 10 files verifies, and a re-ordered or
changed file in it is named by line."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from buffer import Store
from buffer.chain import Signer
from edge_agent.evidence import manifest as mf
from edge_agent.evidence.cli import read_export
from edge_agent.evidence.export import export
from edge_agent.evidence.verify import ALTERED, REORDERED, verify
from edge_agent.uplinks.circular10.settings import Circular10Settings
from edge_agent.uplinks.circular10.uplink import Circular10Uplink
from protocol.envelope import key_id
from protocol.model import Record
from tests.ftp_server import FtpServer
from tests.test_uplink_ftp import Clock, W, closed_starts, config, on_server, window

KEY = Ed25519PrivateKey.generate()


def uploaded_world(tmp_path: Path) -> tuple[Path, Path, list[int], Path]:
    """Windows stored and uploaded by the real uplink; (server base folder, config path,
    window starts, outbox). The server is stopped on return: what follows has no network."""
    home = tmp_path / "ftp"
    (home / "incoming").mkdir(parents=True)
    server = FtpServer(home)
    server.start()
    try:
        cfg = config(tmp_path, server.port, receiver='remote_dir = "/{yyyy}/{MM}/{dd}"')
        clock = Clock()
        starts = closed_starts(clock, 6)
        outbox = cfg.agent.state_dir / "outbox.sqlite"
        with Store(outbox, clock) as store:
            for k, s in enumerate(starts):
                store.append(window(s, ph=7.0 + k / 7))
                # another width interleaved in the chain: not in the Circular 10 files
                store.append([Record("pH", s, s + 60, 7.1, 7.1, 7.1, 0.0, 6, 6, True,
                                     window(s)[0].status, "pH")])
            settings = replace(Circular10Settings.from_config(cfg), timeout_s=5.0)
            up = Circular10Uplink(settings, store, tmp_path / "spool", clock)
            up.render_due(clock())
            assert up.send_pending() == len(starts)
        assert len(on_server(server)) == len(starts)
        assert all("/" in p for p in on_server(server))  # dated folders
    finally:
        server.stop()
    return home / "incoming", tmp_path / "station.toml", starts, outbox


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_exported_circular10_files_are_byte_identical_to_the_uploaded_ones(
        tmp_path: Path) -> None:
    base, station, starts, _ = uploaded_world(tmp_path)
    out = tmp_path / "usb"
    got = subprocess.run(
        [sys.executable, "-m", "edge_agent.daemon.cli", "export", "--config", str(station),
         "--from", f"{_iso(starts[0])}", "--to", f"{_iso(starts[-1] + W)}", "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stdout + got.stderr
    assert got.stderr == "" and "6 Circular 10 file(s)" in got.stdout
    uploaded = files_under(base)
    exported = files_under(out / mf.CIRCULAR10_DIR / "incoming")
    assert sorted(exported) == sorted(uploaded)
    for name, data in uploaded.items():
        assert exported[name] == data, name
    # and the CSV holds every record of the period, the 60 s windows too
    rows = (out / mf.RECORDS).read_bytes().splitlines()
    assert rows[0] == mf.csv_header().strip() and len(rows) == 1 + 6 * 3


def _iso(t: int) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def test_a_signed_export_with_circular10_files_verifies_and_names_a_bad_line(
        tmp_path: Path) -> None:
    _, station, starts, outbox = uploaded_world(tmp_path)
    from edge_agent.config.reader import load_config
    cfg = load_config(station)
    signer = Signer("HCM-WW-0001", KEY)
    out = tmp_path / "usb"
    with Store(outbox, signer=signer) as store:
        store.checkpoint()
        export(store, out, starts[0], starts[-1] + W, circular10=Circular10Settings.from_config(
            cfg), signer=signer, clock=lambda: 0.0)

    def keys(station_id: str, kid: bytes) -> object:
        return KEY.public_key() if kid == key_id(KEY.public_key()) else None

    files = read_export(out)
    report = verify(files, keys)  # type: ignore[arg-type]
    assert report.ok, [str(f) for f in report.findings]
    assert report.authentic_files == 6 + 2  # the Circular 10 files, records.csv, checkpoints
    c10 = sorted(p for p in files if p.startswith(mf.CIRCULAR10_DIR))[2]
    a, b = files[c10].splitlines(keepends=True)
    swapped = dict(files, **{c10: b + a})
    assert [(f.path, f.line, f.kind) for f in verify(swapped, keys).findings  # type: ignore[arg-type]
            ] == [(c10, 1, REORDERED)]
    changed = dict(files, **{c10: a.replace(b"\t00", b"\t01") + b})
    assert (c10, 1, ALTERED) in [(f.path, f.line, f.kind)
                                 for f in verify(changed, keys).findings]  # type: ignore[arg-type]
