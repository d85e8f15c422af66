"""Sans-IO Modbus framing: bytes in, bytes out, for both the master and the slave side.

The poller (master), the simulator (slave) and the benchmarks share this one implementation of
the wire format, so what we send is exactly what we parse. Nothing here touches a port, a
socket or a clock; the transports at the edge do that.

Only what a data logger needs is framed: FC03 (read holding registers), FC04 (read input
registers) and exception responses. A slave receiving any other function answers exception 01.

RTU frames are delimited by silence on the line, so a master cannot find the end of a response
by looking for a delimiter; :func:`rtu_response_length` tells it how many bytes to wait for
once the first bytes have arrived.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

READ_HOLDING = 3
READ_INPUT = 4
READ_FUNCTIONS = (READ_HOLDING, READ_INPUT)
MAX_READ_COUNT = 125  # Modbus limit for FC03/FC04: 125 registers = 250 data bytes
EXCEPTION_BIT = 0x80

ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
ILLEGAL_DATA_VALUE = 3
SLAVE_DEVICE_FAILURE = 4

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    5: "acknowledge",
    6: "slave device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}

RTU_BITS_PER_CHAR = 11  # start + 8 data + parity (or 2nd stop) + stop


class ModbusError(Exception):
    """Any failure of a Modbus transaction that the poller turns into an offline sample."""


class FrameError(ModbusError):
    """The bytes are not a valid frame for the transaction: bad CRC, wrong unit, truncated."""


class ModbusExceptionResponse(ModbusError):
    """The slave answered, with a Modbus exception code instead of data."""

    def __init__(self, unit: int, function: int, code: int) -> None:
        self.unit = unit
        self.function = function
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__(f"unit {unit} function {function:02d}: exception {code:02d} ({name})")


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """A decoded read request, as a slave (the simulator) sees it."""

    unit: int
    function: int
    address: int
    count: int


# --------------------------------------------------------------------------- CRC

def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<H", crc16(body))


def _check_crc(frame: bytes) -> None:
    if len(frame) < 4:
        raise FrameError(f"frame of {len(frame)} bytes is shorter than the 4-byte minimum")
    expected = crc16(frame[:-2])
    got = frame[-2] | (frame[-1] << 8)
    if expected != got:
        raise FrameError(
            f"CRC mismatch at bytes {len(frame) - 2}-{len(frame) - 1}: "
            f"got {got:04x}, computed {expected:04x}"
        )


# --------------------------------------------------------------------------- PDU

def _check_read_args(function: int, address: int, count: int) -> None:
    if function not in READ_FUNCTIONS:
        raise ValueError(f"function {function} is not a read (03 or 04)")
    if not 0 <= address <= 0xFFFF:
        raise ValueError(f"register address {address} is outside 0..65535")
    if not 1 <= count <= MAX_READ_COUNT:
        raise ValueError(f"register count {count} is outside 1..{MAX_READ_COUNT}")
    if address + count > 0x10000:
        raise ValueError(f"registers {address}..{address + count - 1} run past 65535")


def read_request_pdu(function: int, address: int, count: int) -> bytes:
    _check_read_args(function, address, count)
    return struct.pack(">BHH", function, address, count)


def parse_read_response_pdu(pdu: bytes, unit: int, function: int, count: int) -> list[int]:
    """Words of a read response PDU; raises for an exception PDU or any mismatch."""
    if not pdu:
        raise FrameError("empty PDU")
    if pdu[0] == function | EXCEPTION_BIT:
        if len(pdu) != 2:
            raise FrameError(f"exception PDU of {len(pdu)} bytes, expected 2")
        raise ModbusExceptionResponse(unit, function, pdu[1])
    if pdu[0] != function:
        raise FrameError(f"byte 1: function {pdu[0]:#04x}, expected {function:#04x}")
    if len(pdu) < 2 or pdu[1] != 2 * count:
        got = pdu[1] if len(pdu) > 1 else "nothing"
        raise FrameError(f"byte 2: byte count {got}, expected {2 * count}")
    if len(pdu) != 2 + 2 * count:
        raise FrameError(f"PDU of {len(pdu)} bytes, expected {2 + 2 * count}")
    return list(struct.unpack(f">{count}H", pdu[2:]))


def read_response_pdu(function: int, words: list[int] | tuple[int, ...]) -> bytes:
    if not 1 <= len(words) <= MAX_READ_COUNT:
        raise ValueError(f"{len(words)} words do not fit one read response")
    return struct.pack(f">BB{len(words)}H", function, 2 * len(words), *words)


def exception_pdu(function: int, code: int) -> bytes:
    return bytes(((function | EXCEPTION_BIT) & 0xFF, code))


def _parse_request_pdu(unit: int, pdu: bytes) -> ReadRequest:
    if len(pdu) != 5:
        raise FrameError(f"request PDU of {len(pdu)} bytes, expected 5")
    function, address, count = struct.unpack(">BHH", pdu)
    return ReadRequest(unit, function, address, count)


# --------------------------------------------------------------------------- RTU

def rtu_read_request(unit: int, function: int, address: int, count: int) -> bytes:
    """The 8-byte RTU frame of an FC03/FC04 request."""
    if not 0 <= unit <= 247:
        raise ValueError(f"unit id {unit} is outside 0..247")
    return _with_crc(bytes((unit,)) + read_request_pdu(function, address, count))


def rtu_response_length(head: bytes, function: int, count: int) -> int | None:
    """How long the response starting with ``head`` will be, or None until 2 bytes are in.

    A normal FC03/04 response is 5 + 2N bytes; an exception response is 5 bytes. Any other
    function byte is garbage: the caller reads until the line goes quiet and lets the parser
    name the fault.
    """
    if len(head) < 2:
        return None
    if head[1] == function | EXCEPTION_BIT:
        return 5
    return 5 + 2 * count


def parse_rtu_read_response(frame: bytes, unit: int, function: int, count: int) -> list[int]:
    """Words of an RTU read response; raises FrameError or ModbusExceptionResponse."""
    _check_crc(frame)
    if frame[0] != unit:
        raise FrameError(f"byte 0: unit {frame[0]}, expected {unit}")
    return parse_read_response_pdu(frame[1:-2], unit, function, count)


def parse_rtu_request(frame: bytes) -> ReadRequest:
    """Slave side: decode a request frame (any function; the caller rejects non-reads)."""
    _check_crc(frame)
    return _parse_request_pdu(frame[0], frame[1:-2])


def rtu_read_response(unit: int, function: int, words: list[int] | tuple[int, ...]) -> bytes:
    return _with_crc(bytes((unit,)) + read_response_pdu(function, words))


def rtu_exception_response(unit: int, function: int, code: int) -> bytes:
    return _with_crc(bytes((unit,)) + exception_pdu(function, code))


WRITE_MULTIPLE = 16
MAX_WRITE_COUNT = 123  # Modbus limit for FC16


def rtu_write_request(unit: int, address: int, words: list[int] | tuple[int, ...]) -> bytes:
    """The RTU frame of an FC16 (write multiple registers) request."""
    if not 0 <= unit <= 247:
        raise ValueError(f"unit id {unit} is outside 0..247")
    if not 1 <= len(words) <= MAX_WRITE_COUNT:
        raise ValueError(f"{len(words)} words do not fit one FC16 write")
    if not 0 <= address <= 0xFFFF - (len(words) - 1):
        raise ValueError(f"registers {address}..{address + len(words) - 1} run past 65535")
    body = struct.pack(f">BBHHB{len(words)}H", unit, WRITE_MULTIPLE, address, len(words),
                       2 * len(words), *words)
    return _with_crc(body)


def rtu_write_response_length(head: bytes) -> int | None:
    """8 for an FC16 acknowledgement, 5 for an exception, None until 2 bytes are in."""
    if len(head) < 2:
        return None
    return 5 if head[1] == WRITE_MULTIPLE | EXCEPTION_BIT else 8


def parse_rtu_write_response(frame: bytes, unit: int, address: int, count: int) -> None:
    """Check an FC16 acknowledgement; raises FrameError or ModbusExceptionResponse."""
    _check_crc(frame)
    if frame[0] != unit:
        raise FrameError(f"byte 0: unit {frame[0]}, expected {unit}")
    pdu = frame[1:-2]
    if pdu[:1] == bytes((WRITE_MULTIPLE | EXCEPTION_BIT,)) and len(pdu) == 2:
        raise ModbusExceptionResponse(unit, WRITE_MULTIPLE, pdu[1])
    if pdu != struct.pack(">BHH", WRITE_MULTIPLE, address, count):
        raise FrameError(f"FC16 acknowledgement {pdu.hex(' ')} does not echo address "
                         f"{address}, count {count}")


def rtu_char_time(baud: int, bits_per_char: int = RTU_BITS_PER_CHAR) -> float:
    """Seconds one character occupies on the line (1.146 ms at 9600 baud)."""
    return bits_per_char / baud


def rtu_frame_gap(baud: int) -> float:
    """The silent interval that ends a frame: 3.5 characters, fixed 1.75 ms above 19200 baud."""
    return 0.00175 if baud > 19200 else 3.5 * rtu_char_time(baud)


def rtu_transaction_wire_time(count: int, baud: int) -> float:
    """Least time one FC03/04 read of ``count`` registers can take on the wire.

    Request (8 bytes) + gap + response (5 + 2N bytes) + gap: ~46 ms for 10 registers at 9600
    baud (11-bit characters, 1.146 ms each, and a 3.5-character gap after each frame).
    """
    chars = 8 + 5 + 2 * count
    return chars * rtu_char_time(baud) + 2 * rtu_frame_gap(baud)


# --------------------------------------------------------------------------- TCP (MBAP)

MBAP_LENGTH = 7  # transaction id, protocol id, length, unit id


def _mbap(transaction_id: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", transaction_id & 0xFFFF, 0, len(pdu) + 1, unit) + pdu


def tcp_read_request(transaction_id: int, unit: int, function: int, address: int,
                     count: int) -> bytes:
    return _mbap(transaction_id, unit, read_request_pdu(function, address, count))


def tcp_frame_length(header: bytes) -> int:
    """Total ADU length announced by a 7-byte MBAP header (validated)."""
    if len(header) < MBAP_LENGTH:
        raise FrameError(f"MBAP header of {len(header)} bytes, expected {MBAP_LENGTH}")
    protocol = int.from_bytes(header[2:4], "big")
    length = int.from_bytes(header[4:6], "big")
    if protocol != 0:
        raise FrameError(f"bytes 2-3: protocol id {protocol}, expected 0")
    if not 2 <= length <= 254:
        raise FrameError(f"bytes 4-5: length {length} is outside 2..254")
    return 6 + length


def parse_tcp_read_response(adu: bytes, transaction_id: int, unit: int, function: int,
                            count: int) -> list[int]:
    total = tcp_frame_length(adu)
    if len(adu) != total:
        raise FrameError(f"ADU of {len(adu)} bytes, MBAP announced {total}")
    tid = int.from_bytes(adu[:2], "big")
    if tid != transaction_id & 0xFFFF:
        raise FrameError(f"bytes 0-1: transaction id {tid}, expected {transaction_id & 0xFFFF}")
    if adu[6] != unit:
        raise FrameError(f"byte 6: unit {adu[6]}, expected {unit}")
    return parse_read_response_pdu(adu[MBAP_LENGTH:], unit, function, count)


def parse_tcp_request(adu: bytes) -> tuple[int, ReadRequest]:
    """Slave side: (transaction id, request) of a complete ADU."""
    total = tcp_frame_length(adu)
    if len(adu) != total:
        raise FrameError(f"ADU of {len(adu)} bytes, MBAP announced {total}")
    tid = int.from_bytes(adu[:2], "big")
    return tid, _parse_request_pdu(adu[6], adu[MBAP_LENGTH:])


def tcp_read_response(transaction_id: int, unit: int, function: int,
                      words: list[int] | tuple[int, ...]) -> bytes:
    return _mbap(transaction_id, unit, read_response_pdu(function, words))


def tcp_exception_response(transaction_id: int, unit: int, function: int, code: int) -> bytes:
    return _mbap(transaction_id, unit, exception_pdu(function, code))
