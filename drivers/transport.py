"""Modbus transports: RTU over a serial port (pyserial) and Modbus TCP (sockets).

The framing lives in :mod:`drivers.modbus`; this module only moves its bytes and keeps time.
One transport object is one bus: an RS-485 line is half duplex, so a lock serialises the
transactions of every caller (the poller's worker, a ``diag`` command) on it. Several unit ids
share one transport (multidrop); each call names its unit.

What peers get wrong and this module must not (each point is a way a real bus of several
analysers fails, and each has a test in tests/test_transport.py):

* A silent unit costs its own timeout and nothing more. The port stays open: a timeout, a bad
  CRC, junk or a wrong unit only flushes the input; the port is reopened only after an
  OS-level error (the USB adapter unplugged), lazily, on the next transaction.
* RS-485 needs a pause between frames (driver turnaround, the 3.5-character gap that ends a
  frame); ``turnaround`` is that pause, counted from the end of the previous transaction.
* A response is read until :func:`drivers.modbus.rtu_response_length` says it is complete, or
  until the line has been silent for ``silence`` seconds (a short frame), or until the
  transaction's timeout. Waiting for a fixed byte count alone would turn every garbled answer
  into a full timeout.

Timing uses ``time.monotonic`` (a deadline must not move when NTP steps the wall clock); the
wall-clock time of a sample is the poller's business, read when this call returns.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Protocol

import serial

from drivers import modbus
from drivers.modbus import FrameError, ModbusError
from drivers.serial_settings import SerialSettings

log = logging.getLogger("quantrac.drivers.transport")

# SerialSettings (plain data, in drivers.serial_settings so that a config need not import
# pyserial) is imported here too: ``from drivers.transport import SerialSettings`` works.
PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


class TransportTimeout(ModbusError):
    """Nothing at all came back within the timeout: the unit is silent (or absent)."""


class LinkError(ModbusError):
    """The OS refused: port missing, unplugged, connection refused or reset."""


class Transport(Protocol):
    """One bus (a serial line or one TCP endpoint) carrying read transactions."""

    @property
    def name(self) -> str: ...

    def read_registers(self, unit: int, function: int, address: int, count: int,
                       timeout: float) -> list[int]:
        """Words read, or raises a :class:`drivers.modbus.ModbusError` subclass."""
        ...

    def close(self) -> None: ...


class RtuTransport:
    """Modbus RTU master on one serial line, one transaction at a time.

    ``turnaround`` defaults to the 3.5-character frame gap at the line's baud rate;
    ``silence`` (the inter-character pause that ends a short or garbled frame) defaults to
    four frame gaps but at least 20 ms, because a pty or a USB adapter delivers bytes in
    bursts whose spacing the OS scheduler, not the line, decides.
    """

    def __init__(self, settings: SerialSettings, *, turnaround: float | None = None,
                 silence: float | None = None, drain_limit: float = 0.5) -> None:
        self.settings = settings
        gap = modbus.rtu_frame_gap(settings.baud)
        self.turnaround = gap if turnaround is None else turnaround
        self.silence = max(4 * gap, 0.02) if silence is None else silence
        self.drain_limit = drain_limit
        self._serial: serial.Serial | None = None
        self._lock = threading.Lock()
        self._line_free_at = 0.0  # monotonic time the next request may start

    @property
    def name(self) -> str:
        return self.settings.port

    def open(self) -> None:
        """Open the port now (it is otherwise opened by the first transaction)."""
        with self._lock:
            self._port()

    def _port(self) -> serial.Serial:
        if self._serial is None:
            s = self.settings
            try:
                self._serial = serial.Serial(
                    s.port, baudrate=s.baud, parity=PARITIES[s.parity], stopbits=s.stopbits,
                    bytesize=serial.EIGHTBITS, timeout=0, exclusive=True,
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                raise LinkError(f"cannot open {s.port}: {exc}") from exc
        return self._serial

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
            self._serial = None

    def read_registers(self, unit: int, function: int, address: int, count: int,
                       timeout: float) -> list[int]:
        request = modbus.rtu_read_request(unit, function, address, count)
        with self._lock:
            try:
                return self._transact(request, unit, function, count, timeout)
            except (serial.SerialException, OSError) as exc:
                self._drop()
                raise LinkError(f"{self.settings.port}: {exc}") from exc
            finally:
                self._line_free_at = time.monotonic() + self.turnaround

    def write_registers(self, unit: int, address: int, words: list[int],
                        timeout: float) -> None:
        """FC16 write (the field node's clock, history cursor, relay); raises ModbusError."""
        request = modbus.rtu_write_request(unit, address, words)
        with self._lock:
            try:
                port = self._port()
                wait = self._line_free_at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if port.in_waiting:
                    port.reset_input_buffer()
                port.write(request)
                frame = self._receive(port, modbus.WRITE_MULTIPLE, 0,
                                      time.monotonic() + timeout, write=True)
                if not frame:
                    raise TransportTimeout(f"unit {unit}: no answer within {timeout:.3f} s")
                try:
                    modbus.parse_rtu_write_response(frame, unit, address, len(words))
                except FrameError:
                    self._drain(port)
                    raise
            except (serial.SerialException, OSError) as exc:
                self._drop()
                raise LinkError(f"{self.settings.port}: {exc}") from exc
            finally:
                self._line_free_at = time.monotonic() + self.turnaround

    def _transact(self, request: bytes, unit: int, function: int, count: int,
                  timeout: float) -> list[int]:
        port = self._port()
        wait = self._line_free_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if port.in_waiting:
            port.reset_input_buffer()  # a late answer to someone else's request
        port.write(request)
        frame = self._receive(port, function, count, time.monotonic() + timeout)
        if not frame:
            raise TransportTimeout(f"unit {unit}: no answer within {timeout:.3f} s")
        try:
            return modbus.parse_rtu_read_response(frame, unit, function, count)
        except FrameError:
            self._drain(port)
            raise

    def _receive(self, port: serial.Serial, function: int, count: int,
                 deadline: float, write: bool = False) -> bytes:
        """Bytes of one response: complete, or cut by silence or the deadline."""
        buf = bytearray()

        def length(head: bytes) -> int | None:
            if write:
                return modbus.rtu_write_response_length(head)
            return modbus.rtu_response_length(head, function, count)

        while True:
            expected = length(bytes(buf[:2]))
            need = 2 - len(buf) if expected is None else expected - len(buf)
            if need <= 0:
                return bytes(buf)
            left = deadline - time.monotonic()
            wait = left if not buf else min(left, self.silence)
            if wait <= 0:
                break
            port.timeout = wait
            chunk = port.read(max(1, min(need, port.in_waiting)))
            if not chunk:
                break
            buf += chunk
        if buf:
            expected = length(bytes(buf[:2]))
            self._drain(port)
            raise FrameError(
                f"short frame: {len(buf)} of {expected or 'at least 2'} bytes "
                f"({bytes(buf[:16]).hex(' ')})"
            )
        return b""

    def _drain(self, port: serial.Serial) -> None:
        """After a bad frame: wait for the line to go quiet, then discard what came in."""
        end = time.monotonic() + self.drain_limit
        port.timeout = self.silence
        while time.monotonic() < end and port.read(max(1, port.in_waiting)):
            pass
        port.reset_input_buffer()


class TcpTransport:
    """Modbus TCP master on one connection (one device, or one gateway with many units).

    A timeout keeps the connection: a late answer is recognised by its transaction id and
    skipped. A header that does not parse means the byte stream has lost its framing, and
    the connection is dropped (and reopened on the next transaction).

    A connection can also die without a word: a device or gateway whose Modbus task hangs
    on that one socket while its listener still accepts and serves new ones, a NAT or
    firewall that forgot the flow, a peer rebooted behind a switch (no RST ever arrives).
    Writes still succeed, nothing comes back, and a master that keeps the socket keeps the
    device offline for good. So ``silent_limit`` timeouts in a row on one connection, with
    no frame at all received in between (not even a late answer), drop it, logged as
    ``tcp_connection_dropped``; the next transaction connects afresh. Any frame received
    resets the count, so a gateway with one dead unit behind it, whose other units answer,
    keeps its connection; a lone silent unit costs a reconnect every ``silent_limit``
    timeouts, which is cheap next to the timeouts themselves.
    """

    def __init__(self, host: str, port: int, *, connect_timeout: float = 2.0,
                 silent_limit: int = 3) -> None:
        if silent_limit < 1:
            raise ValueError(f"silent_limit {silent_limit} is not at least 1")
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.silent_limit = silent_limit
        self._sock: socket.socket | None = None
        self._rx = bytearray()
        self._tid = 0
        self._silent = 0  # timeouts in a row on this connection with no frame received
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        self._rx.clear()
        self._silent = 0

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                sock = socket.create_connection((self.host, self.port), self.connect_timeout)
            except OSError as exc:
                raise LinkError(f"cannot connect to {self.name}: {exc}") from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._rx.clear()
        return self._sock

    def read_registers(self, unit: int, function: int, address: int, count: int,
                       timeout: float) -> list[int]:
        with self._lock:
            self._tid = (self._tid + 1) & 0xFFFF
            tid = self._tid
            request = modbus.tcp_read_request(tid, unit, function, address, count)
            deadline = time.monotonic() + timeout
            try:
                sock = self._connect()
                sock.sendall(request)
                while True:
                    adu = self._receive(sock, deadline, unit, timeout)
                    if int.from_bytes(adu[:2], "big") == tid:
                        return modbus.parse_tcp_read_response(adu, tid, unit, function, count)
                    # a late answer to an earlier, timed-out request: skip it
            except TransportTimeout:
                self._silent += 1
                if self._silent >= self.silent_limit:
                    log.warning("tcp_connection_dropped", extra={
                        "endpoint": self.name, "unit": unit, "timeouts": self._silent,
                        "reason": "no frame received on this connection for "
                                  f"{self._silent} transactions in a row; reconnecting"})
                    self._drop()
                raise
            except OSError as exc:
                self._drop()
                raise LinkError(f"{self.name}: {exc}") from exc

    def _receive(self, sock: socket.socket, deadline: float, unit: int,
                 timeout: float) -> bytes:
        header_ok = False
        while True:
            if len(self._rx) >= modbus.MBAP_LENGTH:
                try:
                    total = modbus.tcp_frame_length(bytes(self._rx[:modbus.MBAP_LENGTH]))
                except FrameError:
                    self._drop()  # framing lost: only a new connection resynchronises
                    raise
                header_ok = True
                if len(self._rx) >= total:
                    adu = bytes(self._rx[:total])
                    del self._rx[:total]
                    self._silent = 0  # the connection carries frames: it is alive
                    return adu
            left = deadline - time.monotonic()
            if left <= 0:
                if self._rx:
                    got = len(self._rx)
                    self._drop()
                    what = "frame" if header_ok else "MBAP header"
                    raise FrameError(f"short {what}: {got} bytes before the timeout")
                raise TransportTimeout(f"unit {unit}: no answer within {timeout:.3f} s")
            sock.settimeout(left)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                self._drop()
                raise LinkError(f"{self.name}: connection closed by the peer")
            self._rx += chunk
