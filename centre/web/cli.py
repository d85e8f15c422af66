"""``quantrac centre web`` (serve the dashboard and the public feed) and ``quantrac centre web
passwd`` (set the operator's password).

The dashboard is its own process beside ``centre serve`` (the receiver): rendering a page
never delays a packet's ack, and it opens the record store read-only. The password's scrypt
hash is kept in ``[web] password_file`` (default ``<centre_dir>/web.passwd``, mode 0600;
``protocol.web_auth``). The first line on stdout names the URLs (the port, when ``--listen``
gave port 0, for a supervisor or a test).
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from protocol.cli_error import UsageError, UserError


def register(actions: argparse._SubParsersAction[Any]) -> None:
    """Add ``web`` (and ``web passwd``) to ``quantrac centre``."""
    p = actions.add_parser("web", help="the centre dashboard (login) and the public open-data "
                           "page and feed")
    p.add_argument("--config", type=Path, help="centre TOML file (required)")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to serve on (default: "
                   "[web] listen; port 0 picks a free one)")
    p.set_defaults(func=_serve, logs_always=True)
    sub = p.add_subparsers(dest="web_command", metavar="passwd")
    pw = sub.add_parser("passwd", help="set the dashboard's password (stored as a hash)")
    pw.add_argument("--config", type=Path, dest="passwd_config", help="centre TOML file")
    pw.add_argument("--password-stdin", action="store_true",
                    help="read the password from the first line of stdin (for scripts)")
    pw.set_defaults(func=_passwd, logs_always=False)


def _passwd(args: argparse.Namespace) -> int:
    from centre.serve_config import load
    from protocol.web_auth import hash_password, save_hash
    from protocol.web_server import ask_new_password

    path_given = args.passwd_config or args.config
    if path_given is None:
        raise UsageError("quantrac centre web passwd: --config FILE is required")
    cfg = load(path_given)
    password = ask_new_password("the centre dashboard", args.password_stdin)
    path = cfg.web.password_path(cfg.centre_dir)
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: no such directory (for [web] password_file of "
                        f"{path_given})")
    save_hash(path, hash_password(password))
    print(f"password set ({path}, readable by its owner only); logged-in browsers stay "
          "logged in until `quantrac centre web` restarts")
    return 0


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    from centre.serve_config import load
    from centre.web.app import build
    from protocol.web_app import parse_listen
    from protocol.web_auth import load_hash
    from protocol.web_server import make_server, serve

    if args.config is None:
        raise UsageError("quantrac centre web: --config FILE is required")
    cfg = load(args.config)
    listen = args.listen or cfg.web.listen
    if listen is None:
        raise UsageError(f"{args.config}: no [web] listen and no --listen: where to serve "
                         "the dashboard (e.g. --listen 127.0.0.1:8090)")
    host, port = parse_listen(listen, "--listen" if args.listen else "web.listen")
    path = cfg.web.password_path(cfg.centre_dir)
    stored = load_hash(path)
    if stored is None:
        raise UserError(f"{path}: no password set for the centre dashboard: run "
                        f"`quantrac centre web passwd --config {args.config}` first")
    server = make_server(build(cfg, stored), host, port)
    bound, bound_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{bound}]" if ":" in bound else bound
    base = f"http://{shown}:{bound_port}"
    print(f"quantrac centre web: {base}/ (dashboard, login) {base}/public (public, "
          f"open data under {base}/open-data/v1/)", flush=True)
    signal.signal(signal.SIGTERM, _stop)
    serve(server)
    return 0
