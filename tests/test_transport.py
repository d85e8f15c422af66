"""RTU and TCP transports against a tiny slave of our own, over a real pty and TCP loopback.

The slave here misbehaves on demand in ways the simulator does not (junk before the frame, a
short frame, a wrong unit id) so that each FrameError path of the transport is exercised.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from drivers import modbus
from drivers.transport import (
    LinkError,
    RtuTransport,
    SerialSettings,
    TcpTransport,
    TransportTimeout,
)

Behaviour = Callable[[modbus.ReadRequest], bytes | None]


def words_for(req: modbus.ReadRequest) -> list[int]:
    return [(req.unit << 8 | (req.address + i)) & 0xFFFF for i in range(req.count)]


def good(req: modbus.ReadRequest) -> bytes:
    return modbus.rtu_read_response(req.unit, req.function, words_for(req))


class PtySlave:
    """Answers RTU requests on the master side of a pty with whatever ``behave`` returns."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        self._slave_fd = slave
        self.behave: dict[int, Behaviour] = {}
        self.requests: list[modbus.ReadRequest] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select

        buf = b""
        while not self._stop:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                buf = b""  # line silent: a frame boundary
                continue
            try:
                buf += os.read(self.master, 256)
            except OSError:
                return
            if len(buf) < 8:
                continue
            req = modbus.parse_rtu_request(buf[:8])
            buf = buf[8:]
            self.requests.append(req)
            answer = self.behave.get(req.unit, good)(req)
            if answer:
                os.write(self.master, answer)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        os.close(self.master)
        os.close(self._slave_fd)


@pytest.fixture
def pty_slave() -> Iterator[PtySlave]:
    slave = PtySlave()
    yield slave
    slave.close()


@pytest.fixture
def rtu(pty_slave: PtySlave) -> Iterator[RtuTransport]:
    t = RtuTransport(SerialSettings(pty_slave.path, 19200), silence=0.02)
    yield t
    t.close()


def test_rtu_reads_several_units_on_one_line(pty_slave: PtySlave, rtu: RtuTransport) -> None:
    assert rtu.read_registers(1, 3, 10, 4, 0.5) == [0x10A, 0x10B, 0x10C, 0x10D]
    assert rtu.read_registers(7, 4, 0, 2, 0.5) == [0x700, 0x701]
    assert [r.unit for r in pty_slave.requests] == [1, 7]


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        (lambda r: b"\x00\xff" + good(r), "CRC"),
        (lambda r: good(r)[:-3], "short frame"),
        (lambda r: good(r)[:-1] + bytes([good(r)[-1] ^ 0xFF]), "CRC"),
        (lambda r: good(modbus.ReadRequest(9, r.function, r.address, r.count)), "unit 9"),
    ],
    ids=["junk-before", "short", "crc", "wrong-unit"],
)
def test_rtu_bad_frames_raise_frame_error_and_the_next_read_works(
    pty_slave: PtySlave, rtu: RtuTransport, behaviour: Behaviour, message: str
) -> None:
    pty_slave.behave[2] = behaviour
    with pytest.raises(modbus.FrameError, match=message):
        rtu.read_registers(2, 3, 0, 3, 0.5)
    # The port stayed open and the input was flushed: the next unit reads cleanly.
    port_before = rtu._serial
    assert rtu.read_registers(1, 3, 0, 3, 0.5) == [0x100, 0x101, 0x102]
    assert rtu._serial is port_before


def test_rtu_exception_and_silence(pty_slave: PtySlave, rtu: RtuTransport) -> None:
    pty_slave.behave[3] = lambda r: modbus.rtu_exception_response(r.unit, r.function, 2)
    pty_slave.behave[4] = lambda r: None
    with pytest.raises(modbus.ModbusExceptionResponse, match="illegal data address"):
        rtu.read_registers(3, 3, 0, 1, 0.5)
    with pytest.raises(TransportTimeout, match="unit 4"):
        rtu.read_registers(4, 3, 0, 1, 0.05)
    assert rtu.read_registers(1, 3, 5, 1, 0.5) == [0x105]


def test_rtu_late_answer_is_not_taken_for_the_next_one(
    pty_slave: PtySlave, rtu: RtuTransport
) -> None:
    def late(r: modbus.ReadRequest) -> bytes:
        time.sleep(0.08)
        return good(r)

    pty_slave.behave[5] = late
    with pytest.raises(TransportTimeout):
        rtu.read_registers(5, 3, 0, 2, 0.03)
    # unit 5's late answer arrives while we ask unit 1; it must not be mistaken for unit 1's
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            assert rtu.read_registers(1, 3, 0, 2, 0.5) == [0x100, 0x101]
            break
        except modbus.FrameError:
            continue  # the junk is named as such, never returned as data
    else:
        pytest.fail("unit 1 never read cleanly after unit 5's late answer")


def test_rtu_missing_port_is_a_link_error() -> None:
    t = RtuTransport(SerialSettings("/dev/nonexistent-quantrac-port"))
    with pytest.raises(LinkError, match="cannot open"):
        t.read_registers(1, 3, 0, 1, 0.1)


def test_serial_settings_validate() -> None:
    with pytest.raises(ValueError, match="parity 'X'"):
        SerialSettings("/dev/null", parity="X")


class TcpSlave:
    """A loopback Modbus TCP slave; ``behave`` maps a unit to (delay, answer bytes | None)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.behave: dict[int, Callable[[int, modbus.ReadRequest], bytes | None]] = {}
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    head = conn.recv(12)
                except OSError:
                    return
                if len(head) < 12:
                    return
                tid, req = modbus.parse_tcp_request(head)
                fn = self.behave.get(req.unit)
                answer = (fn(tid, req) if fn else
                          modbus.tcp_read_response(tid, req.unit, req.function, words_for(req)))
                if answer:
                    try:
                        conn.sendall(answer)
                    except OSError:
                        return

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def tcp_slave() -> Iterator[TcpSlave]:
    s = TcpSlave()
    yield s
    s.close()


def test_tcp_reads_and_survives_a_late_answer(tcp_slave: TcpSlave) -> None:
    def late(tid: int, r: modbus.ReadRequest) -> bytes:
        time.sleep(0.1)
        return modbus.tcp_read_response(tid, r.unit, r.function, words_for(r))

    tcp_slave.behave[6] = late
    t = TcpTransport("127.0.0.1", tcp_slave.port)
    try:
        assert t.read_registers(1, 3, 0, 2, 0.5) == [0x100, 0x101]
        with pytest.raises(TransportTimeout):
            t.read_registers(6, 3, 0, 2, 0.02)
        time.sleep(0.15)  # let the stale answer land in our receive buffer
        assert t.read_registers(1, 4, 8, 1, 0.5) == [0x108]
        assert tcp_slave.connections == 1  # a timeout never cost the connection
    finally:
        t.close()


def test_tcp_garbage_header_drops_and_reconnects(tcp_slave: TcpSlave) -> None:
    tcp_slave.behave[2] = lambda tid, r: b"\xde\xad\xbe\xef\x00\x00\x00\x00\x00"
    tcp_slave.behave[3] = lambda tid, r: modbus.tcp_exception_response(tid, 3, r.function, 4)
    t = TcpTransport("127.0.0.1", tcp_slave.port)
    try:
        with pytest.raises(modbus.FrameError, match="protocol id"):
            t.read_registers(2, 3, 0, 2, 0.5)
        with pytest.raises(modbus.ModbusExceptionResponse, match="slave device failure"):
            t.read_registers(3, 3, 0, 2, 0.5)
        assert t.read_registers(1, 3, 0, 1, 0.5) == [0x100]
        assert tcp_slave.connections == 2
    finally:
        t.close()


def test_tcp_refused_is_a_link_error() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(LinkError, match="cannot connect"):
        TcpTransport("127.0.0.1", port).read_registers(1, 3, 0, 1, 0.2)


def test_tcp_repeated_silence_drops_the_connection_but_answers_keep_it(
    tcp_slave: TcpSlave,
) -> None:
    """Timeouts in a row with no frame received drop the connection (it may be hung); a
    gateway whose other units answer in between keeps its connection however often one
    unit behind it is silent."""
    tcp_slave.behave[6] = lambda tid, r: None  # a dead unit behind the gateway
    t = TcpTransport("127.0.0.1", tcp_slave.port, silent_limit=3)
    try:
        for _ in range(4):  # silence interleaved with answers: the connection is alive
            for _ in range(2):
                with pytest.raises(TransportTimeout):
                    t.read_registers(6, 3, 0, 2, 0.02)
            assert t.read_registers(1, 3, 0, 1, 0.5) == [0x100]
        assert tcp_slave.connections == 1
        for _ in range(3):  # three in a row with nothing received: dropped
            with pytest.raises(TransportTimeout):
                t.read_registers(6, 3, 0, 2, 0.02)
        assert t.read_registers(1, 3, 0, 1, 0.5) == [0x100]
        assert tcp_slave.connections == 2
    finally:
        t.close()
