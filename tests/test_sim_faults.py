"""Every fault the simulator injects, shown on the wire and judged by drivers.modbus.

The RTU tests talk raw bytes over a real socat pty pair with pyserial; the TCP tests over a
loopback socket. "No answer" is shown without guessing a timeout: the bus answers in order, so
when the answer to a second request (to a healthy unit) arrives and nothing came before it, the
first unit stayed silent.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import serial

from drivers import modbus
from drivers.codec import decode_value
from drivers.modbus import FrameError, ModbusExceptionResponse
from hw_sim import RunningStation, parse_station, running_station
from hw_sim.faults import FAULTS

CONFIG = {"name": "faults", "device": [
    {"name": "hach", "profile": "hach_sc", "unit": 1, "transports": ["tcp", "rtu"]},
    {"name": "probe", "profile": "ph_probe", "unit": 2, "transports": ["tcp", "rtu"]},
    {"name": "cems", "profile": "cems", "unit": 3, "transports": ["tcp", "rtu"]},
]}
DEADLINE = 5.0


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningStation]:
    with running_station(parse_station(CONFIG), tcp_port=0, pty=True) as s:
        yield s


@pytest.fixture
def line(sim: RunningStation) -> Iterator[serial.Serial]:
    assert sim.pty_path is not None
    port = serial.Serial(sim.pty_path, 19200, timeout=0.05)
    yield port
    sim.clear_faults()
    port.close()


def _read_exactly(port: serial.Serial, n: int) -> bytes:
    data = b""
    deadline = time.monotonic() + DEADLINE
    while len(data) < n and time.monotonic() < deadline:
        data += port.read(n - len(data))
    return data


def _rtu(port: serial.Serial, unit: int, function: int, address: int, count: int) -> bytes:
    """Send a read, return whatever complete answer arrives (by its announced length)."""
    port.reset_input_buffer()
    port.write(modbus.rtu_read_request(unit, function, address, count))
    head = _read_exactly(port, 2)
    assert len(head) == 2, "no answer"
    total = modbus.rtu_response_length(head, function, count)
    assert total is not None
    return head + _read_exactly(port, total - 2)


def _healthy_probe_frame() -> bytes:
    return modbus.rtu_read_request(2, 3, 0, 2)


def test_fault_names() -> None:
    assert FAULTS == ("no_answer", "crc_error", "exception", "garbage", "slow",
                      "wrong_word_order")


def test_rtu_normal_answer_parses(sim: RunningStation, line: serial.Serial) -> None:
    words = modbus.parse_rtu_read_response(_rtu(line, 1, 3, 0, 6), 1, 3, 6)
    served = sim.served(1)
    assert served is not None
    assert words == [served.image[(3, a)] for a in range(6)]


def test_rtu_crc_error_fails_our_crc_check(sim: RunningStation, line: serial.Serial) -> None:
    sim.set_fault(1, "crc_error")
    frame = _rtu(line, 1, 3, 0, 6)
    with pytest.raises(FrameError, match="CRC mismatch"):
        modbus.parse_rtu_read_response(frame, 1, 3, 6)
    sim.set_fault(1, "crc_error", on=False)
    modbus.parse_rtu_read_response(_rtu(line, 1, 3, 0, 6), 1, 3, 6)  # recovered


@pytest.mark.parametrize("code", [4, 6])
def test_rtu_exception_with_chosen_code(sim: RunningStation, line: serial.Serial,
                                        code: int) -> None:
    sim.set_fault(1, "exception", code=code)
    with pytest.raises(ModbusExceptionResponse) as info:
        modbus.parse_rtu_read_response(_rtu(line, 1, 3, 0, 6), 1, 3, 6)
    assert info.value.code == code


def test_rtu_garbage_is_not_a_frame(sim: RunningStation, line: serial.Serial) -> None:
    sim.set_fault(1, "garbage")
    before = sim.requests(1)[1]
    line.reset_input_buffer()
    for _ in range(5):
        line.write(modbus.rtu_read_request(1, 3, 0, 6))
        deadline = time.monotonic() + DEADLINE
        while sim.requests(1)[1] == before and time.monotonic() < deadline:
            time.sleep(0.005)
        before = sim.requests(1)[1]
        junk = b""
        while len(junk) < 3 and time.monotonic() < deadline:
            junk += line.read(64)
        junk += line.read(64)  # the rest of the burst, if it was split
        assert len(junk) >= 3
        with pytest.raises(FrameError):
            modbus.parse_rtu_read_response(junk, 1, 3, 6)


def test_rtu_no_answer_and_multidrop_silence(sim: RunningStation, line: serial.Serial) -> None:
    sim.set_fault(1, "no_answer")
    for silent in (modbus.rtu_read_request(1, 3, 0, 6),     # the faulty unit
                   modbus.rtu_read_request(9, 3, 0, 2),     # a unit that is not on the bus
                   modbus.rtu_read_request(0, 3, 0, 2)):    # a broadcast
        received = sim.requests(1)[0]
        line.reset_input_buffer()
        line.write(silent)
        line.write(_healthy_probe_frame())
        answer = _read_exactly(line, 5 + 4)
        assert answer[0] == 2  # the first byte on the line is the healthy unit's answer
        modbus.parse_rtu_read_response(answer, 2, 3, 2)
        assert line.read(16) == b""
        if silent[0] == 1:
            assert sim.requests(1)[0] == received + 1  # it did get the request
    sim.set_fault(1, "no_answer", on=False)
    modbus.parse_rtu_read_response(_rtu(line, 1, 3, 0, 6), 1, 3, 6)


def test_rtu_slow_answer_comes_after_others(sim: RunningStation, line: serial.Serial) -> None:
    sim.set_fault(1, "slow", delay=1.5)
    line.reset_input_buffer()
    line.write(modbus.rtu_read_request(1, 3, 0, 6))
    line.write(_healthy_probe_frame())
    first = _read_exactly(line, 9)
    modbus.parse_rtu_read_response(first, 2, 3, 2)  # the healthy unit is not held up
    late = _read_exactly(line, 5 + 12)
    assert len(modbus.parse_rtu_read_response(late, 1, 3, 6)) == 6  # the slow one, later


def test_rtu_wrong_word_order_swaps_words(sim: RunningStation, line: serial.Serial) -> None:
    sim.set_fault(3, "wrong_word_order")
    words = modbus.parse_rtu_read_response(_rtu(line, 3, 4, 0, 18), 3, 4, 18)
    served = sim.served(3)
    assert served is not None
    so2 = decode_value(words[0:2], "float32")
    assert so2 != served.values["SO2"]
    assert decode_value(words[0:2], "float32", word_order="little") == served.values["SO2"]
    flow = decode_value(words[14:18], "float64", word_order="little")
    assert flow == served.values["Flow"]
    # A Hach (low word first) gone wrong sends high word first. (The 2.4e-41 symptom of
    # swapped words needs a round value: tests/test_codec.py shows it.)
    sim.set_fault(1, "wrong_word_order")
    hach = modbus.parse_rtu_read_response(_rtu(line, 1, 3, 0, 6), 1, 3, 6)
    served = sim.served(1)
    assert served is not None
    assert decode_value(hach[0:2], "float32", word_order="little") != served.values["COD"]
    assert decode_value(hach[0:2], "float32", word_order="big") == served.values["COD"]


@pytest.mark.parametrize(("function", "address", "count", "code"), [
    (3, 100, 2, 2),     # outside the device's registers
    (4, 0, 2, 2),       # hach_sc has no input registers
    (3, 0, 126, 3),     # more than 125 words
])
def test_rtu_protocol_exceptions(line: serial.Serial, function: int, address: int, count: int,
                                 code: int) -> None:
    body = bytes((1, function)) + address.to_bytes(2, "big") + count.to_bytes(2, "big")
    line.reset_input_buffer()
    line.write(body + modbus.crc16(body).to_bytes(2, "little"))
    with pytest.raises(ModbusExceptionResponse) as info:
        modbus.parse_rtu_read_response(_read_exactly(line, 5), 1, function, 1)
    assert info.value.code == code


def test_rtu_other_function_is_exception_01(line: serial.Serial) -> None:
    body = bytes((1, 6, 0, 0, 0, 1))  # FC06 write single register
    line.reset_input_buffer()
    line.write(body + modbus.crc16(body).to_bytes(2, "little"))
    with pytest.raises(ModbusExceptionResponse) as info:
        modbus.parse_rtu_read_response(_read_exactly(line, 5), 1, 6, 1)
    assert info.value.code == 1


# --------------------------------------------------------------------------- TCP

def _tcp(sock: socket.socket, tid: int, unit: int, function: int, address: int,
         count: int) -> bytes:
    sock.sendall(modbus.tcp_read_request(tid, unit, function, address, count))
    return _recv_adu(sock)


def _recv_adu(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 7:
        data += sock.recv(7 - len(data))
    total = modbus.tcp_frame_length(data)
    while len(data) < total:
        chunk = sock.recv(total - len(data))
        assert chunk
        data += chunk
    return data


@pytest.fixture
def conn(sim: RunningStation) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", sim.tcp_port or 0), timeout=DEADLINE)
    yield sock
    sim.clear_faults()
    sock.close()


def test_tcp_faults_on_the_wire(sim: RunningStation, conn: socket.socket) -> None:
    modbus.parse_tcp_read_response(_tcp(conn, 1, 2, 3, 0, 2), 1, 2, 3, 2)
    sim.set_fault(2, "crc_error")  # TCP has no CRC: the PDU byte count is broken instead
    with pytest.raises(FrameError, match="byte count"):
        modbus.parse_tcp_read_response(_tcp(conn, 2, 2, 3, 0, 2), 2, 2, 3, 2)
    sim.set_fault(2, "crc_error", on=False)
    sim.set_fault(2, "exception", code=11)
    with pytest.raises(ModbusExceptionResponse) as info:
        modbus.parse_tcp_read_response(_tcp(conn, 3, 2, 3, 0, 2), 3, 2, 3, 2)
    assert info.value.code == 11
    sim.set_fault(2, "exception", on=False)
    sim.set_fault(2, "no_answer")
    conn.sendall(modbus.tcp_read_request(4, 2, 3, 0, 2))  # silent ...
    answer = _tcp(conn, 5, 1, 3, 0, 6)                     # ... so the next answer is unit 1's
    modbus.parse_tcp_read_response(answer, 5, 1, 3, 6)
    sim.set_fault(2, "no_answer", on=False)
    sim.set_fault(2, "wrong_word_order")  # int16 values have no words to swap
    modbus.parse_tcp_read_response(_tcp(conn, 6, 2, 3, 0, 2), 6, 2, 3, 2)


def test_tcp_garbage(sim: RunningStation, conn: socket.socket) -> None:
    sim.set_fault(1, "garbage")
    conn.sendall(modbus.tcp_read_request(7, 1, 3, 0, 6))
    data = b""
    deadline = time.monotonic() + DEADLINE
    while len(data) < 3 and time.monotonic() < deadline:
        data += conn.recv(64)
    with pytest.raises(FrameError):
        modbus.parse_tcp_read_response(data, 7, 1, 3, 6)


def test_tcp_unknown_unit_is_gateway_exception(conn: socket.socket) -> None:
    with pytest.raises(ModbusExceptionResponse) as info:
        modbus.parse_tcp_read_response(_tcp(conn, 8, 42, 3, 0, 2), 8, 42, 3, 2)
    assert info.value.code == 0x0B


def test_set_fault_rejects_unknown_names(sim: RunningStation) -> None:
    with pytest.raises(ValueError, match="unknown fault 'melt'"):
        sim.set_fault(1, "melt")
    with pytest.raises(ValueError, match="exception code 99"):
        sim.set_fault(1, "exception", code=99)
    with pytest.raises(KeyError, match="unit id 77"):
        sim.set_fault(77, "slow")


def test_rtu_bus_survives_line_noise(sim: RunningStation, line: serial.Serial) -> None:
    import random

    rng = random.Random(7)
    for _ in range(20):
        line.write(rng.randbytes(rng.randint(1, 30)))
    line.write(_healthy_probe_frame())  # right behind the noise: found by resynchronising
    answer = _read_exactly(line, 9)
    assert modbus.parse_rtu_read_response(answer, 2, 3, 2)
