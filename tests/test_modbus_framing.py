"""The sans-IO Modbus framing core, checked against known frames and against pymodbus."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU

from drivers import modbus

words_st = st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=modbus.MAX_READ_COUNT)


def test_request_matches_the_textbook_frame() -> None:
    # Unit 1, FC03, address 0, 10 registers: the classic example frame 01 03 00 00 00 0A C5 CD.
    assert modbus.rtu_read_request(1, 3, 0, 10) == bytes.fromhex("01030000000AC5CD")


@given(st.binary(max_size=300))
def test_crc_agrees_with_pymodbus(data: bytes) -> None:
    # pymodbus returns the CRC as it stands on the wire (low byte first, read big-endian).
    crc = modbus.crc16(data)
    assert ((crc & 0xFF) << 8 | crc >> 8) == FramerRTU.compute_CRC(data)


@given(st.integers(0, 247), st.sampled_from(modbus.READ_FUNCTIONS), words_st)
def test_rtu_response_round_trip(unit: int, function: int, words: list[int]) -> None:
    frame = modbus.rtu_read_response(unit, function, words)
    assert len(frame) == 5 + 2 * len(words)
    assert modbus.rtu_response_length(frame[:2], function, len(words)) == len(frame)
    assert modbus.parse_rtu_read_response(frame, unit, function, len(words)) == words


@given(st.integers(0, 0xFFFF), st.integers(0, 247), st.sampled_from(modbus.READ_FUNCTIONS),
       words_st)
def test_tcp_response_round_trip(tid: int, unit: int, function: int, words: list[int]) -> None:
    adu = modbus.tcp_read_response(tid, unit, function, words)
    assert modbus.tcp_frame_length(adu[:7]) == len(adu)
    assert modbus.parse_tcp_read_response(adu, tid, unit, function, len(words)) == words


def test_requests_parse_on_the_slave_side() -> None:
    req = modbus.parse_rtu_request(modbus.rtu_read_request(7, 4, 300, 12))
    assert req == modbus.ReadRequest(7, 4, 300, 12)
    tid, req = modbus.parse_tcp_request(modbus.tcp_read_request(99, 3, 3, 40, 2))
    assert (tid, req) == (99, modbus.ReadRequest(3, 3, 40, 2))


def test_exception_response_names_the_code() -> None:
    frame = modbus.rtu_exception_response(5, 3, modbus.ILLEGAL_DATA_ADDRESS)
    assert modbus.rtu_response_length(frame[:2], 3, 10) == 5
    expected = r"exception 02 \(illegal data address\)"
    with pytest.raises(modbus.ModbusExceptionResponse, match=expected):
        modbus.parse_rtu_read_response(frame, 5, 3, 10)


def test_corrupt_crc_names_the_bytes() -> None:
    frame = bytearray(modbus.rtu_read_response(1, 3, [1, 2]))
    frame[3] ^= 0x01
    with pytest.raises(modbus.FrameError, match="CRC mismatch at bytes 7-8"):
        modbus.parse_rtu_read_response(bytes(frame), 1, 3, 2)


def test_answer_from_the_wrong_unit_is_rejected() -> None:
    with pytest.raises(modbus.FrameError, match="byte 0: unit 2, expected 1"):
        modbus.parse_rtu_read_response(modbus.rtu_read_response(2, 3, [1]), 1, 3, 1)


@pytest.mark.parametrize(
    ("function", "address", "count", "message"),
    [(6, 0, 1, "not a read"), (3, 70000, 1, "outside 0..65535"), (3, 0, 126, "outside 1..125"),
     (3, 65535, 2, "run past 65535")],
)
def test_bad_request_arguments(function: int, address: int, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        modbus.rtu_read_request(1, function, address, count)


@given(st.binary(max_size=260), st.integers(1, 125))
def test_random_bytes_only_raise_modbus_errors(data: bytes, count: int) -> None:
    for parse in (
        lambda: modbus.parse_rtu_read_response(data, 1, 3, count),
        lambda: modbus.parse_tcp_read_response(data, 1, 1, 3, count),
        lambda: modbus.parse_rtu_request(data),
        lambda: modbus.parse_tcp_request(data),
    ):
        with contextlib.suppress(modbus.ModbusError):
            parse()


def test_wire_time_matches_design_figure() -> None:
    # Reading 10 registers at 9600 baud takes at least ~46 ms on the wire.
    assert modbus.rtu_char_time(9600) == pytest.approx(1.146e-3, rel=1e-3)
    assert modbus.rtu_transaction_wire_time(10, 9600) == pytest.approx(0.0464, abs=0.0015)
    assert modbus.rtu_frame_gap(38400) == 0.00175
