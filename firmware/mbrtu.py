"""Modbus RTU slave framing for the field node: bytes in, bytes out (MicroPython and CPython).

This is the node's own sans-IO core. It does not import ``drivers/modbus.py`` (that module uses
dataclasses and typing, which MicroPython lacks), so the two are kept honest by tests instead:
tests/test_firmware_framing.py runs this file under the MicroPython unix port and compares its
CRC, responses and exceptions byte for byte with drivers.modbus, and the live tests read the
node with pymodbus and mbpoll.

Framing: an RTU frame is the bytes between two silences of at least 3.5 character times
(38.5 bit times; fixed 1.75 ms above 19200 baud, as the Modbus serial line guide says).
:class:`Assembler` collects bytes with their arrival time and hands out a frame once the line
has been quiet that long. A burst longer than the 256-byte RTU maximum is noise: it is dropped
whole at the next silence, so a stream of random bytes costs a bounded buffer and nothing else.

Answering: :func:`answer` checks the CRC first (a bad CRC is silence, never an exception, as the
standard requires), then the unit id: a frame for another unit is ignored, unit 0 (broadcast) is
executed for writes and never answered. FC03/FC04 reads and FC06/FC16 writes are served; any
other function gets exception 01; a malformed PDU of a known function gets 03; an address the
register map does not have gets 02 (raised by the device object as :class:`ModbusError`).
"""

MAX_FRAME = 256
MAX_READ = 125
MAX_WRITE = 123

ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
ILLEGAL_DATA_VALUE = 3
DEVICE_FAILURE = 4


class ModbusError(Exception):
    """Raised by the device object to answer with a Modbus exception code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Device:
    """What :func:`answer` serves: the node's register map implements these two methods."""

    def read(self, fc: int, addr: int, count: int) -> list[int]:
        raise ModbusError(ILLEGAL_DATA_ADDRESS)

    def write(self, fc: int, addr: int, words: list[int]) -> None:
        raise ModbusError(ILLEGAL_DATA_ADDRESS)


def _table() -> list[int]:
    t = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC = _table()


def crc16(data: bytes) -> int:
    """Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF); on the wire low byte first."""
    crc = 0xFFFF
    t = _CRC
    for b in data:
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    c = crc16(body)
    return body + bytes((c & 0xFF, c >> 8))


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == frame[-2] | (frame[-1] << 8)


def gap_us(baud: int) -> int:
    """The 3.5-character silence that ends a frame, in microseconds (11-bit characters)."""
    if baud > 19200:
        return 1750
    return (38_500_000 + baud - 1) // baud


class Assembler:
    """Bytes from the UART -> whole frames, cut by line silence.

    ``feed`` takes what arrived and the microsecond tick it arrived at (kept in ``last``);
    ``take(quiet)`` returns the frame once ``quiet`` (microseconds since ``last``, which the
    caller works out with time.ticks_diff so a wrapping tick counter is fine) reaches the gap.
    """

    def __init__(self, gap: int) -> None:
        self.gap = gap
        self.buf = bytearray()
        self.last = 0
        self.over = False
        self.dropped = 0  # overlong bursts dropped whole

    def feed(self, data: bytes, now: int) -> None:
        if not data:
            return
        self.last = now
        if self.over:
            return
        if len(self.buf) + len(data) > MAX_FRAME:
            self.over = True
            self.buf = bytearray()
            return
        self.buf.extend(data)

    def pending(self) -> bool:
        return bool(self.buf) or self.over

    def take(self, quiet: int) -> bytes | None:
        if not (self.buf or self.over) or quiet < self.gap:
            return None
        frame = bytes(self.buf)
        self.buf = bytearray()
        if self.over:
            self.over = False
            self.dropped += 1
            return None
        return frame


def _words(pdu: bytes, start: int, n: int) -> list[int]:
    return [(pdu[start + 2 * i] << 8) | pdu[start + 2 * i + 1] for i in range(n)]


def _serve(pdu: bytes, dev: Device, broadcast: bool) -> bytes:
    fc = pdu[0]
    if fc == 3 or fc == 4:
        if broadcast:
            raise ModbusError(ILLEGAL_FUNCTION)  # a read cannot be broadcast; no answer anyway
        if len(pdu) != 5:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        addr = (pdu[1] << 8) | pdu[2]
        count = (pdu[3] << 8) | pdu[4]
        if not 1 <= count <= MAX_READ:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        if addr + count > 0x10000:
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        words = dev.read(fc, addr, count)
        out = bytearray(2 + 2 * count)
        out[0] = fc
        out[1] = 2 * count
        for i, w in enumerate(words):
            out[2 + 2 * i] = (w >> 8) & 0xFF
            out[3 + 2 * i] = w & 0xFF
        return bytes(out)
    if fc == 6:
        if len(pdu) != 5:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        addr = (pdu[1] << 8) | pdu[2]
        dev.write(fc, addr, _words(pdu, 3, 1))
        return bytes(pdu)  # FC06 echoes the request
    if fc == 16:
        if len(pdu) < 6:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        addr = (pdu[1] << 8) | pdu[2]
        count = (pdu[3] << 8) | pdu[4]
        if not 1 <= count <= MAX_WRITE or pdu[5] != 2 * count or len(pdu) != 6 + 2 * count:
            raise ModbusError(ILLEGAL_DATA_VALUE)
        if addr + count > 0x10000:
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        dev.write(fc, addr, _words(pdu, 6, count))
        return bytes(pdu[:5])
    raise ModbusError(ILLEGAL_FUNCTION)


def answer(frame: bytes, unit: int, dev: Device) -> bytes | None:
    """The response frame for ``frame``, or None when the node must stay silent."""
    if len(frame) < 4 or not crc_ok(frame):
        return None
    addr = frame[0]
    if addr != unit and addr != 0:
        return None
    pdu = frame[1:-2]
    try:
        out = _serve(pdu, dev, addr == 0)
    except ModbusError as exc:
        out = bytes(((pdu[0] | 0x80) & 0xFF, exc.code))
    if addr == 0:
        return None
    return with_crc(bytes((unit,)) + out)
