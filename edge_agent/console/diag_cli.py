"""`quantrac diag`: technician diagnostics on a Modbus bus (scan, read, watch).

Plain text for an 80x24 serial console: every line fits 80 columns (long ones wrap, the end
of a message is never cut), answers on stdout, refusals on stderr. The logic is in
:mod:`edge_agent.console.diag`; this module parses arguments, finds the bus and prints.

Through the agent when it runs. The agent holds its serial ports (exclusively: a second
master on an RS-485 line garbles both), so when an agent answers on its control socket
(found with :func:`edge_agent.console.control_client.running_agent`: ``--agent``, else
``--config``'s, else ``$QUANTRAC_STATE_DIR``'s, else the default config's or state dir's)
``scan``, ``read`` and ``watch`` ask it: the scan and the read run on its bus between its
own polls, and ``watch`` shows what the agent itself last decoded, so a unit that answers the
agent is never called offline. Without an agent they open the port themselves (today's
behaviour); a port that something else holds is refused with the holder's pid and command,
and how to go through the agent.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.codec import DTYPES
from protocol.cli_error import CommandError, UsageError, UserError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("diag", help="technician diagnostics on a Modbus bus",
                            description="Ask a Modbus bus who is there and what they say; "
                                        "through the running agent when there is one.")
    dsub = parser.add_subparsers(dest="diag_command", metavar="ACTION")
    dsub.required = True

    scan = dsub.add_parser("scan", help="which unit ids answer, compared with the config")
    _bus_args(scan)
    scan.add_argument("--units", default="1-247", type=_units,
                      help="unit ids to try, e.g. 1-20 or 1,5,10-12 (default 1-247)")
    scan.add_argument("--timeout", type=float, default=None,
                      help="seconds to wait per unit (default 0.1 serial, 0.2 TCP)")
    scan.set_defaults(func=_fitted(_scan))

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
    read.add_argument("--profile", default=None,
                      help="name the registers with this profile's channels (default: the "
                           "profile of the config's device at --unit on that bus)")
    read.add_argument("--timeout", type=float, default=1.0)
    read.set_defaults(func=_fitted(_read))

    watch = dsub.add_parser("watch", help="a live table of every channel of a station")
    watch.add_argument("--config", type=Path, default=None,
                       help="station config (its agent, or its [[bus]] and [[device]] to poll "
                            "when no agent runs)")
    watch.add_argument("--agent", metavar="SOCKET", type=Path, default=None,
                       help="the running agent's control socket")
    watch.add_argument("--interval", type=float, default=1.0, help="redraw every S seconds")
    watch.add_argument("--once", action="store_true", help="one table, then exit")
    watch.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    watch.set_defaults(func=_fitted(_watch))


def _bus_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("bus (with an agent: --bus, or --port/--host naming its bus)")
    g.add_argument("--config", type=Path, default=None,
                   help="station config: its agent, its buses (--bus) and devices")
    g.add_argument("--agent", metavar="SOCKET", type=Path, default=None,
                   help="the running agent's control socket (default: found, see below)")
    g.add_argument("--bus", default=None, help="a [[bus]] name of the config or the agent")
    g.add_argument("--port", help="serial port, e.g. /dev/ttyUSB0")
    g.add_argument("--baud", type=int, default=9600)
    g.add_argument("--parity", choices=("N", "E", "O"), default="N")
    g.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    g.add_argument("--host", help="Modbus TCP host")
    g.add_argument("--tcp-port", type=int, default=502)
    p.epilog = ("The running agent is asked when one answers: --agent, else --config's "
                "socket, else $QUANTRAC_STATE_DIR/control.sock, else $QUANTRAC_CONFIG's "
                "(/etc/quantrac/station.toml), else /var/lib/quantrac/control.sock.")


#: what ``quantrac``'s main puts before each line of a refusal
ERROR_PREFIX = len("quantrac diag: error: ")


def _fitted(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``func`` whose refusals are wrapped to fit 80 columns with main's prefix (a long
    path or socket name must not push the advice off the screen's edge)."""
    from edge_agent.console.width import wrap

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except UserError as exc:
            text = "\n".join(w for line in str(exc).split("\n")
                             for w in wrap(line, "  ", 80 - ERROR_PREFIX))
            raise CommandError(text, exit_code=exc.exit_code) from None

    return run


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


# --------------------------------------------------------------------------- finding the bus


def _agent(args: argparse.Namespace) -> Path | None:
    """The socket of the agent to go through, or None: open the port here."""
    from edge_agent.console.control_client import running_agent

    sock = running_agent(args.agent, args.config)
    if sock is None and args.agent is not None:
        raise CommandError(f"{args.agent}: no agent answers there (give no --agent to open "
                           "the port directly)")
    return sock


def _agent_bus(args: argparse.Namespace, sock: Path) -> str:
    """Which of the agent's buses: --bus, --port or --host:--tcp-port; else its only bus."""
    if args.bus or args.port:
        return str(args.bus or args.port)
    if args.host:
        return f"{args.host}:{args.tcp_port}"
    from edge_agent.console.control_client import request

    buses = sorted({str(d["bus"]) for d in request(sock, {"op": "watch"}).get("devices", [])})
    if len(buses) == 1:
        return buses[0]
    raise UsageError(f"the agent at {sock} polls buses {', '.join(buses) or '(none)'}: "
                     "say which with --bus NAME")


def _agent_polls(args: argparse.Namespace, sock: Path) -> bool:
    """Does the agent poll the port asked for? A port it does not know (a second USB
    adapter, a bus without devices) is free: diag opens it itself. A bus named only by
    --bus is the agent's to answer for (its refusal says what it knows)."""
    if not (args.port or args.host):
        return True
    from edge_agent.console.control_client import request

    want = args.port or f"{args.host}:{args.tcp_port}"
    devices = request(sock, {"op": "watch"}).get("devices", [])
    return any(want in (d.get("bus"), d.get("port")) for d in devices)


def _config_bus(args: argparse.Namespace) -> tuple[Any, Any]:
    """(BusConfig or None, PollConfig or None) for a direct open."""
    if args.config is None:
        return None, None
    from edge_agent.config.reader import load_poll_config
    from edge_agent.console.agent_read import find_bus

    config = load_poll_config(args.config)
    want = args.bus or args.port or (f"{args.host}:{args.tcp_port}" if args.host else None)
    if want is None:
        if len(config.buses) != 1:
            raise UsageError(f"{args.config} has buses "
                             f"{', '.join(b.name for b in config.buses)}: say which with --bus")
        return config.buses[0], config
    try:
        return find_bus(config.buses, want), config
    except ValueError as exc:
        raise UsageError(f"{args.config}: {exc}") from None


def _transport(args: argparse.Namespace) -> Any:
    """The port opened here (no agent): from --port/--host, or --config's bus."""
    from drivers.serial_settings import SerialSettings
    from drivers.transport import RtuTransport, TcpTransport

    if args.port or args.host:
        if args.port and args.host:
            raise UsageError("give one of --port (serial) or --host (TCP), not both")
        if args.port:
            transport: Any = RtuTransport(SerialSettings(args.port, args.baud, args.parity,
                                                         args.stopbits))
        else:
            transport = TcpTransport(args.host, args.tcp_port)
    else:
        bus, _ = _config_bus(args)
        if bus is None:
            raise UsageError("give --port (serial), --host (TCP), or --config with --bus "
                             "(no running agent was found to ask)")
        from edge_agent.poll.build import open_transport

        transport = open_transport(bus)
    _open_or_refuse(transport)
    return transport


def _open_or_refuse(transport: Any) -> None:
    """Open a serial port now, so a port held by another program is refused with its holder
    (the agent, a second diag, a terminal) instead of showing up as every unit silent."""
    from drivers.transport import LinkError

    opener = getattr(transport, "open", None)
    if opener is None:
        return
    try:
        opener()
    except LinkError as exc:
        from edge_agent.console.port_lock import holder_of

        holder = holder_of(transport.name)
        if holder is None:
            raise CommandError(str(exc)) from None
        raise CommandError(
            f"{transport.name} is held by {holder}. If that is the agent, go through it: "
            "give --config STATION.toml or --agent SOCKET (or set $QUANTRAC_STATE_DIR), "
            "and diag asks the agent to do this on its bus.") from None


# --------------------------------------------------------------------------- scan


def _progress_line(bus: str, done: int, total: int, found: int) -> str:
    """The scan's progress, one line shorter than 80 columns (a ``\r`` overwrites it: a
    line that wrapped would scroll a copy per unit)."""
    tail = f": {done}/{total} unit ids, {found} answered (Ctrl-C stops)"
    room = 78 - len("scanning ") - len(tail)
    name = bus if len(bus) <= room else "..." + bus[-(room - 3):]
    return f"scanning {name}{tail}"


def _scan(args: argparse.Namespace) -> int:
    from edge_agent.console.diag import Configured, compare_with_config, scan_report
    from edge_agent.console.width import wrap

    tty = sys.stderr.isatty()

    def progress(bus: str, done: int, total: int, found: int) -> None:
        if tty:  # no progress into a file or a pipe: only the answer
            print(_progress_line(bus, done, total, found), end="\r", file=sys.stderr,
                  flush=True)

    sock = _agent(args)
    configured: list[tuple[str, int, str]] | None
    if sock is not None and _agent_polls(args, sock):
        hits, complete, bus_name, configured = _scan_via_agent(args, sock, progress)
        head = f"scan of bus {bus_name} by the running agent (between its own polls)"
    else:
        hits, complete, bus_name, configured = _scan_here(args, progress)
        head = f"scan of {bus_name}"
    if tty:
        print(" " * 79, end="\r", file=sys.stderr, flush=True)
    for line in [*wrap(head), *scan_report(hits, complete)]:
        print(line)
    if configured is not None:
        print()
        print("compared with the config:")
        for line in compare_with_config(hits, [Configured(*c) for c in configured],
                                        args.units):
            print(line)
    return 0 if hits else 1


def _scan_via_agent(args: argparse.Namespace, sock: Path, progress: Any) -> tuple[
        list[Any], bool, str, list[tuple[str, int, str]]]:
    from edge_agent.console.control_client import ControlError, request
    from edge_agent.console.diag import hit_from_dict

    bus = _agent_bus(args, sock)
    msg: dict[str, Any] = {"op": "scan", "bus": bus, "units": args.units}
    if args.timeout:
        msg["timeout"] = args.timeout
    # a silent unit costs one timeout, an answering one a few reads; generous on top
    limit = len(args.units) * (args.timeout or 0.2) * 2 + 60
    result: dict[str, Any] = {}
    error: list[BaseException] = []

    def ask() -> None:
        try:
            result.update(request(sock, msg, timeout=limit))
        except BaseException as exc:  # handed to the main thread
            error.append(exc)

    worker = threading.Thread(target=ask, name="diag scan", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.5)
        try:
            state = request(sock, {"op": "scan_progress"}, timeout=2.0).get("scans", {})
        except ControlError:
            continue
        for name, p in state.items():
            progress(name, p["done"], p["total"], p["found"])
    if error:
        raise error[0]
    if not result.get("ok"):
        raise CommandError(f"the agent at {sock} refused the scan: {result.get('error')}")
    configured = [(str(d["device"]), int(d["unit"]), str(d["profile"]))
                  for d in result.get("devices", [])]
    return ([hit_from_dict(h) for h in result["hits"]], bool(result["complete"]),
            str(result["bus"]), configured)


def _scan_here(args: argparse.Namespace, progress: Any) -> tuple[
        list[Any], bool, str, list[tuple[str, int, str]] | None]:
    from drivers.profile import builtin_profile, builtin_profile_names
    from edge_agent.console.diag import scan

    bus, config = None, None
    if args.config is not None:
        try:
            bus, config = _config_bus(args)
        except UsageError:
            if not (args.port or args.host):
                raise  # the port comes from the config, so it must say which
    transport = _transport(args)
    timeout = args.timeout or (0.1 if getattr(transport, "settings", None) else 0.2)
    profiles = {n: builtin_profile(n) for n in builtin_profile_names()}
    configured = None
    if config is not None and bus is not None:
        devices = [d for b, d in config.devices if b == bus.name]
        profiles.update((d.profile.name, d.profile) for d in devices)
        configured = [(d.name, d.unit, d.profile.name) for d in devices]
    try:
        hits, complete = scan(transport, args.units, list(profiles.values()), timeout,
                              lambda d, t, f: progress(transport.name, d, t, f))
    finally:
        transport.close()
    return hits, complete, transport.name, configured


# --------------------------------------------------------------------------- read


def _profile_channels(args: argparse.Namespace, sock: Path | None,
                      agent_bus: str | None) -> list[Any]:
    """The channel specs to name the read registers with: --profile, else the profile of the
    config's (or the agent's) device at --unit on that bus; [] when none is known."""
    from drivers.profile import builtin_profile

    if args.profile:
        try:
            return list(builtin_profile(args.profile).channels)
        except (KeyError, ValueError, OSError) as exc:
            raise UsageError(f"--profile {args.profile}: {exc}") from None
    if args.config is not None:
        try:
            bus, config = _config_bus(args)
        except UsageError:
            bus, config = None, None
        if bus is not None and config is not None:
            for b, d in config.devices:
                if b == bus.name and d.unit == args.unit:
                    return list(d.profile.channels)
    if sock is not None:
        from edge_agent.console.control_client import ControlError, request

        try:
            devices = request(sock, {"op": "watch"}).get("devices", [])
        except ControlError:
            return []
        for d in devices:  # the agent named the bus it read on
            if int(d["unit"]) == args.unit and d["bus"] == agent_bus:
                try:
                    return list(builtin_profile(str(d["profile"])).channels)
                except (KeyError, ValueError, OSError):
                    return []
    return []


def _read(args: argparse.Namespace) -> int:
    from drivers.modbus import ModbusError, ModbusExceptionResponse
    from edge_agent.console.diag import (
        channel_table,
        exception_hint,
        pair_table,
        typed_values,
        word_table,
    )
    from edge_agent.console.width import wrap

    what = (f"unit {args.unit} function {args.function:02d} register {args.register} "
            f"count {args.count}")
    if not 1 <= args.count <= 125:
        raise UsageError(f"--count {args.count}: a read is 1..125 registers")
    sock = _agent(args)
    via, agent_bus = "", None
    if sock is not None and _agent_polls(args, sock):  # the agent owns the port: ask it
        from edge_agent.console.control_client import request

        bus = _agent_bus(args, sock)
        answer = request(sock, {"op": "read", "bus": bus, "unit": args.unit,
                                "function": args.function, "address": args.register,
                                "count": args.count, "timeout": args.timeout},
                         timeout=args.timeout + 10)
        if not answer.get("ok"):
            error = str(answer.get("error"))
            code = answer.get("exception")
            raise CommandError(f"{what} (via the agent): {error}"
                               + exception_hint(code, args.function))
        words = [int(w) for w in answer["words"]]
        agent_bus = str(answer.get("bus"))
        via = f", read by the running agent on bus {agent_bus}"
    else:
        transport = _transport(args)
        try:
            words = transport.read_registers(args.unit, args.function, args.register,
                                             args.count, args.timeout)
        except ModbusExceptionResponse as exc:
            raise CommandError(f"{what}: {exc}"
                               + exception_hint(exc.code, args.function)) from None
        except ModbusError as exc:
            raise CommandError(f"{what}: {exc}") from None
        finally:
            transport.close()
    for line in wrap(f"unit {args.unit} function {args.function:02d} registers "
                     f"{args.register}..{args.register + args.count - 1}{via}"):
        print(line)
    channels = [c for c in _profile_channels(args, sock, agent_bus) if c.function == args.function]
    if channels:
        lines = channel_table(args.register, words, channels)
    else:
        lines = word_table(args.register, words)
    for line in lines:
        print(line)
    if args.type:
        print(f"{args.type}, byte order {args.byte_order}, word order {args.word_order}:")
        for line in typed_values(args.register, words, args.type, args.byte_order,
                                 args.word_order):
            print(line)
    elif not channels:
        if len(words) <= 4:
            for line in pair_table(args.register, words):
                print(line)
        else:  # a pair table of 9 words is 17 more lines: on request only
            print("(32-bit values: --type float32 --word-order big|little, or --count 2)")
    return 0


# --------------------------------------------------------------------------- watch


def _watch(args: argparse.Namespace) -> int:
    sock = _agent(args)
    if sock is not None:
        return _watch_agent(args, sock)
    if args.config is None:
        raise UsageError("no running agent found to ask: give --config STATION.toml (its "
                         "[[bus]] and [[device]] are polled here), or --agent SOCKET")
    return _watch_here(args)


def _agent_rows(answer: dict[str, Any]) -> tuple[list[Any], list[str]]:
    from edge_agent.console.diag import Row
    from edge_agent.console.width import wrap
    from protocol.model import Sample, Status

    rows, problems = [], []
    for d in answer.get("devices", []):
        for c in d["channels"]:
            sample = None
            if c.get("t") is not None:
                value = c["value"] if c["value"] is not None else float("nan")
                sample = Sample(c["channel"], float(c["t"]), float(value),
                                Status[str(c["status"]).upper()])
            rows.append(Row(d["device"], c["channel"], c["unit"], sample))
        if d.get("consecutive_failures"):
            problems += wrap(f"! {d['device']} unit {d['unit']}: {d.get('last_error')}")
        elif d.get("last_good") is None:
            problems += wrap(f"! {d['device']} unit {d['unit']}: no answer yet")
    return rows, problems


def _watch_agent(args: argparse.Namespace, sock: Path) -> int:
    from edge_agent.console.control_client import request
    from edge_agent.console.diag import watch_table

    out = sys.stdout
    tty = out.isatty()
    end = None if args.duration is None else time.monotonic() + args.duration
    try:
        while True:
            answer = request(sock, {"op": "watch"})
            if not answer.get("ok"):
                raise CommandError(f"the agent at {sock}: {answer.get('error')}")
            rows, problems = _agent_rows(answer)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            lines = [f"diag watch {stamp}, the running agent's view"
                     + ("" if args.once else " (Ctrl-C stops)"), *watch_table(rows, time.time()),
                     *problems]
            if tty and not args.once:
                out.write("\x1b[H\x1b[J")
            out.write("\n".join(lines) + "\n")
            out.flush()
            if args.once or (end is not None and time.monotonic() >= end):
                return 0
            out.write("" if tty else "\n")
            time.sleep(args.interval if end is None
                       else max(0.0, min(args.interval, end - time.monotonic())))
    except KeyboardInterrupt:
        return 0


def _watch_here(args: argparse.Namespace) -> int:
    from edge_agent.config.reader import load_poll_config
    from edge_agent.console.diag import Row, watch_table
    from edge_agent.console.width import wrap
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

    buses = build_buses(config)
    try:
        for bus in buses:  # a port another program holds: refused, not "every unit offline"
            _open_or_refuse(bus.transport)
    except CommandError:
        for bus in buses:
            bus.transport.close()
        raise
    if args.once:
        for bus in buses:
            for device in bus.devices:
                one = DevicePoller(device, bus.transport.name, time.time, config.policy)
                for s in one.poll(bus.transport):
                    latest[(device.name, s.channel)] = s
                if one.health.last_error:
                    for line in wrap(f"{device.name}: {one.health.last_error}"):
                        print(line, file=sys.stderr)
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
    poller = Poller(buses, sink, time.time, config.policy)
    out = sys.stdout
    tty = out.isatty()
    end = None if args.duration is None else time.monotonic() + args.duration
    poller.start()
    try:
        while True:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            lines = [f"quantrac diag watch  {stamp}  (Ctrl-C stops)", *table()]
            failing = [h for h in poller.health() if h.consecutive_failures]
            for h in failing:
                lines += wrap(f"! {h.device} unit {h.unit}: {h.last_error}")
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
