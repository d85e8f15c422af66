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
    p.set_defaults(func=_broker_config)


def _broker_config(args: argparse.Namespace) -> int:
    from centre import authority
    from centre.broker import write_broker_dir

    host, _, port_text = args.listen.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CommandError(f"--listen {args.listen!r}: expected HOST:PORT", exit_code=2)
    centre_dir = args.dir if args.dir is not None else authority.DEFAULT_CENTRE_DIR
    # Run as root, mosquitto drops to the "mosquitto" user unless told whom to stay.
    user = getpass.getuser() if os.getuid() == 0 else None
    setup = write_broker_dir(
        authority.load(centre_dir), args.out_dir, host, int(port_text),
        hostnames=args.hostname, user=user, days=args.valid_days,
        receivers=args.receiver or ("receiver",),
    )
    print(f"config        {setup.conf}")
    for name, cert, key in setup.receivers:
        print(f"receiver      {name}: cert {cert}, key {key}")
    print(f"start with:   mosquitto -c {setup.conf}")
    print(f"revocation:   after `quantrac centre revoke`, copy {centre_dir / 'crl.pem'} to "
          f"{setup.crl} and restart mosquitto (it reads the CRL at start)")
    return 0
