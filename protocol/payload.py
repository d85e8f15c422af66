"""The compact, versioned byte encoding of a batch of records (the sealed packet's payload).

Sans-IO and strict: ``decode_records`` accepts exactly what ``encode_records`` produces and
raises ``EnvelopeError(MALFORMED)`` naming the byte offset for anything else, because the
centre stores what it decodes as a legal record and must never guess. The layout is in
docs/protocol.md ("Payload"); in short, big-endian::

    u8 version (=1) | u16 count N | u8 C | C x (u8 len, ASCII channel)
                    | u8 U | U x (u8 len, UTF-8 unit) | N x 66-byte record

Channel names and units are sent once per packet in small tables and referenced by index, so a
200-record packet of 10 channels costs ~66 bytes per record.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from protocol.errors import MALFORMED, UNSUPPORTED_VERSION, EnvelopeError
from protocol.model import Record, RecordFlag, Status
from protocol.safe_text import escape_controls

PAYLOAD_VERSION = 1
#: seq, channel index, unit index, start, duration, mean, min, max, std, n_valid, n_expected,
#: valid, status, flags
RECORD = struct.Struct(">QBBqIddddIIBBH")
RECORD_SIZE = RECORD.size  # 66
#: version byte, u16 count, u8 channel-table count, u8 unit-table count
FIXED_SIZE = 4
MAX_RECORDS = 0xFFFF
MAX_TABLE = 0xFF
MAX_NAME = 0xFF
#: The largest integer the centre can store (SQLite INTEGER is a signed 64-bit). A u64 on the
#: wire above it (a seq, a window end, a header's ``created``) is refused as MALFORMED at
#: decode, before anything reaches a database: one station must not be able to send a number
#: the store cannot hold and so make it raise for every packet after (issue 10, C1).
I64_MAX = (1 << 63) - 1

_STATUSES: dict[int, Status] = {int(s): s for s in Status}
_ALL_FLAGS = 0
for _flag in RecordFlag:
    _ALL_FLAGS |= int(_flag)
_FLAG_CACHE: dict[int, RecordFlag] = {}


def _flags(value: int) -> RecordFlag:
    flag = _FLAG_CACHE.get(value)
    if flag is None:
        flag = _FLAG_CACHE[value] = RecordFlag(value)
    return flag


def channel_bytes(channel: str) -> bytes:
    """The wire form of a channel name: 1-255 bytes of printable ASCII, no space."""
    raw = channel.encode("ascii", "strict") if channel.isascii() else b""
    if not 1 <= len(raw) <= MAX_NAME or not all(0x21 <= c <= 0x7E for c in raw):
        raise ValueError(f"channel name {channel!r}: must be 1-255 printable ASCII, no space")
    return raw


def unit_bytes(unit: str) -> bytes:
    """The wire form of a unit: 0-255 bytes of UTF-8 (units such as '°C' are not ASCII)."""
    raw = unit.encode("utf-8")
    if len(raw) > MAX_NAME:
        raise ValueError(f"unit {unit!r}: longer than 255 bytes in UTF-8")
    return raw


#: The longest unit label a station sends as it is (``mg/Nm3``, ``m3/h``, ``°C`` are a few
#: characters; Circular 10 files carry ASCII units). Far below the wire's 255 bytes, so a label
#: pasted by mistake (a sentence, a path) is refused at ``config check`` instead of being sent.
MAX_UNIT_CHARS = 32


def unit_problem(unit: str) -> str | None:
    """What is wrong with ``unit`` as a label the station sends, or None if nothing.

    The one rule for unit labels: the station config refuses what fails it, and the uplink
    sends a stored record whose unit fails it in the form :func:`safe_unit` gives. A label
    is printed in ``quantrac status`` on a serial console, written into TAB-separated,
    one-line-per-parameter Circular 10 files and shown at the centre, so a control character
    (ESC starts a terminal escape sequence; CR, LF and TAB split a file's lines and fields)
    is never acceptable, whatever the byte length.
    """
    if len(unit) > MAX_UNIT_CHARS:
        return f"at most {MAX_UNIT_CHARS} characters (this one has {len(unit)})"
    if not unit.isprintable():
        bad = next(c for c in unit if not c.isprintable())
        return (f"printable characters only (it holds {ascii(bad)[1:-1]}: a control character "
                "would garble a console or split a Circular 10 line)")
    return None


def safe_unit(unit: str) -> str:
    """A form of ``unit`` that passes :func:`unit_problem`: every non-printable character
    written as a visible ASCII escape (``\\x1b``, ``\\r``), then cut to ``MAX_UNIT_CHARS``
    characters ending in ``...`` if longer. Printable text (``°C``) is kept as it is, so the
    centre can still read what the label was meant to say."""
    shown = escape_controls(unit)
    if len(shown) > MAX_UNIT_CHARS:
        shown = shown[: MAX_UNIT_CHARS - 3] + "..."
    return shown


def payload_size(n_records: int, channels: Sequence[bytes], units: Sequence[bytes]) -> int:
    """Exact encoded size for ``n_records`` records using these channel and unit tables."""
    return (
        FIXED_SIZE
        + sum(1 + len(c) for c in channels)
        + sum(1 + len(u) for u in units)
        + n_records * RECORD_SIZE
    )


def encode_records(records: Sequence[tuple[int, Record]]) -> bytes:
    """Encode ``(seq, record)`` pairs; seqs strictly ascending; ValueError on what cannot go."""
    if not 1 <= len(records) <= MAX_RECORDS:
        raise ValueError(f"a payload carries 1..{MAX_RECORDS} records, not {len(records)}")
    channels: dict[str, int] = {}
    units: dict[str, int] = {}
    channel_table: list[bytes] = []
    unit_table: list[bytes] = []
    body: list[bytes] = []
    pack = RECORD.pack
    previous = -1
    for seq, rec in records:
        if not 0 <= seq < 1 << 64 or seq <= previous:
            raise ValueError(f"seq {seq}: must be a u64 strictly greater than {previous}")
        previous = seq
        ci = channels.get(rec.channel)
        if ci is None:
            ci = channels[rec.channel] = len(channel_table)
            channel_table.append(channel_bytes(rec.channel))
        ui = units.get(rec.unit)
        if ui is None:
            ui = units[rec.unit] = len(unit_table)
            unit_table.append(unit_bytes(rec.unit))
        if ci > MAX_TABLE - 1 or ui > MAX_TABLE - 1:
            raise ValueError("more than 255 distinct channels or units in one payload")
        duration = rec.end - rec.start
        if not 0 < duration < 1 << 32:
            raise ValueError(f"seq {seq}: window [{rec.start}, {rec.end}) must have 0 < length")
        body.append(
            pack(
                seq, ci, ui, rec.start, duration,
                rec.mean, rec.min, rec.max, rec.std,
                rec.n_valid, rec.n_expected,
                1 if rec.valid else 0, int(rec.status), int(rec.flags),
            )
        )  # fmt: skip
    head = bytearray((PAYLOAD_VERSION,))
    head += len(records).to_bytes(2, "big")
    for table in (channel_table, unit_table):
        head.append(len(table))
        for name in table:
            head.append(len(name))
            head += name
    return bytes(head) + b"".join(body)


def _fail(offset: int, what: str) -> EnvelopeError:
    return EnvelopeError(MALFORMED, f"payload byte {offset}: {what}")


def _read_table(data: bytes, pos: int, what: str, ascii_name: bool) -> tuple[list[str], int]:
    if pos >= len(data):
        raise _fail(pos, f"truncated before the {what} table")
    count = data[pos]
    pos += 1
    if count == 0:
        raise _fail(pos - 1, f"empty {what} table")
    names: list[str] = []
    for _ in range(count):
        if pos >= len(data):
            raise _fail(pos, f"truncated in the {what} table")
        length = data[pos]
        raw = data[pos + 1 : pos + 1 + length]
        if len(raw) != length:
            raise _fail(pos, f"{what} name of {length} bytes runs past the end")
        try:
            if ascii_name:
                if length == 0 or not all(0x21 <= c <= 0x7E for c in raw):
                    raise ValueError
                name = raw.decode("ascii")
            else:
                name = raw.decode("utf-8")
        except ValueError:
            raise _fail(pos + 1, f"invalid {what} name {raw!r}") from None
        if name in names:
            raise _fail(pos + 1, f"duplicate {what} name {name!r}")
        names.append(name)
        pos += 1 + length
    return names, pos


def decode_records(payload: bytes) -> list[tuple[int, Record]]:
    """Decode a payload; anything but ``encode_records`` output raises EnvelopeError."""
    data = bytes(payload)
    if len(data) < FIXED_SIZE:
        raise _fail(len(data), f"truncated: {len(data)} bytes, need at least {FIXED_SIZE}")
    if data[0] != PAYLOAD_VERSION:
        raise EnvelopeError(UNSUPPORTED_VERSION, f"payload byte 0: version {data[0]}")
    count = int.from_bytes(data[1:3], "big")
    if count == 0:
        raise _fail(1, "record count is 0")
    channels, pos = _read_table(data, 3, "channel", ascii_name=True)
    units, pos = _read_table(data, pos, "unit", ascii_name=False)
    expected = pos + count * RECORD_SIZE
    if len(data) != expected:
        raise _fail(
            min(len(data), expected),
            f"{count} records need {expected} bytes in all, got {len(data)}",
        )
    n_channels = len(channels)
    n_units = len(units)
    statuses = _STATUSES
    out: list[tuple[int, Record]] = []
    previous = -1
    for i, fields in enumerate(RECORD.iter_unpack(memoryview(data)[pos:])):
        (seq, ci, ui, start, duration, mean, lo, hi, std,
         n_valid, n_expected, valid, status, flags) = fields  # fmt: skip
        at = pos + i * RECORD_SIZE
        if seq <= previous:
            raise _fail(at, f"seq {seq} not greater than the previous {previous}")
        if seq > I64_MAX:
            raise _fail(at, f"seq {seq} above 2**63-1, the largest the centre stores")
        if ci >= n_channels:
            raise _fail(at + 8, f"channel index {ci} outside a table of {n_channels}")
        if ui >= n_units:
            raise _fail(at + 9, f"unit index {ui} outside a table of {n_units}")
        if duration == 0:
            raise _fail(at + 18, "window length 0")
        if start + duration > I64_MAX:
            raise _fail(at + 18, f"window end {start} + {duration} above 2**63-1")
        if valid > 1:
            raise _fail(at + 62, f"valid byte {valid} is not 0 or 1")
        st = statuses.get(status)
        if st is None:
            raise _fail(at + 63, f"unknown status {status}")
        if flags & ~_ALL_FLAGS:
            raise _fail(at + 64, f"unknown flag bits {flags & ~_ALL_FLAGS:#x}")
        previous = seq
        out.append(
            (
                seq,
                Record(
                    channels[ci], start, start + duration, mean, lo, hi, std,
                    n_valid, n_expected, valid == 1, st, units[ui], _flags(flags),
                ),
            )
        )  # fmt: skip
    return out


def same_record(a: Record, b: Record) -> bool:
    """Field-wise equality that treats NaN as equal to NaN (an offline window's mean is NaN)."""
    for name in Record.__slots__:
        x = getattr(a, name)
        y = getattr(b, name)
        if x != y and not (
            isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)
        ):
            return False
    return True
