"""`quantrac centre init | fingerprint | enrol | rekey | rotate | revoke | crl` (over
``authority``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(actions: argparse._SubParsersAction[Any]) -> None:
    """Add the provisioning actions to ``quantrac centre``."""

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help)
        p.add_argument(
            "--dir", type=Path, default=None,
            help="centre dir (default $QUANTRAC_CENTRE_DIR or /var/lib/quantrac-centre)",
        )
        return p

    p = add("init", "create the centre's keys and the CA for broker client certificates")
    p.add_argument("--broker", help="default broker HOST:PORT written into bundles")
    p.set_defaults(func=_init)

    p = add("fingerprint", "print the fingerprint installers compare on import")
    p.set_defaults(func=_fingerprint)

    p = add("enrol", "verify an enrolment request, register the station, write its bundle")
    p.add_argument("request", type=Path)
    p.add_argument("--out", type=Path, required=True, help="bundle file to write")
    p.add_argument("--broker", help="broker HOST:PORT (default: the one given at init)")
    p.add_argument("--valid-days", type=int, default=730,
                   help="certificate and bundle validity (default 730)")
    p.set_defaults(func=_enrol)

    p = add("rekey", "approve a new key for an enrolled station that lost its keys (re-"
            "initialised, new SD card); revokes its old key")
    p.add_argument("request", type=Path, help="the station's new enrolment request")
    p.add_argument("--out", type=Path, required=True, help="bundle file to write")
    p.add_argument("--station-fingerprint", required=True, nargs="+", metavar="FP",
                   help="the station key fingerprint as the installer reads it from the "
                   "station (`provision init` printed it; `provision show` shows it)")
    p.add_argument("--broker", help="broker HOST:PORT (default: the one given at init)")
    p.add_argument("--valid-days", type=int, default=730,
                   help="certificate and bundle validity (default 730)")
    p.set_defaults(func=_rekey)

    p = add("rotate", "accept a station's rotation request, renew its certificate, write its "
            "new bundle")
    p.add_argument("request", type=Path)
    p.add_argument("--out", type=Path, required=True, help="bundle file to write")
    p.add_argument("--broker", help="broker HOST:PORT (default: the one given at init)")
    p.add_argument("--valid-days", type=int, default=730,
                   help="renewed certificate and bundle validity (default 730)")
    p.set_defaults(func=_rotate)

    p = add("revoke", "revoke a station: refuse its packets, put its certificate on the CRL")
    p.add_argument("station_id")
    p.set_defaults(func=_revoke)

    p = add("broker-cert", "issue the broker's TLS server certificate from the centre CA")
    p.add_argument("hostnames", nargs="+", help="names/IPs stations connect to")
    p.add_argument("--out-dir", type=Path, required=True,
                   help="where broker.key, broker.crt, ca.crt, crl.pem go")
    p.add_argument("--valid-days", type=int, default=730)
    p.set_defaults(func=_broker_cert)

    p = add("crl", "rewrite the CRL (run from cron: the broker refuses all once it expires)")
    p.set_defaults(func=_crl)


def _dir(args: argparse.Namespace) -> Path:
    from centre.authority import DEFAULT_CENTRE_DIR

    return args.dir if args.dir is not None else DEFAULT_CENTRE_DIR


def _init(args: argparse.Namespace) -> int:
    from centre import authority

    centre = authority.init(_dir(args), args.broker)
    print(f"centre keys created in {centre.dir}")
    print(f"fingerprint: {centre.fingerprint}")
    print(f"CA certificate: {centre.dir / 'ca.crt'}; CRL: {centre.crl_path}")
    return 0


def _fingerprint(args: argparse.Namespace) -> int:
    from centre import authority

    centre = authority.load(_dir(args))
    print(centre.fingerprint)
    return 0


def _write_bundle(path: Path, data: bytes) -> None:
    from provisioning.securefs import write_public

    write_public(path, data, "The station is registered: the same command again writes the "
                 "same bundle")


def _check_out(path: Path) -> None:
    from provisioning.securefs import check_out_folder

    check_out_folder(path)


def _enrol(args: argparse.Namespace) -> int:
    from centre import authority
    from provisioning.signed import iso

    centre = authority.load(_dir(args))
    _check_out(args.out)
    issued = authority.enrol(
        centre, args.request.read_bytes(), str(args.request),
        broker=args.broker, valid_days=args.valid_days,
    )
    _write_bundle(args.out, issued.bundle)
    if issued.reissued:
        print(f"station {issued.station_id} was already enrolled with this request: its bundle "
              f"is written again (same key {issued.key_id.hex()}, same certificate; "
              "--valid-days does not apply)")
    else:
        print(f"station {issued.station_id} enrolled, key id {issued.key_id.hex()}")
    print(f"bundle written: {args.out} (valid until {iso(issued.expires)})")
    print(f"the installer imports it with --centre-fingerprint {centre.fingerprint}")
    return 0


def _rekey(args: argparse.Namespace) -> int:
    from centre import authority
    from provisioning.signed import iso

    centre = authority.load(_dir(args))
    _check_out(args.out)
    issued = authority.rekey(
        centre, args.request.read_bytes(), str(args.request), " ".join(args.station_fingerprint),
        broker=args.broker, valid_days=args.valid_days,
    )
    _write_bundle(args.out, issued.bundle)
    if issued.reissued:
        print(f"station {issued.station_id} was already re-keyed with this request: its bundle "
              f"is written again (same key {issued.key_id.hex()}, same certificate)")
    else:
        old = ", ".join(issued.retired_keys) or "none"
        print(f"station {issued.station_id}: new key {issued.key_id.hex()} approved; old keys "
              f"revoked: {old} (their packets are refused from now on)")
        print(f"CRL written: {centre.crl_path} (copy it to the broker and restart Mosquitto: "
              "the old certificate is on it)")
    print(f"bundle written: {args.out} (valid until {iso(issued.expires)})")
    print(f"the installer imports it with --centre-fingerprint {centre.fingerprint}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from centre import authority

    centre = authority.load(_dir(args))
    _check_out(args.out)
    issued = authority.rotate(
        centre, args.request.read_bytes(), str(args.request), broker=args.broker,
        valid_days=args.valid_days,
    )
    _write_bundle(args.out, issued.bundle)
    print(f"station {issued.station_id}: new key {issued.key_id.hex()} accepted; the old key "
          "stays valid until a packet signed by the new one arrives")
    print(f"bundle written: {args.out}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from centre import authority

    centre = authority.load(_dir(args))
    changed = authority.revoke(centre, args.station_id)
    state = "revoked" if changed else "was already revoked"
    print(f"station {args.station_id} {state}; CRL written: {centre.crl_path}")
    return 0


def _crl(args: argparse.Namespace) -> int:
    from centre import authority

    path = authority.write_crl(authority.load(_dir(args)))
    print(f"CRL written: {path}")
    return 0


def _broker_cert(args: argparse.Namespace) -> int:
    from centre import authority

    files = authority.issue_broker_cert(
        authority.load(_dir(args)), args.hostnames, args.out_dir, days=args.valid_days
    )
    print(f"keyfile {files.key}\ncertfile {files.cert}\ncafile {files.ca}\ncrlfile {files.crl}")
    print("require_certificate true\nuse_identity_as_username true")
    return 0
