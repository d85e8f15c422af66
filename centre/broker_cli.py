"""`quantrac centre broker-config`: everything a Mosquitto broker for this centre needs."""

from __future__ import annotations

import argparse
import getpass
import os
from pathlib import Path
from typing import Any

from protocol.cli_error import CommandError


def register(actions: argparse._SubParsersAction[Any]) -> None:
    p = actions.add_parser(
        "broker-config",
        help="write a Mosquitto config (TLS, client certificates, per-station ACL) and the "
        "receivers' certificate",
    )
    p.add_argument("--dir", type=Path, default=None,
                   help="centre dir (default $QUANTRAC_CENTRE_DIR or /var/lib/quantrac-centre)")
    p.add_argument("--out-dir", type=Path, required=True, help="directory for the broker's files")
    p.add_argument("--listen", default="127.0.0.1:8883", help="HOST:PORT of the TLS listener")
    p.add_argument("--hostname", action="append", default=None,
                   help="name or IP stations connect to (repeatable; default the listen host)")
    p.add_argument("--valid-days", type=int, default=730)
    p.add_argument("--receiver", action="append", default=None, metavar="NAME",
                   help="a receiver identity (repeatable; default one, 'receiver'): each "
                   "receiver process needs its own certificate, since the broker makes the "
                   "certificate's CN the MQTT client id")
    p.add_argument("--bridge-identity", action="append", default=None, metavar="NAME",
                   help="(national broker) let the provincial bridge NAME connect: issues "
                   "bridge-NAME.crt/.key (CN bridge:NAME) to hand to that province (repeatable)")
    b = p.add_argument_group("bridge to a national broker (provincial broker)")
    b.add_argument("--bridge", metavar="HOST:PORT", default=None,
                   help="forward every station's up/state to this national broker and its "
                   "commands back")
    b.add_argument("--bridge-name", metavar="NAME", default=None,
                   help="this province's bridge name, as given to --bridge-identity there")
    b.add_argument("--bridge-cert", type=Path, default=None,
                   help="the bridge certificate the national centre issued")
    b.add_argument("--bridge-key", type=Path, default=None, help="its private key")
    b.add_argument("--bridge-ca", type=Path, default=None,
                   help="CA of the national broker's certificate (default: this centre's CA)")
    p.set_defaults(func=_broker_config)


def _host_port(flag: str, text: str) -> tuple[str, int]:
    host, _, port_text = text.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CommandError(f"{flag} {text!r}: expected HOST:PORT", exit_code=2)
    return host.strip("[]"), int(port_text)


def _broker_config(args: argparse.Namespace) -> int:
    from centre import authority
    from centre.broker import Bridge, write_broker_dir

    host, port = _host_port("--listen", args.listen)
    centre_dir = args.dir if args.dir is not None else authority.DEFAULT_CENTRE_DIR
    bridge = None
    if args.bridge is not None:
        missing = [f for f, v in (("--bridge-name", args.bridge_name),
                                  ("--bridge-cert", args.bridge_cert),
                                  ("--bridge-key", args.bridge_key)) if v is None]  # fmt: skip
        if missing:
            raise CommandError(f"--bridge needs {', '.join(missing)}", exit_code=2)
        bridge_host, bridge_port = _host_port("--bridge", args.bridge)
        bridge = Bridge(args.bridge_name, bridge_host, bridge_port,
                        (args.bridge_ca or centre_dir / "ca.crt").absolute(),
                        args.bridge_cert.absolute(), args.bridge_key.absolute())  # fmt: skip
    elif any(v is not None for v in (args.bridge_name, args.bridge_cert, args.bridge_key,
                                     args.bridge_ca)):  # fmt: skip
        raise CommandError("--bridge-name/-cert/-key/-ca need --bridge HOST:PORT", exit_code=2)
    # Run as root, mosquitto drops to the "mosquitto" user unless told whom to stay.
    user = getpass.getuser() if os.getuid() == 0 else None
    setup = write_broker_dir(
        authority.load(centre_dir), args.out_dir, host, port,
        hostnames=args.hostname, user=user, days=args.valid_days,
        receivers=args.receiver or ("receiver",),
        bridge_identities=args.bridge_identity or (), bridge=bridge,
    )
    print(f"config        {setup.conf}")
    for name, cert, key in setup.receivers:
        print(f"receiver      {name}: cert {cert}, key {key}")
    for name, cert, key in setup.bridge_identities:
        print(f"bridge in     {name}: cert {cert}, key {key} (give both to that province)")
    if bridge is not None:
        print(f"bridge out    {bridge.name} -> {bridge.host}:{bridge.port}")
    print(f"start with:   mosquitto -c {setup.conf}")
    print(f"revocation:   after `quantrac centre revoke`, copy {centre_dir / 'crl.pem'} to "
          f"{setup.crl} and restart mosquitto (it reads the CRL at start)")
    return 0
