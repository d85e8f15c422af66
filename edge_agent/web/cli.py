"""``quantrac web`` (serve the station page) and ``quantrac web passwd`` (set its password).

Serving needs two things the installer chose: where (``[web] listen`` in the config, or
``--listen``; off by default) and the password (``web passwd``; only its scrypt hash is kept,
in the state directory as ``web.passwd``, mode 0600; ``protocol.web_auth``). Without either
it refuses, saying which. It is a separate process from the agent (``quantrac run``): a page
being rendered must never delay a poll, and the page has no write access to anything the
agent owns beyond reading its outbox and asking its status. The first line on stdout is the
URL, so a supervisor or a test learns the port when ``--listen`` gave port 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from protocol.cli_error import UsageError, UserError

DEFAULT_CONFIG = Path(os.environ.get("QUANTRAC_CONFIG", "/etc/quantrac/station.toml"))
PASSWORD_FILE = "web.passwd"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("web", help="the station's own web page (read-only, behind a password)",
                       description="Serve the station page: live values, plots with invalid "
                       "windows and their reasons, outbox and uplinks, clock, exceedances, "
                       "export download. `quantrac web passwd` sets its password.")
    p.add_argument("--config", type=Path, help=f"station config (default $QUANTRAC_CONFIG or "
                   f"{DEFAULT_CONFIG})")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to serve on (default: "
                   "[web] listen in the config; port 0 picks a free one)")
    p.set_defaults(func=_serve, logs_always=True)
    actions = p.add_subparsers(dest="web_command", metavar="passwd")
    pw = actions.add_parser("passwd", help="set the page's password (stored as a hash)")
    pw.add_argument("--config", type=Path, dest="passwd_config",
                    help="station config (its state directory)")
    pw.add_argument("--password-stdin", action="store_true",
                    help="read the password from the first line of stdin (for scripts)")
    pw.set_defaults(func=_passwd, logs_always=False)


def _config(path: Path | None) -> Any:
    from edge_agent.config.reader import load_config

    return load_config(path or DEFAULT_CONFIG)


def _passwd(args: argparse.Namespace) -> int:
    from protocol.web_auth import hash_password, save_hash
    from protocol.web_server import ask_new_password

    cfg = _config(args.passwd_config or args.config)
    password = ask_new_password("the station page", args.password_stdin)
    path = cfg.agent.state_dir / PASSWORD_FILE
    if not cfg.agent.state_dir.is_dir():
        raise UserError(f"{cfg.agent.state_dir}: no such directory ([agent] state_dir of "
                        f"{cfg.source})")
    save_hash(path, hash_password(password))
    print(f"password set ({path}, readable by its owner only); logged-in browsers stay "
          "logged in until `quantrac web` restarts")
    return 0


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def warm_up(source: Any, now: float) -> None:
    """Read and check the records of the longest default plot (7 days) before serving, so
    the first page costs what every later one does (``bench/web_page.py``: the first read
    is most of a page's CPU); a missing or unreadable outbox is the page's to report."""
    from edge_agent.web.app import SPANS, page_width, widths
    from protocol.record_filter import RecordFilter

    span = max(SPANS.values())
    width = page_width(source.cfg, widths(source.cfg) or [300], span, None)
    with contextlib.suppress(UserError):
        source.records(RecordFilter(t0=now - span - width, window_s=width))


def _serve(args: argparse.Namespace) -> int:
    from edge_agent.web.app import build
    from edge_agent.web.source import StationSource
    from protocol.web_app import parse_listen
    from protocol.web_auth import load_hash
    from protocol.web_server import make_server, serve

    cfg = _config(args.config)
    if args.listen is not None:
        host, port = parse_listen(args.listen, "--listen")
    elif cfg.web is not None:
        host, port = cfg.web.host, cfg.web.port
    else:
        raise UsageError(f"{cfg.source}: the station page is off (no [web] table): add "
                         "[web] listen = \"<LAN address>:8080\" or give --listen")
    stored = load_hash(cfg.agent.state_dir / PASSWORD_FILE)
    if stored is None:
        raise UserError(f"{cfg.agent.state_dir / PASSWORD_FILE}: no password set for the "
                        f"station page: run `quantrac web passwd --config {cfg.source}` first")
    source = StationSource(cfg)
    warm_up(source, time.time())
    server = make_server(build(cfg, stored, source), host, port)
    bound_host, shown_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"quantrac web: http://{shown}:{shown_port}/ (station {cfg.station.id})", flush=True)
    signal.signal(signal.SIGTERM, _stop)
    serve(server)
    return 0
