"""`quantrac provision`: station identity, keys and enrolment (a thin layer over ``identity``).

Output is for an installer at a terminal: what was done, the ids and fingerprints to compare,
and the next step. Nothing secret is ever printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("provision", help="station identity, keys and enrolment")
    actions = parser.add_subparsers(dest="provision_command", metavar="ACTION")
    actions.required = True

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help)
        p.add_argument(
            "--state-dir", type=Path, default=None,
            help="station state dir (default $QUANTRAC_STATE_DIR or /var/lib/quantrac)",
        )
        return p

    p = add("init", "generate this station's keys and write its enrolment request")
    p.add_argument("--station-id", required=True)
    p.add_argument("--out", type=Path, required=True, help="enrolment request file to write")
    p.add_argument("--force", action="store_true",
                   help="start a new identity; the old files are kept in replaced-<time>/")
    p.set_defaults(func=_init)

    p = add("import", "verify and install the bundle from the centre")
    p.add_argument("bundle", type=Path)
    p.add_argument("--centre-fingerprint", required=True,
                   help="as printed by `quantrac centre fingerprint` at the centre")
    p.set_defaults(func=_import)

    p = add("show", "identity, fingerprints, certificate expiry")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_show)

    p = add("rotate", "new signing key; writes the rotation request for the centre")
    p.add_argument("--out", type=Path, required=True, help="rotation request file to write")
    p.set_defaults(func=_rotate)


def _state_dir(args: argparse.Namespace) -> Path:
    from provisioning.identity import DEFAULT_STATE_DIR

    return args.state_dir if args.state_dir is not None else DEFAULT_STATE_DIR


def _write_out(path: Path, data: bytes) -> None:
    """The request goes to a USB stick: public content, written whole or not at all."""
    from provisioning.securefs import write_replace

    write_replace(path, data, mode=0o644)


def _init(args: argparse.Namespace) -> int:
    from provisioning import identity

    result = identity.init(_state_dir(args), args.station_id, force=args.force)
    _write_out(args.out, result.request)
    if result.moved_aside is not None:
        print(f"previous identity kept in {result.moved_aside}")
    print(f"station id:      {result.station_id}")
    print(f"station key id:  {result.key_id.hex()}")
    print(f"hardware serial: {result.hardware_serial or '(none found)'}")
    print(f"request written: {args.out}")
    print(f"next: at the centre, `quantrac centre enrol {args.out.name} --out BUNDLE`; then "
          "here, `quantrac provision import BUNDLE --centre-fingerprint FP`")
    return 0


def _import(args: argparse.Namespace) -> int:
    from provisioning import identity
    from provisioning.signed import iso

    data = args.bundle.read_bytes()
    bundle = identity.import_bundle(
        _state_dir(args), data, str(args.bundle), args.centre_fingerprint
    )
    print(f"bundle installed for station {bundle.station_id}")
    print(f"centre fingerprint: {bundle.fingerprint}")
    print(f"broker:             {bundle.broker_host}:{bundle.broker_port}")
    print(f"station key id:     {bundle.station_key_id.hex()}")
    print(f"certificate until:  {iso(bundle.station_cert.not_valid_after_utc.timestamp())}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from provisioning import identity

    info = identity.show(_state_dir(args))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for name, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{name + ':':<26}{'-' if value is None else value}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from provisioning import identity

    result = identity.rotate(_state_dir(args))
    _write_out(args.out, result.request)
    if result.reused:
        print(f"a rotation to key {result.new_key_id.hex()} was already pending; "
              "its request is written again")
    print(f"current key id: {result.old_key_id.hex()} (still used until the bundle is imported)")
    print(f"new key id:     {result.new_key_id.hex()}")
    print(f"request written: {args.out}")
    print(f"next: at the centre, `quantrac centre rotate {args.out.name} --out BUNDLE`; then "
          "here, `quantrac provision import BUNDLE --centre-fingerprint FP`")
    return 0
