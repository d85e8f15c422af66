"""quantrac export: the Circular 10 files it writes are byte for byte what the real uplink put
on a pyftpdlib server, in the same dated folders and names; it needs no network (the server is
stopped before it runs); a signed export with Circular 10 files verifies, and a re-ordered or
changed file in it is named by line; a really provisioned station's `export --signed` verifies
with its key or the centre's registry (exit 0), only "consistent" (exit 4) with neither."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

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


def test_a_provisioned_station_exports_signed_and_verify_trusts_only_a_key_from_outside(
        tmp_path: Path) -> None:
    """The inspector's path with the real commands: a station provisioned by `quantrac
    provision init` + `centre enrol` + `provision import --yes`, its outbox chained and
    checkpointed with the station key (as the agent does), `quantrac export --signed`, then
    `quantrac verify` with the station's key, with the centre's registry, and with neither."""
    import json

    from test_provision_recovery import Site, ok

    from buffer import OUTBOX_NAME
    from provisioning import identity

    site = Site(tmp_path)
    site.state_dir = tmp_path / "state"  # the station config's [agent] state_dir
    ident = site.enrolled("HCM-WW-0001")
    cfg = config(tmp_path, 2121, receiver='remote_dir = "/{yyyy}/{MM}/{dd}"')  # no server
    assert cfg.agent.state_dir == site.state_dir
    start0 = 1_763_900_100 // W * W
    starts = [start0 + k * W for k in range(6)]
    with Store(site.state_dir / OUTBOX_NAME, lambda: starts[-1] + 2 * W,
               signer=Signer(ident.station_id, ident.signing_key)) as store:
        for k, s in enumerate(starts):
            store.append(window(s, ph=7.0 + k / 8))  # exact in binary: repr is short
        store.checkpoint()
    out = tmp_path / "usb" / "export"
    got = subprocess.run(
        [sys.executable, "-m", "edge_agent.daemon.cli", "export", "--config",
         str(tmp_path / "station.toml"), "--from", _iso(starts[0]), "--to",
         _iso(starts[-1] + W), "--out", str(out), "--signed"],
        capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stdout + got.stderr
    assert got.stderr == "" and "6 Circular 10 file(s)" in got.stdout and "signed" in got.stdout
    assert identity.load(site.state_dir).station_id == "HCM-WW-0001"

    station_pub = tmp_path / "from-the-station.pub"  # the station's key, not the export's
    shown = ok(site.station("show", "--public-key"))  # what the inspector asks the station for
    assert shown.encode() == ident.signing_key.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    station_pub.write_text(shown)
    registry = site.centre_dir / "registry.sqlite"

    def verify_cmd(export_dir: Path, *key: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "verify",
                               str(export_dir), *key], capture_output=True, text=True,
                              timeout=120)

    for key in (("--public-key", str(station_pub)), ("--registry", str(registry))):
        got = verify_cmd(out, *key)
        assert got.returncode == 0, got.stdout + got.stderr
        assert f"{out}: AUTHENTIC:" in got.stdout and got.stderr == ""
        assert "FAIL" not in got.stdout

    # with only the key shipped inside the export: consistent, never "authentic"
    got = verify_cmd(out)
    assert got.returncode == 4, got.stdout + got.stderr
    assert "consistent, but NOT authenticated: give --public-key (from the station or the " \
        "centre) or --registry" in got.stdout
    assert "AUTHENTIC:" not in got.stdout and got.stderr == ""
    shown = json.loads(ok(site.station("show", "--json")))["station_key_fingerprint"]
    assert f"its fingerprint {shown}" in got.stdout  # what the inspector compares by eye

    # one changed value, in a Circular 10 file and in records.csv: named by file and line
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    c10 = sorted(p for p in (bad / mf.CIRCULAR10_DIR).rglob("*.txt"))[1]
    assert b"\t7.125\t" in c10.read_bytes()
    c10.write_bytes(c10.read_bytes().replace(b"\t7.125\t", b"\t7.5\t"))
    rows = (bad / mf.RECORDS).read_bytes().splitlines(keepends=True)
    line = next(i for i, r in enumerate(rows, 1) if b",7.125," in r)
    rows[line - 1] = rows[line - 1].replace(b",7.125,", b",7.5,")
    (bad / mf.RECORDS).write_bytes(b"".join(rows))
    rel = c10.relative_to(bad).as_posix()
    keys: list[tuple[str, ...]] = [("--public-key", str(station_pub)),
                                   ("--registry", str(registry)), ()]
    for given in keys:
        got = verify_cmd(bad, *given)
        assert got.returncode == 1, got.stdout + got.stderr
        assert f"FAIL {rel}:1: altered" in got.stdout
        assert f"FAIL records.csv:{line}: altered" in got.stdout
        assert "NOT AUTHENTIC" in got.stdout
