"""Sans-IO Modbus framing: bytes in, bytes out, for both the master and the slave side.

The poller (master), the simulator (slave) and the benchmarks share this one implementation of
the wire format, so what we send is exactly what we parse. Nothing here touches a port, a
socket or a clock; the transports at the edge do that.

Only what a data logger needs is framed: FC03/FC04 (read holding/input registers), FC01/FC02
(read coils/discrete inputs: an automatic sampler's busy and done contacts), FC05/FC15 (write
one/several coils: the sampler's trigger), FC06/FC16 (write one/several registers) and
exception responses. A slave receiving any other function answers exception 01.

Every transaction is a request PDU and a response PDU; the same PDU travels in an RTU frame
(unit, PDU, CRC: on a serial line, or raw on a TCP socket through a serial device server) or
in an MBAP frame (Modbus TCP). :func:`response_pdu_length` derives, from the request PDU alone,
how long the answer must be, and :func:`check_response_pdu` whether it is that answer; the
transports use these two for every function, so a new function needs no new transport code.

RTU frames are delimited by silence on the line, so a master cannot find the end of a response
by looking for a delimiter; :func:`rtu_response_length` tells it how many bytes to wait for
once the first bytes have arrived.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

READ_COILS = 1
READ_DISCRETE_INPUTS = 2
READ_HOLDING = 3
READ_INPUT = 4
WRITE_COIL = 5
WRITE_REGISTER = 6
WRITE_COILS = 15
WRITE_MULTIPLE = 16
READ_FUNCTIONS = (READ_HOLDING, READ_INPUT)
BIT_READ_FUNCTIONS = (READ_COILS, READ_DISCRETE_INPUTS)
WRITE_FUNCTIONS = (WRITE_COIL, WRITE_REGISTER, WRITE_COILS, WRITE_MULTIPLE)
MAX_READ_COUNT = 125  # Modbus limit for FC03/FC04: 125 registers = 250 data bytes
MAX_BIT_COUNT = 2000  # FC01/FC02: 2000 bits = 250 data bytes
MAX_WRITE_COUNT = 123  # FC16: 123 registers = 246 data bytes in a 253-byte PDU
MAX_WRITE_COILS = 1968  # FC15: 0x7B0 coils = 246 data bytes
COIL_ON = 0xFF00  # FC05's only two values: 0xFF00 on, 0x0000 off; anything else is refused
COIL_OFF = 0x0000
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
    """A decoded request, as a slave (the simulator) sees it.

    For reads and FC15/16 ``count`` is the number of registers or bits; for FC05/06 it is the
    value written (0xFF00/0x0000 for a coil). ``data`` is what follows the byte count of an
    FC15/16 request (the packed coils or the register words), empty for every other function.
    """

    unit: int
    function: int
    address: int
    count: int
    data: bytes = b""


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


def _asked(function: int, count: int) -> bytes:
    """The request PDU a read response is checked against (unvalidated: the parse functions
    take whatever function and count the caller asked with, and name what came back)."""
    return struct.pack(">BHH", function & 0xFF, 0, count & 0xFFFF)


def parse_read_response_pdu(pdu: bytes, unit: int, function: int, count: int) -> list[int]:
    """Words of a read response PDU; raises for an exception PDU or any mismatch."""
    return registers_of(check_response_pdu(pdu, _asked(function, count), unit))


def read_response_pdu(function: int, words: list[int] | tuple[int, ...]) -> bytes:
    if not 1 <= len(words) <= MAX_READ_COUNT:
        raise ValueError(f"{len(words)} words do not fit one read response")
    return struct.pack(f">BB{len(words)}H", function, 2 * len(words), *words)


def exception_pdu(function: int, code: int) -> bytes:
    return bytes(((function | EXCEPTION_BIT) & 0xFF, code))


def _parse_request_pdu(unit: int, pdu: bytes) -> ReadRequest:
    if pdu[:1] in (bytes((WRITE_COILS,)), bytes((WRITE_MULTIPLE,))) and len(pdu) >= 6:
        function, address, count, nbytes = struct.unpack(">BHHB", pdu[:6])
        if len(pdu) != 6 + nbytes:
            raise FrameError(f"request PDU of {len(pdu)} bytes, its byte count (byte 6) "
                             f"announced {6 + nbytes}")
        return ReadRequest(unit, function, address, count, pdu[6:])
    if len(pdu) != 5:
        raise FrameError(f"request PDU of {len(pdu)} bytes, expected 5")
    function, address, count = struct.unpack(">BHH", pdu)
    return ReadRequest(unit, function, address, count)


# --------------------------------------------------------------------------- bits, writes

def _check_span(what: str, address: int, count: int, limit: int) -> None:
    if not 0 <= address <= 0xFFFF:
        raise ValueError(f"{what} address {address} is outside 0..65535")
    if not 1 <= count <= limit:
        raise ValueError(f"{what} count {count} is outside 1..{limit}")
    if address + count > 0x10000:
        raise ValueError(f"{what}s {address}..{address + count - 1} run past 65535")


def pack_bits(bits: list[bool] | tuple[bool, ...]) -> bytes:
    """Bits as Modbus packs them: the first bit in the low bit of the first byte, zero-padded."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def unpack_bits(data: bytes, count: int) -> list[bool]:
    """The first ``count`` bits of ``data``, low bit of each byte first (pack_bits' inverse)."""
    return [bool(data[i >> 3] >> (i & 7) & 1) for i in range(count)]


def read_bits_request_pdu(function: int, address: int, count: int) -> bytes:
    """FC01 (coils) or FC02 (discrete inputs): ``count`` bits from ``address``."""
    if function not in BIT_READ_FUNCTIONS:
        raise ValueError(f"function {function} is not a bit read (01 or 02)")
    _check_span("bit", address, count, MAX_BIT_COUNT)
    return struct.pack(">BHH", function, address, count)


def read_bits_response_pdu(function: int, bits: list[bool] | tuple[bool, ...]) -> bytes:
    if not 1 <= len(bits) <= MAX_BIT_COUNT:
        raise ValueError(f"{len(bits)} bits do not fit one bit-read response")
    data = pack_bits(bits)
    return bytes((function, len(data))) + data


def write_coil_request_pdu(address: int, on: bool) -> bytes:
    """FC05: one coil on (0xFF00) or off (0x0000)."""
    _check_span("coil", address, 1, 1)
    return struct.pack(">BHH", WRITE_COIL, address, COIL_ON if on else COIL_OFF)


def write_register_request_pdu(address: int, value: int) -> bytes:
    """FC06: one holding register."""
    _check_span("register", address, 1, 1)
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"register value {value} is outside 0..65535")
    return struct.pack(">BHH", WRITE_REGISTER, address, value)


def write_coils_request_pdu(address: int, bits: list[bool] | tuple[bool, ...]) -> bytes:
    """FC15: ``len(bits)`` coils from ``address``."""
    _check_span("coil", address, len(bits), MAX_WRITE_COILS)
    data = pack_bits(bits)
    return struct.pack(">BHHB", WRITE_COILS, address, len(bits), len(data)) + data


def write_registers_request_pdu(address: int, words: list[int] | tuple[int, ...]) -> bytes:
    """FC16: ``len(words)`` holding registers from ``address``."""
    _check_span("register", address, len(words), MAX_WRITE_COUNT)
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise ValueError(f"register values {list(words)} are not all in 0..65535")
    return struct.pack(f">BHHB{len(words)}H", WRITE_MULTIPLE, address, len(words),
                       2 * len(words), *words)


def write_response_pdu(request_pdu: bytes) -> bytes:
    """A slave's acknowledgement of a write: the request's first five bytes, echoed."""
    return request_pdu[:5]


def response_pdu_length(request_pdu: bytes, first: int) -> int:
    """Bytes of the response PDU to ``request_pdu`` whose first byte is ``first``.

    An exception is 2 bytes; FC03/04 are 2 + 2N, FC01/02 are 2 + ceil(N/8); the four writes
    echo 5 bytes. An unknown function byte (garbage) gets the normal length, so that the
    caller waits for that, cuts the frame at silence, and the parser names the byte.
    """
    function = request_pdu[0]
    if first == function | EXCEPTION_BIT:
        return 2
    count = int.from_bytes(request_pdu[3:5], "big")
    if function in READ_FUNCTIONS:
        return 2 + 2 * count
    if function in BIT_READ_FUNCTIONS:
        return 2 + (count + 7) // 8
    return 5


def check_response_pdu(pdu: bytes, request_pdu: bytes, unit: int) -> bytes:
    """``pdu`` if it is a normal answer to ``request_pdu``; raises naming the byte otherwise.

    Byte numbers are those of an RTU frame (byte 0 the unit id), as in every message here. A
    write's answer must echo the request's address and value or count: a slave that
    acknowledges something else has not done what was asked.
    """
    function = request_pdu[0]
    if not pdu:
        raise FrameError("empty PDU")
    if pdu[0] == function | EXCEPTION_BIT:
        if len(pdu) != 2:
            raise FrameError(f"exception PDU of {len(pdu)} bytes, expected 2")
        raise ModbusExceptionResponse(unit, function, pdu[1])
    if pdu[0] != function:
        raise FrameError(f"byte 1: function {pdu[0]:#04x}, expected {function:#04x}")
    expected = response_pdu_length(request_pdu, function)
    if function in WRITE_FUNCTIONS:
        if len(pdu) != expected or pdu != request_pdu[:5]:
            raise FrameError(f"FC{function:02d} acknowledgement {pdu.hex(' ')} does not echo "
                             f"{request_pdu[:5].hex(' ')} (address, "
                             f"{'value' if function in (WRITE_COIL, WRITE_REGISTER) else 'count'})")
        return pdu
    if len(pdu) < 2 or pdu[1] != expected - 2:
        got = pdu[1] if len(pdu) > 1 else "nothing"
        raise FrameError(f"byte 2: byte count {got}, expected {expected - 2}")
    if len(pdu) != expected:
        raise FrameError(f"PDU of {len(pdu)} bytes, expected {expected}")
    return pdu


def registers_of(pdu: bytes) -> list[int]:
    """The words of a checked FC03/04 response PDU."""
    return list(struct.unpack(f">{(len(pdu) - 2) // 2}H", pdu[2:]))


def bits_of(pdu: bytes, count: int) -> list[bool]:
    """The ``count`` bits of a checked FC01/02 response PDU.

    Padding bits past ``count`` in the last byte should be zero; they are ignored, not
    refused, because they carry nothing and some slaves leave them as they were.
    """
    return unpack_bits(pdu[2:], count)


# --------------------------------------------------------------------------- RTU

def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """Unit id, PDU, CRC: the frame on a serial line (or raw on a serial device server)."""
    if not 0 <= unit <= 247:
        raise ValueError(f"unit id {unit} is outside 0..247")
    return _with_crc(bytes((unit,)) + pdu)


def rtu_expected_length(request_pdu: bytes, head: bytes) -> int | None:
    """Bytes of the RTU response frame to ``request_pdu``; None until 2 bytes are in."""
    if len(head) < 2:
        return None
    return 3 + response_pdu_length(request_pdu, head[1])


def rtu_response_pdu(frame: bytes, unit: int, request_pdu: bytes) -> bytes:
    """The checked response PDU of an RTU frame; raises FrameError or ModbusExceptionResponse."""
    _check_crc(frame)
    if frame[0] != unit:
        raise FrameError(f"byte 0: unit {frame[0]}, expected {unit}")
    return check_response_pdu(frame[1:-2], request_pdu, unit)


def rtu_read_request(unit: int, function: int, address: int, count: int) -> bytes:
    """The 8-byte RTU frame of an FC03/FC04 request."""
    return rtu_frame(unit, read_request_pdu(function, address, count))


def rtu_response_length(head: bytes, function: int, count: int) -> int | None:
    """How long the FC03/04 response starting with ``head`` will be (see rtu_expected_length).

    A normal response is 5 + 2N bytes; an exception response is 5 bytes. Any other function
    byte is garbage: the caller reads until the line goes quiet and lets the parser name it.
    """
    return rtu_expected_length(_asked(function, count), head)


def parse_rtu_read_response(frame: bytes, unit: int, function: int, count: int) -> list[int]:
    """Words of an RTU read response; raises FrameError or ModbusExceptionResponse."""
    return registers_of(rtu_response_pdu(frame, unit, _asked(function, count)))


def parse_rtu_request(frame: bytes) -> ReadRequest:
    """Slave side: decode a request frame (any function; the caller rejects the unknown)."""
    _check_crc(frame)
    return _parse_request_pdu(frame[0], frame[1:-2])


def rtu_read_response(unit: int, function: int, words: list[int] | tuple[int, ...]) -> bytes:
    return _with_crc(bytes((unit,)) + read_response_pdu(function, words))


def rtu_exception_response(unit: int, function: int, code: int) -> bytes:
    return _with_crc(bytes((unit,)) + exception_pdu(function, code))


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
    return registers_of(tcp_response_pdu(adu, transaction_id, unit,
                                         _asked(function, count)))


def parse_tcp_request(adu: bytes) -> tuple[int, ReadRequest]:
    """Slave side: (transaction id, request) of a complete ADU."""
    total = tcp_frame_length(adu)
    if len(adu) != total:
        raise FrameError(f"ADU of {len(adu)} bytes, MBAP announced {total}")
    tid = int.from_bytes(adu[:2], "big")
    return tid, _parse_request_pdu(adu[6], adu[MBAP_LENGTH:])


def tcp_adu(transaction_id: int, unit: int, pdu: bytes) -> bytes:
    """MBAP header and PDU: the Modbus TCP frame of any request."""
    return _mbap(transaction_id, unit, pdu)


def tcp_response_pdu(adu: bytes, transaction_id: int, unit: int, request_pdu: bytes) -> bytes:
    """The checked response PDU of a complete MBAP frame."""
    total = tcp_frame_length(adu)
    if len(adu) != total:
        raise FrameError(f"ADU of {len(adu)} bytes, MBAP announced {total}")
    tid = int.from_bytes(adu[:2], "big")
    if tid != transaction_id & 0xFFFF:
        raise FrameError(f"bytes 0-1: transaction id {tid}, expected {transaction_id & 0xFFFF}")
    if adu[6] != unit:
        raise FrameError(f"byte 6: unit {adu[6]}, expected {unit}")
    return check_response_pdu(adu[MBAP_LENGTH:], request_pdu, unit)


def tcp_read_response(transaction_id: int, unit: int, function: int,
                      words: list[int] | tuple[int, ...]) -> bytes:
    return _mbap(transaction_id, unit, read_response_pdu(function, words))


def tcp_exception_response(transaction_id: int, unit: int, function: int, code: int) -> bytes:
    return _mbap(transaction_id, unit, exception_pdu(function, code))
