"""The simulated station on real transports: Modbus TCP on loopback, Modbus RTU on a pty pair,
and RTU frames on a TCP socket through an emulated serial device server.

The RTU line is a ``socat`` pty pair: the simulator opens one end with pyserial, the client
(the poller, pymodbus, mbpoll) opens the other, exactly as it would open /dev/ttyUSB0. Several
unit ids share that one bus; the simulator answers only its own and stays silent for others.
With ``baud`` set, no response is written before the request and the response would have taken
on a real line at that rate (drivers.modbus wire time), so a pty behaves like a 9600-baud bus.

A serial device server (an RS-485-to-Ethernet converter in TCP server mode) is emulated as
one: the station's RTU units are served on a pty pair of their own, and the converter
(:class:`SerialDeviceServer`) opens the other end as its UART and relays bytes, unframed,
between it and every TCP client, as the common 1-2 port converters do (what the line says
goes to every connected client; what any client sends goes onto the line). So a master
reaching it meets exactly what it would through the real box: the same RTU slave, the same
line timing (``baud``), and no MBAP header.

A control channel (a Unix socket taking one JSON object per line) lets another process switch
faults while the station runs: ``quantrac sim fault`` speaks it. Two simulators must not share
one socket path: the second would unlink the first one's socket and take its faults, so a
path a live simulator still answers on is refused (:class:`ControlSocketInUse`); a socket file
nobody answers on is what a killed simulator left, and is replaced.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import json
import logging
import os
import select
import shutil
import socket
import socketserver
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import serial

from drivers import modbus
from hw_sim.config import SimStationConfig, load_station
from hw_sim.slave import Served, SimStation
from protocol.cli_error import UserError
from protocol.clock import Clock

log = logging.getLogger("quantrac.hw_sim.server")

_POLL = 0.05  # how often idle loops look at the stop flag


# --------------------------------------------------------------------------- TCP

class _TcpHandler(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(_POLL)
        stop = self.server.stop
        buf = b""
        while not stop.is_set():
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= modbus.MBAP_LENGTH:
                try:
                    total = modbus.tcp_frame_length(buf[:modbus.MBAP_LENGTH])
                except modbus.FrameError as exc:
                    log.warning("tcp_bad_frame", extra={"reason": str(exc)})
                    return  # a Modbus TCP server drops a connection that lost framing
                if len(buf) < total:
                    break
                adu, buf = buf[:total], buf[total:]
                reply = self.server.station.handle_tcp(adu)
                if reply is None:
                    continue
                if reply.delay and stop.wait(reply.delay):
                    return
                try:
                    sock.sendall(reply.data)
                except OSError:
                    return


class _TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False  # server_close() joins every connection thread

    def __init__(self, port: int, station: SimStation, stop: threading.Event) -> None:
        self.station = station
        self.stop = stop
        super().__init__(("127.0.0.1", port), _TcpHandler)


# --------------------------------------------------------------------------- RTU

def _request_length(buf: bytes) -> int | None:
    """Length of the RTU request starting ``buf``; None if only silence can tell."""
    if len(buf) < 2:
        return None
    if 1 <= buf[1] <= 6:
        return 8
    if buf[1] in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else None
    return None


def _crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and modbus.crc16(frame[:-2]) == frame[-2] | frame[-1] << 8


def split_requests(buf: bytes, quiet: bool) -> tuple[list[bytes], bytes]:
    """(complete request frames, the bytes still waiting) from what the bus received.

    A frame is taken when its length is known from its function and its CRC holds. Bytes that
    cannot start a valid frame are noise: skipped one at a time, so a request that follows
    line noise is still found. Once the line is ``quiet`` (a frame gap of silence), whatever
    remains is either one frame of a function we do not know the length of, or noise.
    """
    frames: list[bytes] = []
    while buf:
        n = _request_length(buf)
        if n is not None and len(buf) >= n:
            if _crc_ok(buf[:n]):
                frames.append(buf[:n])
                buf = buf[n:]
            else:
                buf = buf[1:]
            continue
        if not quiet:
            break
        if n is None and _crc_ok(buf):
            frames.append(buf)
            buf = b""
        else:
            buf = buf[1:]
    return frames, buf


class PtyPair:
    """A socat pty pair: ``sim_path`` for the simulator, ``client_path`` for the master."""

    def __init__(self, client_link: str | Path | None = None) -> None:
        if shutil.which("socat") is None:
            raise RuntimeError("socat is not installed: apt-get install socat")
        self._dir = tempfile.mkdtemp(prefix="quantrac-pty-")
        self.sim_path = str(Path(self._dir) / "sim")
        self.client_path = str(client_link or Path(self._dir) / "bus")
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.sim_path}",
             f"pty,raw,echo=0,link={self.client_path}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not (Path(self.sim_path).exists() and Path(self.client_path).exists()):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.close()
                raise RuntimeError(f"socat exited with {self.proc.returncode}: {err.strip()}")
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("socat did not create the pty pair within 10 s")
            time.sleep(0.01)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class RtuBus(threading.Thread):
    """Serves the station's RTU units on one pty, one frame at a time, like a real bus."""

    def __init__(self, station: SimStation, path: str, baud: int | None,
                 stop: threading.Event) -> None:
        super().__init__(name="hw_sim-rtu", daemon=True)
        self.station = station
        self.baud = baud
        self.stop = stop
        self.port = serial.Serial(path, baudrate=baud or 9600, timeout=0)
        self.char = modbus.rtu_char_time(baud) if baud else 0.0
        self.gap = modbus.rtu_frame_gap(baud) if baud else 0.0
        # A partial frame is dropped after this much silence (generous: a pty is not a UART).
        self.silence = max(0.02, 3 * self.gap)

    def run(self) -> None:
        buf = b""
        first = last = 0.0
        pending: list[tuple[float, int, bytes]] = []
        seq = 0
        fd = self.port.fileno()
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                wait = _POLL if not pending else max(0.0, min(_POLL, pending[0][0] - now))
                if buf:
                    wait = min(wait, max(0.0, last + self.silence - now))
                readable, _, _ = select.select([fd], [], [], wait)
                now = time.monotonic()
                if readable:
                    data = self.port.read(max(1, self.port.in_waiting))
                    if data:
                        if not buf:
                            first = now
                        buf += data
                        last = now
                while pending and pending[0][0] <= time.monotonic():
                    self.port.write(heapq.heappop(pending)[2])
                frames, buf = split_requests(buf, quiet=now - last >= self.silence)
                for frame in frames:
                    reply = self.station.handle_rtu(frame)
                    if reply is not None:
                        wire = ((len(frame) + len(reply.data)) * self.char + 2 * self.gap
                                if self.baud else 0.0)
                        seq += 1
                        heapq.heappush(pending, (first + wire + reply.delay, seq, reply.data))
                    first = now
                while pending and pending[0][0] <= time.monotonic():
                    self.port.write(heapq.heappop(pending)[2])
        except (OSError, serial.SerialException) as exc:
            if not self.stop.is_set():
                log.error("rtu_bus_failed", extra={"reason": str(exc)})
        finally:
            self.port.close()


class SerialDeviceServer(threading.Thread):
    """A TCP listener relaying raw bytes to and from one serial line (a pty end), unframed."""

    def __init__(self, path: str, port: int, stop: threading.Event) -> None:
        super().__init__(name="hw_sim-serial-device-server", daemon=True)
        self.stop = stop
        self.line = serial.Serial(path, baudrate=9600, timeout=0)
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self.listener.getsockname()[1]
        self.clients: list[socket.socket] = []

    def run(self) -> None:
        line = self.line.fileno()
        try:
            while not self.stop.is_set():
                watched = [self.listener, line, *self.clients]
                readable, _, _ = select.select(watched, [], [], _POLL)
                for r in readable:
                    if r is self.listener:
                        conn, _ = self.listener.accept()
                        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        self.clients.append(conn)
                    elif r == line:
                        data = self.line.read(max(1, self.line.in_waiting))
                        for c in list(self.clients):
                            try:
                                c.sendall(data)
                            except OSError:
                                self._forget(c)
                    else:
                        assert isinstance(r, socket.socket)
                        try:
                            data = r.recv(4096)
                        except OSError:
                            data = b""
                        if data:
                            self.line.write(data)
                        else:
                            self._forget(r)
        except (OSError, serial.SerialException) as exc:
            if not self.stop.is_set():
                log.error("serial_device_server_failed", extra={"reason": str(exc)})
        finally:
            self.close()

    def _forget(self, conn: socket.socket) -> None:
        with contextlib.suppress(ValueError):
            self.clients.remove(conn)
        conn.close()

    def close(self) -> None:
        for c in list(self.clients):
            self._forget(c)
        self.listener.close()
        self.line.close()


# --------------------------------------------------------------------------- control

class _ControlHandler(socketserver.StreamRequestHandler):
    server: _ControlServer

    def handle(self) -> None:
        for line in self.rfile:
            try:
                answer = self.server.command(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                answer = {"ok": False, "error": str(exc).strip("'\"")}
            self.wfile.write(json.dumps(answer).encode() + b"\n")


class _ControlServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, station: SimStation) -> None:
        self.station = station
        super().__init__(path, _ControlHandler)

    def command(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op", "fault")
        if op == "fault":
            unit, fault, on = int(msg["unit"]), str(msg["fault"]), bool(msg["on"])
            self.station.set_fault(unit, fault, on, code=int(msg.get("code", 4)),
                                   delay=float(msg.get("delay", 2.0)))
            return {"ok": True}
        if op == "stats":
            return {"ok": True, "units": {
                str(u): dict(zip(("received", "answered"), self.station.requests(u), strict=True))
                for u in sorted(d.unit for d in self.station.config.devices)}}
        if op == "hello":  # who is serving here: what a second simulator's refusal names
            return {"ok": True, "station": self.station.config.name, "pid": os.getpid()}
        raise ValueError(f"unknown op {op!r}, expected 'fault', 'stats' or 'hello'")


class ControlSocketInUse(UserError):
    """The control socket path is served by another simulator (or is not a socket at all)."""


class NoSimulator(UserError):
    """Nothing answers on the control socket path: no simulator runs there."""


def send_control(path: str | Path, msg: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One request/answer on a running station's control socket (NoSimulator if none)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            # a missing file, or one a killed simulator left: both mean nobody serves there
            raise NoSimulator(f"{path}: no simulated station answers here (start one with "
                              "`quantrac sim station`, or give the --control it was "
                              "started with)") from None
        sock.sendall(json.dumps(msg).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer


def _claim_control(path: Path) -> None:
    """Make ``path`` free for a new control socket, or refuse: it belongs to someone else.

    A socket a simulator answers on is that simulator's (unlinking it would leave it deaf and
    hand its faults to us); one that refuses connections is stale; anything but a socket is
    not ours to delete.
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlSocketInUse(f"{path}: exists and is not a socket; give --control "
                                 "another path")
    try:
        answer = send_control(path, {"op": "hello"}, timeout=2.0)
    except NoSimulator:
        path.unlink(missing_ok=True)
        return
    except (OSError, ValueError):  # it accepted a connection: something lives there
        answer = {}
    who = (f"simulated station {answer['station']!r} (pid {answer['pid']})"
           if answer.get("ok") else "another program")
    raise ControlSocketInUse(f"{path}: {who} already serves its control socket here; stop "
                             "it, or give this one its own --control PATH (and pass the same "
                             "--control to `quantrac sim fault`)")


def _bind_control(path: Path, station: SimStation) -> _ControlServer:
    _claim_control(path)
    try:
        return _ControlServer(str(path), station)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:  # another simulator bound it since we looked
            raise ControlSocketInUse(f"{path}: another simulator took this control socket "
                                     "just now; give this one its own --control PATH") from None
        raise


# --------------------------------------------------------------------------- running

class RunningStation:
    """A started station: where to reach it, and the SimStation to steer and inspect it."""

    def __init__(self, station: SimStation) -> None:
        self.station = station
        self.tcp_port: int | None = None
        self.pty_path: str | None = None
        self.rtu_tcp_port: int | None = None
        self.control_path: str | None = None

    def set_fault(self, unit: int, fault: str, on: bool = True, *, code: int = 4,
                  delay: float = 2.0) -> None:
        self.station.set_fault(unit, fault, on, code=code, delay=delay)

    def clear_faults(self, unit: int | None = None) -> None:
        self.station.clear_faults(unit)

    def served(self, unit: int) -> Served | None:
        return self.station.served(unit)

    def requests(self, unit: int) -> tuple[int, int]:
        return self.station.requests(unit)

    def endpoints(self) -> dict[str, Any]:
        """The machine-readable description ``quantrac sim station`` prints first."""
        return {"tcp_port": self.tcp_port, "pty": self.pty_path,
                "rtu_tcp_port": self.rtu_tcp_port, "control": self.control_path,
                "units": {d.name: {"unit": d.unit, "profile": d.profile.name,
                                   "transports": list(d.transports)}
                          for d in self.station.config.devices}}


@contextlib.contextmanager
def running_station(config: SimStationConfig | str | Path, *, tcp_port: int | None = 0,
                    pty: bool = False, baud: int | None = None, clock: Clock = time.time,
                    control: str | Path | None = None,
                    pty_link: str | Path | None = None,
                    rtu_tcp_port: int | None = None) -> Iterator[RunningStation]:
    """Serve ``config`` until the block exits; everything is stopped and joined on exit.

    ``tcp_port=0`` picks a free loopback port, None serves no TCP; ``pty=True`` creates a socat
    pty pair (``sim.pty_path`` is the end to open); ``baud`` turns on wire-time emulation;
    ``rtu_tcp_port`` (0: a free one) serves the RTU units through a serial device server on
    a pty pair of its own (``sim.rtu_tcp_port``).
    """
    if not isinstance(config, SimStationConfig):
        config = load_station(config)
    station = SimStation(config, clock)
    sim = RunningStation(station)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    tcp: _TcpServer | None = None
    ctl: _ControlServer | None = None
    pair: PtyPair | None = None
    bus: RtuBus | None = None
    pairs: list[PtyPair] = []
    ports: list[RtuBus | SerialDeviceServer] = []  # what holds a port open until started
    started = False
    try:
        if control is not None:  # first: a taken socket refuses before anything has started
            ctl = _bind_control(Path(control), station)
            sim.control_path = str(control)
            threads.append(threading.Thread(target=ctl.serve_forever, args=(_POLL,),
                                            name="hw_sim-control", daemon=True))
        if tcp_port is not None:
            tcp = _TcpServer(tcp_port, station, stop)
            sim.tcp_port = tcp.server_address[1]
            threads.append(threading.Thread(target=tcp.serve_forever, args=(_POLL,),
                                            name="hw_sim-tcp", daemon=True))
        if pty:
            pair = PtyPair(pty_link)
            sim.pty_path = pair.client_path
            bus = RtuBus(station, pair.sim_path, baud, stop)
            threads.append(bus)
        if rtu_tcp_port is not None:
            converter_line = PtyPair()
            pairs.append(converter_line)
            ports.append(RtuBus(station, converter_line.sim_path, baud, stop))
            ports.append(SerialDeviceServer(converter_line.client_path, rtu_tcp_port, stop))
            sim.rtu_tcp_port = ports[-1].port
            threads.extend(ports)
        for th in threads:
            th.start()
        started = True
        log.info("sim_started", extra={"station": config.name, "tcp_port": sim.tcp_port,
                                       "pty": sim.pty_path, "rtu_tcp_port": sim.rtu_tcp_port,
                                       "baud": baud})
        yield sim
    finally:
        stop.set()
        for server in (tcp, ctl):
            if server is not None:
                if started:
                    server.shutdown()
                server.server_close()
        for th in threads:
            if th.is_alive():
                th.join(5)
        if bus is not None and not started:
            bus.port.close()
        for held in ports if not started else ():  # a started thread closes its own
            if isinstance(held, RtuBus):
                held.port.close()
            else:
                held.close()
        if pair is not None:
            pair.close()
        for p in pairs:
            p.close()
        if control is not None and ctl is not None:
            Path(control).unlink(missing_ok=True)
        log.info("sim_stopped", extra={"station": config.name})
