"""``quantrac export`` and ``quantrac verify``: the inspector's two commands.

``export`` reads the outbox of a station config (or an outbox file given directly) and writes a
period as files; ``verify`` checks a signed export anywhere, given the station's public key or
the centre's registry. Answers on stdout, mistakes as ``protocol.cli_error`` errors.

The registry is read with one read-only query of its ``station_keys`` table, not through
``centre.registry``: the station side never imports the centre (the packages contract), and
an inspector's laptop with a copy of ``centre.db`` must not have it changed (``Registry``
opens read-write and creates its schema). ``tests/test_verify.py`` reads a registry that
``centre.registry.Registry`` wrote, so the two cannot drift apart unseen. Every key a
station ever had counts, retired ones too: an old checkpoint was signed by the key of its day.

``verify``'s exit code is the verdict, for a script as for a person: ``0`` authentic (checked
with a key from outside the export), ``1`` not authentic (a ``FAIL`` line per problem) or the
command could not run (one error line on stderr), ``4`` consistent but not authenticated (no
problem found, but only the key shipped inside the export was there to check it with, and
anyone who rewrites an export can ship their own key).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from buffer import OUTBOX_NAME
from edge_agent.evidence.verify import KeyLookup
from protocol.cli_error import CommandError, UsageError
from protocol.envelope import key_id
from protocol.record_filter import parse_time
from provisioning.keys import fingerprint

#: ``quantrac verify``'s exit codes (module docstring)
AUTHENTIC, NOT_AUTHENTIC, NOT_AUTHENTICATED = 0, 1, 4


def register_export(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("export", help="write a period of the outbox as Circular 10 files and "
                                      "CSV (optionally signed), for an inspector; no network")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", type=Path, help="station config (its outbox, receiver "
                                                 "profile and zone)")
    src.add_argument("--store", type=Path, help="an outbox file (CSV only; UTC dates)")
    p.add_argument("--from", dest="start", required=True, metavar="DATE",
                   help="first day or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM, station time)")
    p.add_argument("--to", dest="end", required=True, metavar="DATE",
                   help="last day (inclusive) or end time")
    p.add_argument("--out", type=Path, required=True, help="a new or empty directory")
    p.add_argument("--signed", action="store_true",
                   help="also a manifest signed with the station key, the checkpoints and "
                        "the public key, for `quantrac verify`")
    p.add_argument("--format", default=None,
                   help="circular10,csv (default: both with --config, csv with --store)")
    p.add_argument("--state-dir", type=Path,
                   help="where the station key is (default: the config's agent.state_dir, or "
                        "the outbox file's folder)")
    p.set_defaults(func=_export)


def register_verify(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("verify", help="check a signed export: which files and records are "
                                      "authentic, altered, removed or inserted; exit 0 "
                                      "authentic, 1 not, 4 consistent but no trusted key given")
    p.add_argument("export", type=Path, help="the export directory")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--public-key", type=Path, help="the station's public key (PEM)")
    key.add_argument("--registry", type=Path, help="the centre's registry (centre.db)")
    p.set_defaults(func=_verify)


def _export(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from buffer import Store
    from buffer.chain import Signer
    from buffer.store import ForeignDatabaseError
    from edge_agent.config.reader import load_config
    from edge_agent.evidence.export import FORMATS, export
    from edge_agent.uplinks.circular10.settings import Circular10Settings
    from provisioning import identity

    settings = None
    if args.store is not None:
        path, tz, state_dir = args.store, ZoneInfo("UTC"), args.state_dir or args.store.parent
        formats = (args.format or "csv").split(",")
        if not path.is_file():
            raise UsageError(f"--store {path}: no such file")
    else:
        if args.config is None:
            raise UsageError("give --config FILE (the station config) or --store FILE")
        cfg = load_config(args.config)  # the whole config: the uplink table too
        path, tz = cfg.agent.state_dir / OUTBOX_NAME, ZoneInfo(cfg.station.timezone)
        state_dir = args.state_dir or cfg.agent.state_dir
        formats = (args.format or ",".join(FORMATS)).split(",")
        if "circular10" in formats:
            if cfg.circular10 is None:
                raise UsageError(f"{args.config}: no [uplink.circular10] table: the Circular "
                                 "10 files need its receiver profile; use --format csv")
            settings = Circular10Settings.from_config(cfg)
        if not path.is_file():
            raise CommandError(f"export: {path}: no outbox there (agent.state_dir of "
                               f"{args.config})")
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--format {args.format!r}: one or both of {','.join(FORMATS)}")
    start = parse_time(args.start, tz, "--from")
    end = parse_time(args.end, tz, "--to", end=True)
    if end <= start:
        raise UsageError(f"--to {args.end!r} is not after --from {args.start!r}")
    signer = None
    if args.signed:
        ident = identity.load(state_dir)
        signer = Signer(ident.station_id, ident.signing_key)
    try:
        with Store(path, signer=signer) as store:
            done = export(store, args.out, start, end, formats=formats, circular10=settings,
                          signer=signer, period=(args.start, args.end), clock=time.time)
    except (ForeignDatabaseError, ValueError) as exc:
        raise CommandError(f"export: {exc}") from exc
    print(f"{done.out}: {done.circular10_files} Circular 10 file(s), {done.records} record(s) "
          f"in records.csv (chain {done.first}..{done.last})"
          f"{', signed' if done.signed else ''}", file=out)
    return 0


def registry_keys(path: Path) -> KeyLookup:
    """Station keys from a centre registry file, read-only (why: the module docstring)."""
    if not path.is_file():
        raise UsageError(f"--registry {path}: no such file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows = conn.execute("SELECT station_id, key_id, public_key FROM station_keys").fetchall()
        conn.close()
    except sqlite3.Error as exc:
        raise CommandError(f"verify: {path}: not a centre registry ({exc})") from None
    keys = {(str(s), str(k)): Ed25519PublicKey.from_public_bytes(bytes(p))
            for s, k, p in rows}

    def lookup(station_id: str, kid: bytes) -> Ed25519PublicKey | None:
        return keys.get((station_id, kid.hex()))

    return lookup


def file_key(path: Path) -> KeyLookup:
    """The one key of ``--public-key FILE`` (PEM)."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"--public-key {path}: cannot read ({exc.strerror})") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(f"--public-key {path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"--public-key {path}: not an Ed25519 key")
    kid = key_id(key)

    def lookup(station_id: str, wanted: bytes) -> Ed25519PublicKey | None:
        return key if wanted == kid else None

    return lookup


def read_export(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative POSIX path."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _verify(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from edge_agent.evidence.verify import verify

    if not args.export.is_dir():
        raise UsageError(f"{args.export}: not a directory (the folder `quantrac export` made)")
    keys = (registry_keys(args.registry) if args.registry is not None
            else file_key(args.public_key) if args.public_key is not None else None)
    report = verify(read_export(args.export), keys)
    for note in report.notes:
        print(f"ok: {note}", file=out)
    for finding in report.findings:
        print(f"FAIL {finding}", file=out)
    counts = (f"{report.authentic_files} file(s) and {report.authentic_records} record(s) "
              f"agree with the signed manifest, {len(report.findings)} problem(s)")
    if not report.ok:
        print(f"{args.export}: NOT AUTHENTIC: {counts}", file=out)
        return NOT_AUTHENTIC
    if report.authentic:
        print(f"{args.export}: AUTHENTIC: {counts}", file=out)
        return AUTHENTIC
    shipped = report.shipped_key
    print(f"{args.export}: consistent, but NOT authenticated: give --public-key (from the "
          "station or the centre) or --registry (the centre's registry file); the key inside "
          "the export proves only that its holder signed it"
          + (f" (its fingerprint {fingerprint(shipped)}: compare with the station key "
             "fingerprint `quantrac provision show` prints on the station)"
             if shipped is not None else "") + f"; {counts}", file=out)
    return NOT_AUTHENTICATED
