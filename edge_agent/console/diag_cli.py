"""`quantrac diag`: technician diagnostics on a Modbus bus (scan, read, watch).

Plain text for an 80x24 serial console. The logic is in :mod:`edge_agent.console.diag`; this module
parses arguments, opens the bus and prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from drivers.codec import DTYPES


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("diag", help="technician diagnostics on a Modbus bus",
                            description="Ask a Modbus bus who is there and what they say.")
    dsub = parser.add_subparsers(dest="diag_command", metavar="ACTION")
    dsub.required = True

    scan = dsub.add_parser("scan", help="which unit ids answer, and what they look like")
    _bus_args(scan)
    scan.add_argument("--units", default="1-247", type=_units,
                      help="unit ids to try, e.g. 1-20 or 1,5,10-12 (default 1-247)")
    scan.add_argument("--timeout", type=float, default=None,
                      help="seconds to wait per unit (default 0.1 serial, 0.2 TCP)")
    scan.set_defaults(func=_scan)

    read = dsub.add_parser("read", help="raw words of some registers, and their meaning")
    _bus_args(read)
    read.add_argument("--unit", type=int, required=True)
    read.add_argument("--register", type=int, required=True,
                      help="0-based protocol address, as sent on the wire")
    read.add_argument("--count", type=int, default=2)
    read.add_argument("--function", type=int, choices=(3, 4), default=3,
                      help="3 holding registers (default), 4 input registers")
    read.add_argument("--type", choices=DTYPES, default=None,
                      help="decode as this type (default: show the usual readings)")
    read.add_argument("--byte-order", choices=("big", "little"), default="big")
    read.add_argument("--word-order", choices=("big", "little"), default="big")
    read.add_argument("--timeout", type=float, default=1.0)
    read.add_argument("--agent", metavar="SOCKET", default=None,
                      help="let the running agent do the read on its bus, between its own "
                           "polls (default: automatically when $QUANTRAC_STATE_DIR/control.sock "
                           "answers)")
    read.add_argument("--bus", default=None,
                      help="with an agent: its bus name (default: --port, or --host:--tcp-port)")
    read.set_defaults(func=_read)

    watch = dsub.add_parser("watch", help="a live table of every channel of a station")
    watch.add_argument("--config", required=True, help="TOML with [[bus]] and [[device]]")
    watch.add_argument("--interval", type=float, default=1.0, help="redraw every S seconds")
    watch.add_argument("--once", action="store_true", help="poll every device once, print")
    watch.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    watch.set_defaults(func=_watch)


def _bus_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("bus (one of --port or --host)")
    g.add_argument("--port", help="serial port, e.g. /dev/ttyUSB0")
    g.add_argument("--baud", type=int, default=9600)
    g.add_argument("--parity", choices=("N", "E", "O"), default="N")
    g.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    g.add_argument("--host", help="Modbus TCP host")
    g.add_argument("--tcp-port", type=int, default=502)


def _units(text: str) -> list[int]:
    units: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a unit id or a range") from None
        if not 1 <= a <= b <= 247:
            raise argparse.ArgumentTypeError(f"{part!r}: unit ids are 1..247, low to high")
        units.extend(range(a, b + 1))
    return units


def _transport(args: argparse.Namespace) -> Any:
    from drivers.serial_settings import SerialSettings
    from drivers.transport import RtuTransport, TcpTransport

    if bool(args.port) == bool(args.host):
        raise SystemExit("quantrac diag: give exactly one of --port (serial) or --host (TCP)")
    if args.port:
        return RtuTransport(SerialSettings(args.port, args.baud, args.parity, args.stopbits))
    return TcpTransport(args.host, args.tcp_port)


def _scan(args: argparse.Namespace) -> int:
    from drivers.profile import builtin_profile, builtin_profile_names
    from edge_agent.console.diag import scan, scan_report

    transport = _transport(args)
    timeout = args.timeout or (0.1 if args.port else 0.2)
    profiles = [builtin_profile(n) for n in builtin_profile_names()]
    tty = sys.stderr.isatty()

    def progress(done: int, total: int, found: int) -> None:
        if tty or done == total or done % 50 == 0:
            end = "\r" if tty and done < total else "\n"
            print(f"scanning {transport.name}: {done}/{total} unit ids, {found} answered"
                  f"  (Ctrl-C stops)", end=end, file=sys.stderr, flush=True)

    try:
        hits, complete = scan(transport, args.units, profiles, timeout, progress)
    finally:
        transport.close()
    if tty:
        print(file=sys.stderr)
    for line in scan_report(hits, complete):
        print(line)
    return 0 if hits else 1


def _agent_socket(args: argparse.Namespace) -> Path | None:
    """The running agent's control socket, if the read should go through it."""
    from edge_agent.console.control_client import agent_running

    if args.agent:
        return Path(args.agent)
    default = Path(os.environ.get("QUANTRAC_STATE_DIR", "/var/lib/quantrac")) / "control.sock"
    return default if default.exists() and agent_running(default) else None


def _read(args: argparse.Namespace) -> int:
    from drivers.modbus import ModbusError
    from edge_agent.console.diag import pair_table, typed_values, word_table

    failed = (f"unit {args.unit} function {args.function:02d} register {args.register} "
              f"count {args.count}")
    sock = _agent_socket(args)
    if sock is not None:  # the agent owns the port: ask it instead of fighting for it
        from edge_agent.console.control_client import ControlError, request

        bus = args.bus or args.port or (f"{args.host}:{args.tcp_port}" if args.host else None)
        if bus is None:
            raise SystemExit("quantrac diag: with an agent, give --bus (or --port / --host)")
        try:
            answer = request(sock, {"op": "read", "bus": bus, "unit": args.unit,
                                    "function": args.function, "address": args.register,
                                    "count": args.count, "timeout": args.timeout},
                             timeout=args.timeout + 10)
        except ControlError as exc:
            print(f"{failed}: {exc}")
            return 1
        if not answer.get("ok"):
            print(f"{failed} (via the agent): {answer.get('error')}")
            return 1
        words = [int(w) for w in answer["words"]]
        print(f"(read by the running agent on bus {answer.get('bus')})")
    else:
        transport = _transport(args)
        try:
            words = transport.read_registers(args.unit, args.function, args.register,
                                             args.count, args.timeout)
        except ModbusError as exc:
            print(f"{failed}: {exc}")
            return 1
        finally:
            transport.close()
    print(f"unit {args.unit} function {args.function:02d} registers {args.register}.."
          f"{args.register + args.count - 1}")
    for line in word_table(args.register, words):
        print(line)
    if args.type:
        print(f"{args.type}, byte order {args.byte_order}, word order {args.word_order}:")
        for line in typed_values(args.register, words, args.type, args.byte_order,
                                 args.word_order):
            print(line)
    else:
        for line in pair_table(args.register, words):
            print(line)
    return 0


def _watch(args: argparse.Namespace) -> int:
    from edge_agent.config.reader import load_poll_config
    from edge_agent.console.diag import Row, watch_table
    from edge_agent.poll.build import build_buses
    from edge_agent.poll.poller import DevicePoller, Poller
    from protocol.model import Sample

    config = load_poll_config(args.config)
    latest: dict[tuple[str, str], Sample] = {}
    lock = threading.Lock()
    rows_of = [(d.name, ch, d.profile.channel(ch).unit) for _, d in config.devices
               for ch in d.channel_names]

    def table() -> list[str]:
        with lock:
            rows = [Row(dev, ch, unit, latest.get((dev, ch))) for dev, ch, unit in rows_of]
        return watch_table(rows, time.time())

    if args.once:
        for bus in build_buses(config):
            for device in bus.devices:
                one = DevicePoller(device, bus.transport.name, time.time, config.policy)
                for s in one.poll(bus.transport):
                    latest[(device.name, s.channel)] = s
                if one.health.last_error:
                    print(f"{device.name}: {one.health.last_error}"[:80], file=sys.stderr)
            bus.transport.close()
        for line in table():
            print(line)
        return 0

    def sink(device: str, samples: list[Sample]) -> None:
        with lock:
            for s in samples:
                latest[(device, s.channel)] = s

    # the table shows every failure; log lines would scribble over it. Quietened for the watch
    # only: the levels are put back after, so a caller in the same process (a test, a console
    # that runs watch then something else) still gets its log lines.
    quiet = [logging.getLogger(n) for n in ("quantrac.edge_agent.poller",
                                            "quantrac.drivers.transport")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    poller = Poller(build_buses(config), sink, time.time, config.policy)
    out = sys.stdout
    tty = out.isatty()
    end = None if args.duration is None else time.monotonic() + args.duration
    poller.start()
    try:
        while True:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            lines = [f"quantrac diag watch  {stamp}  (Ctrl-C stops)", *table()]
            failing = [h for h in poller.health() if h.consecutive_failures]
            lines += [f"! {h.device} unit {h.unit}: {h.last_error}"[:80] for h in failing]
            if tty:
                out.write("\x1b[H\x1b[J")
            out.write("\n".join(lines) + "\n" + ("" if tty else "\n"))
            out.flush()
            if end is not None and time.monotonic() >= end:
                break
            time.sleep(args.interval if end is None
                       else max(0.0, min(args.interval, end - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        poller.stop()
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
    return 0
