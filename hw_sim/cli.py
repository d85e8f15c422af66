"""`quantrac sim`: serve a simulated station, and switch its faults while it runs.

``quantrac sim station --config FILE [--tcp-port N] [--pty] [--rtu-tcp-port N] [--baud 9600]
[--control SOCKET]`` prints one JSON line first (``{"tcp_port": ..., "pty": ...,
"rtu_tcp_port": ..., "control": ..., "units": ...}``)
so a test or the demo can read where to connect, then serves until interrupted (or for
``--duration`` seconds). ``quantrac sim fault [--control SOCKET] --unit U --fault NAME on|off``
switches a fault on a running station.

Both default to the same control socket (:func:`default_control`), so the two commands a
person types in two terminals find each other without a path to copy. It is per user: in
``$XDG_RUNTIME_DIR`` (private to the user already) or else ``/tmp/quantrac-sim-<uid>.sock``,
so two users' simulators never meet. One user's second simulator on the default path is
refused with the first one's name and pid (``hw_sim.server``) when its ``--control`` was given;
on the default path it runs without a control socket and logs why (two simulators for two
buses must not fail each other; only the second one's faults cannot be switched).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import tempfile
import threading
import types
from pathlib import Path
from typing import Any

from hw_sim.faults import FAULTS

log = logging.getLogger("quantrac.hw_sim.cli")


def default_control() -> Path:
    """The control socket ``sim station`` serves and ``sim fault`` asks when none is given."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "quantrac-sim.sock"
    return Path(tempfile.gettempdir()) / f"quantrac-sim-{os.getuid()}.sock"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("sim", help="simulated analysers and stations")
    sim_sub = parser.add_subparsers(dest="sim_command", metavar="SIM_COMMAND")
    sim_sub.required = True

    st = sim_sub.add_parser("station", help="serve a simulated station over Modbus TCP / RTU")
    st.add_argument("--config", required=True, help="station config (TOML)")
    st.add_argument("--tcp-port", type=int, default=None,
                    help="Modbus TCP port on 127.0.0.1 (0 picks a free one; default 0 "
                         "unless only --pty is given)")
    st.add_argument("--pty", action="store_true", help="serve the RTU units on a socat pty pair")
    st.add_argument("--pty-link", default=None, help="path of the pty end clients open")
    st.add_argument("--rtu-tcp-port", type=int, default=None,
                    help="also serve the RTU units as raw RTU frames on this TCP port on "
                         "127.0.0.1, as a serial device server does (0 picks a free one)")
    st.add_argument("--baud", type=int, default=None,
                    help="emulate the wire time of an RTU line at this baud rate")
    st.add_argument("--control", type=Path, default=None,
                    help="Unix socket for `quantrac sim fault` (default "
                         f"{default_control()}; when another simulator serves that one, "
                         "this one runs without, and says so)")
    st.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    st.set_defaults(func=_station, logs_always=True)  # a service: its log is its output

    ft = sim_sub.add_parser("fault", help="switch a fault of a running simulated station")
    ft.add_argument("--control", type=Path, default=default_control(),
                    help="the control socket the station was started with (default "
                         "%(default)s, as `sim station`'s)")
    ft.add_argument("--unit", type=int, required=True)
    ft.add_argument("--fault", required=True, choices=FAULTS)
    ft.add_argument("state", choices=("on", "off"))
    ft.add_argument("--code", type=int, default=4, help="exception code (fault 'exception')")
    ft.add_argument("--delay", type=float, default=2.0, help="seconds (fault 'slow')")
    ft.set_defaults(func=_fault)


def _station(args: argparse.Namespace) -> int:
    from hw_sim.server import ControlSocketInUse, running_station

    tcp_port = args.tcp_port if args.tcp_port is not None or not args.pty else None
    if args.tcp_port is None and not args.pty:
        tcp_port = 0
    stop = threading.Event()

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    def serve(control: Path | None) -> contextlib.AbstractContextManager[Any]:
        return running_station(args.config, tcp_port=tcp_port, pty=args.pty, baud=args.baud,
                               control=control, pty_link=args.pty_link,
                               rtu_tcp_port=args.rtu_tcp_port)

    with contextlib.ExitStack() as stack:
        try:
            sim = stack.enter_context(serve(args.control or default_control()))
        except ControlSocketInUse as exc:
            if args.control is not None:  # asked for by name: the person must choose another
                raise
            # the default is taken by another simulator (two buses, two simulators): this one
            # still serves its analysers; only its faults cannot be switched
            log.warning("sim_control_default_taken", extra={
                "reason": str(exc), "effect": "this simulator runs without a control socket; "
                "`quantrac sim fault` reaches the other one; give --control PATH to switch "
                "this one's faults"})
            sim = stack.enter_context(serve(None))
        print(json.dumps(sim.endpoints()), flush=True)
        stop.wait(args.duration)
    return 0


def _fault(args: argparse.Namespace) -> int:
    from hw_sim.server import send_control
    from protocol.cli_error import CommandError

    answer = send_control(args.control, {"op": "fault", "unit": args.unit, "fault": args.fault,
                                         "on": args.state == "on", "code": args.code,
                                         "delay": args.delay})
    if not answer.get("ok"):  # the simulator's refusal, reported by the one CLI error path
        raise CommandError(f"fault: {answer.get('error')}")
    print(f"unit {args.unit}: {args.fault} {args.state}")
    return 0
