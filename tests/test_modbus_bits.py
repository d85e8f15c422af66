"""Coils, discrete inputs and writes (FC01/02/05/06/15/16): framing against the Modbus spec's
own example frames, round trips, our master against pymodbus's server (over Modbus TCP and
with its RTU framer on a TCP socket), and our simulator against pymodbus's and mbpoll's masters.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus import FramerType
from pymodbus.client import ModbusTcpClient
from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusTcpServer

from drivers import modbus
from drivers.transport import RtuOverTcpTransport, TcpTransport
from hw_sim import RunningStation, parse_station, running_station

UNIT = 3
bits_st = st.lists(st.booleans(), min_size=1, max_size=modbus.MAX_BIT_COUNT)


# --------------------------------------------------------------------------- framing

def test_fc01_matches_the_spec_example() -> None:
    # Modbus Application Protocol v1.1b3, 6.1: coils 20-38 of slave 17; answer CD 6B 05.
    request = modbus.read_bits_request_pdu(1, 19, 19)
    assert request == bytes.fromhex("0100130013")
    answer = bytes.fromhex("0103CD6B05")
    bits = modbus.bits_of(modbus.check_response_pdu(answer, request, 17), 19)
    assert bits[:8] == [True, False, True, True, False, False, True, True]  # 0xCD, LSB first
    assert modbus.pack_bits(bits) == bytes.fromhex("CD6B05")
    assert modbus.response_pdu_length(request, 1) == len(answer)


def test_fc05_and_fc15_match_the_spec_examples() -> None:
    assert modbus.write_coil_request_pdu(172, True) == bytes.fromhex("0500ACFF00")
    assert modbus.write_coil_request_pdu(172, False) == bytes.fromhex("0500AC0000")
    # 6.11: coils 20-29 of slave 17 set to CD 01
    bits = modbus.unpack_bits(bytes.fromhex("CD01"), 10)
    assert modbus.write_coils_request_pdu(19, bits) == bytes.fromhex("0F0013000A02CD01")
    assert modbus.write_register_request_pdu(1, 3) == bytes.fromhex("0600010003")


@given(st.integers(0, 247), st.sampled_from(modbus.BIT_READ_FUNCTIONS), bits_st)
def test_bit_read_round_trip_over_rtu(unit: int, function: int, bits: list[bool]) -> None:
    request = modbus.read_bits_request_pdu(function, 0, len(bits))
    frame = modbus.rtu_frame(unit, modbus.read_bits_response_pdu(function, bits))
    assert modbus.rtu_expected_length(request, frame[:2]) == len(frame)
    assert modbus.bits_of(modbus.rtu_response_pdu(frame, unit, request), len(bits)) == bits


@given(st.integers(0, 0xFFFF), st.integers(0, 247),
       st.lists(st.booleans(), min_size=1, max_size=modbus.MAX_WRITE_COILS))
def test_fc15_request_parses_on_the_slave_side_and_its_echo_checks(
        tid: int, unit: int, bits: list[bool]) -> None:
    request = modbus.write_coils_request_pdu(7, bits)
    _, req = modbus.parse_tcp_request(modbus.tcp_adu(tid, unit, request))
    assert (req.function, req.address, req.count) == (15, 7, len(bits))
    assert modbus.unpack_bits(req.data, req.count) == bits
    echo = modbus.tcp_adu(tid, unit, modbus.write_response_pdu(request))
    assert modbus.tcp_response_pdu(echo, tid, unit, request) == request[:5]


@pytest.mark.parametrize(("call", "message"), [
    (lambda: modbus.read_bits_request_pdu(1, 0, 2001), "bit count 2001 is outside 1..2000"),
    (lambda: modbus.read_bits_request_pdu(1, 0, 0), "bit count 0 is outside 1..2000"),
    (lambda: modbus.read_bits_request_pdu(3, 0, 1), "not a bit read"),
    (lambda: modbus.read_bits_request_pdu(2, 65535, 2), "bits 65535..65536 run past 65535"),
    (lambda: modbus.write_coils_request_pdu(0, [True] * 1969), "outside 1..1968"),
    (lambda: modbus.write_register_request_pdu(0, 65536), "value 65536"),
])
def test_bad_arguments_are_refused_before_sending(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(("answer", "message"), [
    ("0500ADFF00", "FC05 acknowledgement 05 00 ad ff 00 does not echo 05 00 ac ff 00"),
    ("0102CD", "byte 2: byte count 2, expected 1"),
    ("0101", "PDU of 2 bytes, expected 3"),
    ("0301CD", "byte 1: function 0x03, expected 0x01"),
    ("8102", "exception 02 (illegal data address)"),
])
def test_malformed_answers_are_named_by_byte(answer: str, message: str) -> None:
    request = (modbus.write_coil_request_pdu(172, True) if answer.startswith("05")
               else modbus.read_bits_request_pdu(1, 0, 8))
    with pytest.raises(modbus.ModbusError, match=re.escape(message)):
        modbus.check_response_pdu(bytes.fromhex(answer), request, 1)


# --------------------------------------------------------------------------- pymodbus server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PymodbusServer:
    """pymodbus's own TCP server on its own loop and thread, with its MBAP or RTU framer."""

    def __init__(self, framer: FramerType) -> None:
        # pymodbus addresses its blocks from 1: protocol address 0 is block element 1
        self.device = ModbusDeviceContext(
            co=ModbusSequentialDataBlock(1, [False] * 64),
            di=ModbusSequentialDataBlock(1, [i % 3 == 0 for i in range(64)]),
            hr=ModbusSequentialDataBlock(1, [0] * 64),
            ir=ModbusSequentialDataBlock(1, list(range(100, 164))))
        self.port = _free_port()
        self.framer = framer
        self.loop = asyncio.new_event_loop()
        made = threading.Event()

        async def serve() -> None:  # the server binds itself to the loop it is made on
            self.server = ModbusTcpServer(
                ModbusServerContext(devices={UNIT: self.device}, single=False),
                framer=framer, address=("127.0.0.1", self.port))
            made.set()
            await self.server.serve_forever()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(serve(),),
                                       daemon=True)
        self.thread.start()
        assert made.wait(10)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), 0.5):
                break
            assert time.monotonic() < deadline, "pymodbus server did not listen within 10 s"
            time.sleep(0.02)

    def get(self, function: int, address: int, count: int) -> list[int]:
        """What pymodbus's own client reads from its server (not through our code)."""
        client = ModbusTcpClient("127.0.0.1", port=self.port, framer=self.framer, timeout=2,
                                 retries=0)
        assert client.connect()
        try:
            if function == 1:
                rr = client.read_coils(address, count=count, device_id=UNIT)
                assert not rr.isError(), rr
                return [int(b) for b in rr.bits[:count]]
            rr = client.read_holding_registers(address, count=count, device_id=UNIT)
            assert not rr.isError(), rr
            return list(rr.registers)
        finally:
            client.close()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module", params=["tcp", "rtu-over-tcp"])
def peer(request: pytest.FixtureRequest) -> Iterator[tuple[PymodbusServer, str]]:
    server = PymodbusServer(FramerType.SOCKET if request.param == "tcp" else FramerType.RTU)
    yield server, request.param
    server.close()


def test_our_master_against_pymodbus_server(peer: tuple[PymodbusServer, str]) -> None:
    server, kind = peer
    t = (TcpTransport("127.0.0.1", server.port) if kind == "tcp"
         else RtuOverTcpTransport("127.0.0.1", server.port))
    try:
        assert t.read_bits(UNIT, 2, 0, 20, 2.0) == [i % 3 == 0 for i in range(20)]
        t.write_coil(UNIT, 5, True, 2.0)
        t.write_coils(UNIT, 10, [True, False, True, True, False, False, True, True, True], 2.0)
        assert server.get(1, 0, 20) == [i == 5 or i in (10, 12, 13, 16, 17, 18)
                                        for i in range(20)]
        assert t.read_bits(UNIT, 1, 0, 20, 2.0) == [bool(b) for b in server.get(1, 0, 20)]
        t.write_coil(UNIT, 5, False, 2.0)
        assert t.read_bits(UNIT, 1, 5, 1, 2.0) == [False]
        t.write_register(UNIT, 2, 0xBEEF, 2.0)
        t.write_registers(UNIT, 3, [1, 2, 3], 2.0)
        assert server.get(3, 2, 4) == [0xBEEF, 1, 2, 3]
        assert t.read_registers(UNIT, 3, 2, 4, 2.0) == [0xBEEF, 1, 2, 3]
        assert t.read_registers(UNIT, 4, 0, 3, 2.0) == [100, 101, 102]
        with pytest.raises(modbus.ModbusExceptionResponse, match="function 01: exception 02"):
            t.read_bits(UNIT, 1, 60, 10, 2.0)
    finally:
        t.close()


# --------------------------------------------------------------------------- our simulator

SIM_UNIT = 5


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningStation]:
    doc = {"name": "sampler", "device": [
        {"name": "sampler", "profile": "ph_probe", "unit": SIM_UNIT, "transports": ["rtu", "tcp"],
         "coils": 16, "discrete_inputs": 20},
        {"name": "plain", "profile": "ph_probe", "unit": SIM_UNIT + 1,
         "transports": ["rtu", "tcp"]},
    ]}
    with running_station(parse_station(doc), tcp_port=0, rtu_tcp_port=0,
                         clock=lambda: 1_780_000_000.0) as s:
        yield s


@pytest.mark.parametrize("kind", ["tcp", "rtu-over-tcp"])
def test_pymodbus_master_against_our_simulator(sim: RunningStation, kind: str) -> None:
    port = sim.tcp_port if kind == "tcp" else sim.rtu_tcp_port
    client = ModbusTcpClient("127.0.0.1", port=port or 0, timeout=2, retries=0,
                             framer=FramerType.SOCKET if kind == "tcp" else FramerType.RTU)
    assert client.connect()
    try:
        assert not client.write_coils(0, [False] * 16, device_id=SIM_UNIT).isError()
        assert not client.write_coil(3, True, device_id=SIM_UNIT).isError()
        assert not client.write_coils(8, [True, True, False, True], device_id=SIM_UNIT).isError()
        want = [i in (3, 8, 9, 11) for i in range(16)]
        assert sim.station.coils(SIM_UNIT) == want
        rr = client.read_coils(0, count=16, device_id=SIM_UNIT)
        assert rr.bits[:16] == want
        rr = client.read_discrete_inputs(0, count=20, device_id=SIM_UNIT)
        assert rr.bits[:20] == want + [False] * 4  # input i reads coil i; past the coils, 0
        rr = client.read_coils(10, count=7, device_id=SIM_UNIT)
        assert rr.isError() and rr.exception_code == modbus.ILLEGAL_DATA_ADDRESS
        rr = client.read_coils(0, count=1, device_id=SIM_UNIT + 1)  # a device without coils
        assert rr.isError() and rr.exception_code == modbus.ILLEGAL_FUNCTION
    finally:
        client.close()


def _mbpoll(sim: RunningStation, *args: str) -> str:
    assert shutil.which("mbpoll"), "mbpoll is not installed: apt-get install mbpoll"
    out = subprocess.run(["mbpoll", "-m", "tcp", "-p", str(sim.tcp_port), "-a", str(SIM_UNIT),
                          "-1", "-o", "2", *args], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_mbpoll_writes_and_reads_coils_and_inputs_our_master_agrees(sim: RunningStation) -> None:
    """mbpoll (libmodbus) writes coils 1-4 (1-based) and reads them back as coils (-t 0) and
    discrete inputs (-t 1); our master, through the serial device server, reads the same."""
    _mbpoll(sim, "-t", "0", "-r", "1", "127.0.0.1", *"0" * 16)
    _mbpoll(sim, "-t", "0", "-r", "1", "127.0.0.1", "1", "0", "1", "1")
    coils = dict(re.findall(r"^\[(\d+)\]:\s+(\d)", _mbpoll(sim, "-t", "0", "-r", "1", "-c", "8",
                                                            "127.0.0.1"), re.MULTILINE))
    inputs = dict(re.findall(r"^\[(\d+)\]:\s+(\d)", _mbpoll(sim, "-t", "1", "-r", "1", "-c", "8",
                                                             "127.0.0.1"), re.MULTILINE))
    theirs = [coils[str(i)] == "1" for i in range(1, 9)]
    assert theirs == [True, False, True, True, False, False, False, False]
    assert [inputs[str(i)] == "1" for i in range(1, 9)] == theirs
    t = RtuOverTcpTransport("127.0.0.1", sim.rtu_tcp_port or 0)
    try:
        assert t.read_bits(SIM_UNIT, 1, 0, 8, 2.0) == theirs
        assert t.read_bits(SIM_UNIT, 2, 0, 8, 2.0) == theirs
        t.write_coil(SIM_UNIT, 1, True, 2.0)
    finally:
        t.close()
    coils = dict(re.findall(r"^\[(\d+)\]:\s+(\d)", _mbpoll(sim, "-t", "0", "-r", "2", "-c", "1",
                                                            "127.0.0.1"), re.MULTILINE))
    assert coils == {"2": "1"}
