"""Modbus transports: RTU over a serial port (pyserial), RTU over TCP, and Modbus TCP (sockets).

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

* RTU over TCP (a serial device server: an RS-485-to-Ethernet converter that passes raw RTU
  frames, CRC and all, over a TCP socket, with no MBAP header) is the RTU master of a serial
  line with the socket as its line: the same length rule, silence, turnaround, drain and
  error naming (:class:`_RtuMaster`), on the same lazily opened, reconnecting connection as
  Modbus TCP (:class:`_Connection`). Nothing in the stream says which request an answer
  belongs to (no transaction id), so after a timeout the input is flushed before the next
  request exactly as on a serial line.

Every transport offers the same transactions (:class:`_Functions`): FC03/04 register reads,
FC01/02 bit reads, FC05/15 coil writes, FC06/16 register writes. Each is a request PDU and a
checked response PDU (:mod:`drivers.modbus`); a transport only frames and moves them.

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


class _Functions:
    """The Modbus transactions, each a request PDU through :meth:`transact`, for every transport.

    The sampler's trigger (a coil or a register), its busy/done contacts (coils or discrete
    inputs) and the field node's clock all go through these, so a write is checked the same
    way on every bus: the acknowledgement must echo what was asked.
    """

    def transact(self, unit: int, request_pdu: bytes, timeout: float) -> bytes:
        """The checked response PDU to ``request_pdu``; raises a ModbusError subclass."""
        raise NotImplementedError

    def read_registers(self, unit: int, function: int, address: int, count: int,
                       timeout: float) -> list[int]:
        """FC03 (holding) or FC04 (input): ``count`` words from ``address``."""
        pdu = modbus.read_request_pdu(function, address, count)
        return modbus.registers_of(self.transact(unit, pdu, timeout))

    def read_bits(self, unit: int, function: int, address: int, count: int,
                  timeout: float) -> list[bool]:
        """FC01 (coils) or FC02 (discrete inputs): ``count`` bits from ``address``."""
        pdu = modbus.read_bits_request_pdu(function, address, count)
        return modbus.bits_of(self.transact(unit, pdu, timeout), count)

    def write_coil(self, unit: int, address: int, on: bool, timeout: float) -> None:
        """FC05: one coil on or off (a sampler's trigger, a relay)."""
        self.transact(unit, modbus.write_coil_request_pdu(address, on), timeout)

    def write_coils(self, unit: int, address: int, bits: list[bool], timeout: float) -> None:
        """FC15: ``len(bits)`` coils from ``address``."""
        self.transact(unit, modbus.write_coils_request_pdu(address, bits), timeout)

    def write_register(self, unit: int, address: int, value: int, timeout: float) -> None:
        """FC06: one holding register."""
        self.transact(unit, modbus.write_register_request_pdu(address, value), timeout)

    def write_registers(self, unit: int, address: int, words: list[int],
                        timeout: float) -> None:
        """FC16: ``len(words)`` holding registers (the field node's clock, history cursor)."""
        self.transact(unit, modbus.write_registers_request_pdu(address, words), timeout)


class _RtuMaster(_Functions):
    """RTU framing and timing over a byte stream: a serial line, or a serial device server.

    A subclass gives the stream (:meth:`_open`, :meth:`_waiting`, :meth:`_write`,
    :meth:`_read`, :meth:`_flush`, :meth:`_drop`) and the OS errors that mean the stream is
    gone (``_LINK_ERRORS``); everything an RTU master must get right on a shared line is here
    once: the turnaround before a request, a late answer flushed, a response read until the
    length its first bytes announce or until silence, a bad frame drained before the next.
    """

    _LINK_ERRORS: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, turnaround: float, silence: float, drain_limit: float) -> None:
        self.turnaround = turnaround
        self.silence = silence
        self.drain_limit = drain_limit
        self._lock = threading.Lock()
        self._line_free_at = 0.0  # monotonic time the next request may start

    @property
    def name(self) -> str:
        raise NotImplementedError

    def _open(self) -> None:
        raise NotImplementedError

    def _waiting(self) -> int:
        """Bytes received and not yet read (a late answer to someone else's request)."""
        raise NotImplementedError

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes, at least one unless ``timeout`` passes first (then b"")."""
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _drop(self) -> None:
        raise NotImplementedError

    def _timed_out(self, unit: int) -> None:
        """A transaction got no byte at all back (a hook: the TCP stream counts these)."""

    def _heard(self) -> None:
        """A transaction got bytes back (a hook: the TCP stream resets its count)."""

    def close(self) -> None:
        with self._lock:
            self._drop()

    def transact(self, unit: int, request_pdu: bytes, timeout: float) -> bytes:
        request = modbus.rtu_frame(unit, request_pdu)
        with self._lock:
            try:
                self._open()
                wait = self._line_free_at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if self._waiting():
                    self._flush()  # a late answer to an earlier request
                self._write(request)
                frame = self._receive(request_pdu, time.monotonic() + timeout)
                if not frame:
                    self._timed_out(unit)
                    raise TransportTimeout(f"unit {unit}: no answer within {timeout:.3f} s")
                self._heard()
                try:
                    return modbus.rtu_response_pdu(frame, unit, request_pdu)
                except FrameError:
                    self._drain()
                    raise
            except self._LINK_ERRORS as exc:
                self._drop()
                raise LinkError(f"{self.name}: {exc}") from exc
            finally:
                self._line_free_at = time.monotonic() + self.turnaround

    def _receive(self, request_pdu: bytes, deadline: float) -> bytes:
        """Bytes of one response: complete, or cut by silence or the deadline."""
        buf = bytearray()
        while True:
            expected = modbus.rtu_expected_length(request_pdu, bytes(buf[:2]))
            need = 2 - len(buf) if expected is None else expected - len(buf)
            if need <= 0:
                return bytes(buf)
            left = deadline - time.monotonic()
            wait = left if not buf else min(left, self.silence)
            if wait <= 0:
                break
            chunk = self._read(max(1, min(need, self._waiting())), wait)
            if not chunk:
                break
            buf += chunk
        if buf:
            self._heard()
            expected = modbus.rtu_expected_length(request_pdu, bytes(buf[:2]))
            self._drain()
            raise FrameError(
                f"short frame: {len(buf)} of {expected or 'at least 2'} bytes "
                f"({bytes(buf[:16]).hex(' ')})"
            )
        return b""

    def _drain(self) -> None:
        """After a bad frame: wait for the line to go quiet, then discard what came in."""
        end = time.monotonic() + self.drain_limit
        while time.monotonic() < end and self._read(max(1, self._waiting()), self.silence):
            pass
        self._flush()


class RtuTransport(_RtuMaster):
    """Modbus RTU master on one serial line, one transaction at a time.

    ``turnaround`` defaults to the 3.5-character frame gap at the line's baud rate;
    ``silence`` (the inter-character pause that ends a short or garbled frame) defaults to
    four frame gaps but at least 20 ms, because a pty or a USB adapter delivers bytes in
    bursts whose spacing the OS scheduler, not the line, decides.
    """

    _LINK_ERRORS = (serial.SerialException, OSError)

    def __init__(self, settings: SerialSettings, *, turnaround: float | None = None,
                 silence: float | None = None, drain_limit: float = 0.5) -> None:
        gap = modbus.rtu_frame_gap(settings.baud)
        super().__init__(gap if turnaround is None else turnaround,
                         max(4 * gap, 0.02) if silence is None else silence, drain_limit)
        self.settings = settings
        self._serial: serial.Serial | None = None

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

    def _open(self) -> None:
        self._port()

    def _waiting(self) -> int:
        return int(self._port().in_waiting)

    def _write(self, data: bytes) -> None:
        self._port().write(data)

    def _read(self, n: int, timeout: float) -> bytes:
        port = self._port()
        port.timeout = timeout
        return bytes(port.read(n))

    def _flush(self) -> None:
        self._port().reset_input_buffer()

    def _drop(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
            self._serial = None


class _Connection:
    """One TCP connection to a Modbus endpoint: opened lazily, dropped on error or silence.

    A connection can die without a word: a device or gateway whose Modbus task hangs on that
    one socket while its listener still accepts and serves new ones, a NAT or firewall that
    forgot the flow, a peer rebooted behind a switch (no RST ever arrives). Writes still
    succeed, nothing comes back, and a master that keeps the socket keeps the device offline
    for good. So ``silent_limit`` timeouts in a row on one connection, with nothing received
    in between (not even a late answer), drop it, logged as ``tcp_connection_dropped``; the
    next transaction connects afresh. Anything received resets the count, so a gateway with
    one dead unit behind it, whose other units answer, keeps its connection; a lone silent
    unit costs a reconnect every ``silent_limit`` timeouts, cheap next to the timeouts.
    """

    def __init__(self, host: str, port: int, connect_timeout: float, silent_limit: int) -> None:
        if silent_limit < 1:
            raise ValueError(f"silent_limit {silent_limit} is not at least 1")
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.silent_limit = silent_limit
        self.sock: socket.socket | None = None
        self.rx = bytearray()  # received, not yet taken
        self._silent = 0  # timeouts in a row on this connection with nothing received

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> socket.socket:
        if self.sock is None:
            try:
                sock = socket.create_connection((self.host, self.port), self.connect_timeout)
            except OSError as exc:
                raise LinkError(f"cannot connect to {self.name}: {exc}") from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
            self.rx.clear()
        return self.sock

    def drop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None
        self.rx.clear()
        self._silent = 0

    def recv(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for bytes into ``rx``; False if none came."""
        sock = self.connect()
        sock.settimeout(timeout if timeout > 0 else 0.0)  # 0: take what is there, no wait
        try:
            chunk = sock.recv(4096)
        except (TimeoutError, BlockingIOError):
            return False
        if not chunk:
            self.drop()
            raise LinkError(f"{self.name}: connection closed by the peer")
        self.rx += chunk
        return True

    def heard(self) -> None:
        self._silent = 0  # the connection carries frames: it is alive

    def timed_out(self, unit: int) -> None:
        self._silent += 1
        if self._silent >= self.silent_limit:
            log.warning("tcp_connection_dropped", extra={
                "endpoint": self.name, "unit": unit, "timeouts": self._silent,
                "reason": "no frame received on this connection for "
                          f"{self._silent} transactions in a row; reconnecting"})
            self.drop()


class RtuOverTcpTransport(_RtuMaster):
    """Modbus RTU master through a serial device server: raw RTU frames on a TCP socket.

    The converter forwards the bytes to its RS-485 port and the answer back, and frames
    nothing itself, so the line's rules hold end to end: one transaction at a time,
    ``turnaround`` between them (default 5 ms, a 3.5-character gap at 9600 baud; the converter's
    own serial timing is its business), and a frame cut short ends after ``silence`` (default
    100 ms: a network delivers a frame in segments whose spacing the link, not the line,
    decides). The connection is :class:`_Connection`'s, as for Modbus TCP.
    """

    def __init__(self, host: str, port: int, *, turnaround: float | None = None,
                 silence: float | None = None, drain_limit: float = 0.5,
                 connect_timeout: float = 2.0, silent_limit: int = 3) -> None:
        super().__init__(0.005 if turnaround is None else turnaround,
                         0.1 if silence is None else silence, drain_limit)
        self._conn = _Connection(host, port, connect_timeout, silent_limit)

    @property
    def name(self) -> str:
        return f"rtu-over-tcp {self._conn.name}"

    def _open(self) -> None:
        self._conn.connect()

    def _waiting(self) -> int:
        conn = self._conn
        if not conn.rx:
            conn.recv(0.0)  # what has already arrived, without waiting
        return len(conn.rx)

    def _write(self, data: bytes) -> None:
        self._conn.connect().sendall(data)

    def _read(self, n: int, timeout: float) -> bytes:
        conn = self._conn
        if not conn.rx and not conn.recv(timeout):
            return b""
        out = bytes(conn.rx[:n])
        del conn.rx[:n]
        return out

    def _flush(self) -> None:
        conn = self._conn
        while conn.recv(0.0):
            pass
        conn.rx.clear()

    def _drop(self) -> None:
        self._conn.drop()

    def _timed_out(self, unit: int) -> None:
        self._conn.timed_out(unit)

    def _heard(self) -> None:
        self._conn.heard()


class TcpTransport(_Functions):
    """Modbus TCP master on one connection (one device, or one gateway with many units).

    A timeout keeps the connection: a late answer is recognised by its transaction id and
    skipped. A header that does not parse means the byte stream has lost its framing, and
    the connection is dropped (and reopened on the next transaction). A connection that has
    gone silent is dropped after ``silent_limit`` timeouts in a row (:class:`_Connection`).
    """

    def __init__(self, host: str, port: int, *, connect_timeout: float = 2.0,
                 silent_limit: int = 3) -> None:
        self._conn = _Connection(host, port, connect_timeout, silent_limit)
        self.host = host
        self.port = port
        self._tid = 0
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._conn.name

    def close(self) -> None:
        with self._lock:
            self._conn.drop()

    def transact(self, unit: int, request_pdu: bytes, timeout: float) -> bytes:
        with self._lock:
            self._tid = (self._tid + 1) & 0xFFFF
            tid = self._tid
            request = modbus.tcp_adu(tid, unit, request_pdu)
            deadline = time.monotonic() + timeout
            try:
                self._conn.connect().sendall(request)
                while True:
                    adu = self._receive(deadline, unit, timeout)
                    if int.from_bytes(adu[:2], "big") == tid:
                        return modbus.tcp_response_pdu(adu, tid, unit, request_pdu)
                    # a late answer to an earlier, timed-out request: skip it
            except TransportTimeout:
                self._conn.timed_out(unit)
                raise
            except OSError as exc:
                self._conn.drop()
                raise LinkError(f"{self.name}: {exc}") from exc

    def _receive(self, deadline: float, unit: int, timeout: float) -> bytes:
        conn = self._conn
        header_ok = False
        while True:
            rx = conn.rx
            if len(rx) >= modbus.MBAP_LENGTH:
                try:
                    total = modbus.tcp_frame_length(bytes(rx[:modbus.MBAP_LENGTH]))
                except FrameError:
                    conn.drop()  # framing lost: only a new connection resynchronises
                    raise
                header_ok = True
                if len(rx) >= total:
                    adu = bytes(rx[:total])
                    del rx[:total]
                    conn.heard()
                    return adu
            left = deadline - time.monotonic()
            if left <= 0:
                if rx:
                    got = len(rx)
                    conn.drop()
                    what = "frame" if header_ok else "MBAP header"
                    raise FrameError(f"short {what}: {got} bytes before the timeout")
                raise TransportTimeout(f"unit {unit}: no answer within {timeout:.3f} s")
            conn.recv(left)
