"""Seal and open station -> centre packets; sign and open centre -> station commands.

Sans-IO: bytes and keys in, bytes out; every time is passed in. One module that the edge agent
(seal, open_command), the centre (open_packet, sign_command) and provisioning (key_id) import.

A packet is ``header || HPKE(enc || ChaCha20-Poly1305(signature || payload))``:

* the station signs ``SIG_CONTEXT || header || payload`` with its Ed25519 key, so the centre
  knows who wrote it;
* the signature and payload are sealed to the centre's X25519 key with HPKE base mode
  (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305), with
  ``INFO_CONTEXT || header`` as the HPKE ``info``, so the broker can read nothing and a changed
  header byte makes the open fail;
* the header stays in clear so the centre can pick the right keys before decrypting, and a
  relay can route by station without reading data.

The exact byte layout is in docs/protocol.md. Every failure to open raises ``EnvelopeError``
with a ``reason`` constant; nothing else escapes ``open_packet`` or ``open_command`` (the key
lookup callback is the centre's own code: it must raise ``EnvelopeError`` itself).
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.errors import (
    BAD_SIGNATURE,
    DECRYPT_FAILED,
    HEADER_MISMATCH,
    MALFORMED,
    REASONS,
    REPLAY,
    REVOKED,
    STALE_COMMAND,
    TOO_LARGE,
    UNKNOWN_KEY,
    UNKNOWN_STATION,
    UNSUPPORTED_SUITE,
    UNSUPPORTED_VERSION,
    WRONG_CENTRE,
    WRONG_STATION,
    EnvelopeError,
)
from protocol.model import Record
from protocol.payload import (
    FIXED_SIZE,
    I64_MAX,
    MAX_RECORDS,
    MAX_TABLE,
    RECORD_SIZE,
    channel_bytes,
    decode_records,
    encode_records,
    unit_bytes,
)

__all__ = [
    "BAD_SIGNATURE",
    "COMMAND_KINDS",
    "DECRYPT_FAILED",
    "HEADER_MISMATCH",
    "MALFORMED",
    "MAX_PACKET",
    "PACKET_OVERHEAD",
    "REASONS",
    "REPLAY",
    "REVOKED",
    "STALE_COMMAND",
    "SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305",
    "TOO_LARGE",
    "UNKNOWN_KEY",
    "UNKNOWN_STATION",
    "UNSUPPORTED_SUITE",
    "UNSUPPORTED_VERSION",
    "VERSION",
    "WRONG_CENTRE",
    "WRONG_STATION",
    "Command",
    "EnvelopeError",
    "Header",
    "Opened",
    "batch_records",
    "check_not_replayed",
    "decode_records",
    "encode_records",
    "key_id",
    "open_command",
    "open_packet",
    "parse_header",
    "parse_ranges",
    "ranges_body",
    "seal",
    "seq_ranges",
    "sign_command",
]

VERSION = 1
SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305 = 1
MAX_PACKET = 65536
MAX_STATION_ID = 32
PACKET_MAGIC = b"QE"
COMMAND_MAGIC = b"QC"
INFO_CONTEXT = b"quantrac-edge/packet/v1\x00"
SIG_CONTEXT = b"quantrac-edge/packet-sig/v1\x00"
COMMAND_CONTEXT = b"quantrac-edge/command/v1\x00"
KEY_ID_SIZE = 8
SIGNATURE_SIZE = 64
HPKE_ENC_SIZE = 32
AEAD_TAG_SIZE = 16
#: The fixed part of the packet header, field by field (docs/protocol.md, "Packet header"),
#: big-endian. One ``struct.Struct`` packs it in ``Header.to_bytes`` and unpacks it in
#: ``parse_header``, so the layout is written once; the station id follows it.
_HEADER_FIELDS = (
    ("magic", "2s"), ("version", "B"), ("suite", "B"), ("key_id", "8s"),
    ("centre_key_id", "8s"), ("first_seq", "Q"), ("last_seq", "Q"), ("created", "Q"),
    ("sealed_len", "I"), ("station_id_len", "B"),
)  # fmt: skip
_HEADER = struct.Struct(">" + "".join(code for _, code in _HEADER_FIELDS))
#: the byte offset of each header field, for errors that name the byte at fault
_AT = {name: struct.calcsize(">" + "".join(code for _, code in _HEADER_FIELDS[:i]))
       for i, (name, _) in enumerate(_HEADER_FIELDS)}
HEADER_FIXED = _HEADER.size  # 49; the station id starts here
#: bytes a packet adds to its payload besides the header: HPKE enc, signature, AEAD tag
PACKET_OVERHEAD = HPKE_ENC_SIZE + SIGNATURE_SIZE + AEAD_TAG_SIZE
_U64 = (1 << 64) - 1
_STATION_ID = re.compile(rb"[\x21-\x7e]{1,32}")
_FORBIDDEN_ID_CHARS = frozenset(b"/+#")  # MQTT topic separators and wildcards

_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


def key_id(public_key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    """8-byte key id: the first 8 bytes of SHA-256 over the 32 raw public key bytes."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KEY_ID_SIZE]


def _station_id_bytes(station_id: str) -> bytes | None:
    """The wire form of a station id, or None when it is not a valid one."""
    if not station_id.isascii():
        return None
    raw = station_id.encode("ascii")
    if _STATION_ID.fullmatch(raw) is None or _FORBIDDEN_ID_CHARS.intersection(raw):
        return None
    return raw


@dataclass(frozen=True)
class Header:
    """The clear, authenticated part of a packet; ``created`` is UTC epoch milliseconds."""

    version: int
    suite: int
    station_id: str
    key_id: bytes
    centre_key_id: bytes
    first_seq: int
    last_seq: int
    created: int

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.version <= 0xFF or not 0 <= self.suite <= 0xFF:
            problems.append("version and suite are single bytes")
        if _station_id_bytes(self.station_id) is None:
            problems.append(
                f"station_id {self.station_id!r} must be 1-32 printable ASCII, no space, / + #"
            )
        if len(self.key_id) != KEY_ID_SIZE or len(self.centre_key_id) != KEY_ID_SIZE:
            problems.append("key_id and centre_key_id are 8 bytes")
        if not 0 <= self.first_seq <= self.last_seq <= _U64:
            problems.append(f"need 0 <= first_seq {self.first_seq} <= last_seq {self.last_seq}")
        if not 0 <= self.created <= _U64:
            problems.append(f"created {self.created} is not a u64 of milliseconds")
        if problems:
            raise ValueError("invalid packet header: " + "; ".join(problems))

    def to_bytes(self, sealed_len: int) -> bytes:
        """The header's wire form (docs/protocol.md, "Packet header").

        ``sealed_len`` is the length of the HPKE part that follows; it is on the wire (and so
        bound through ``info``) but not a field: it makes a truncated packet MALFORMED.
        """
        sid = self.station_id.encode("ascii")
        return _HEADER.pack(PACKET_MAGIC, self.version, self.suite, self.key_id,
                            self.centre_key_id, self.first_seq, self.last_seq, self.created,
                            sealed_len, len(sid)) + sid


@dataclass(frozen=True)
class Opened:
    """An opened, verified packet: its header, raw payload and decoded records."""

    header: Header
    payload: bytes
    records: list[tuple[int, Record]] = field(default_factory=list)


def parse_header(packet: bytes) -> tuple[Header, int]:
    """Parse the clear header of a whole packet; return it and its length.

    Raises EnvelopeError only; checks the packet length against the header's sealed length.
    """
    if len(packet) < HEADER_FIXED + 1:
        raise EnvelopeError(MALFORMED, f"truncated: {len(packet)} bytes, header needs 50+")
    magic, version, suite, kid, centre_kid, first, last, created, sealed_len, length = (
        _HEADER.unpack_from(packet))
    if magic != PACKET_MAGIC:
        raise EnvelopeError(MALFORMED, f"byte {_AT['magic']}: magic {magic.hex()}, "
                            "want 5145 ('QE')")
    if version != VERSION:
        raise EnvelopeError(UNSUPPORTED_VERSION, f"byte {_AT['version']}: version {version}")
    if suite != SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305:
        raise EnvelopeError(UNSUPPORTED_SUITE, f"byte {_AT['suite']}: suite {suite}")
    if first > last:
        raise EnvelopeError(MALFORMED,
                            f"byte {_AT['first_seq']}: first_seq {first} > last_seq {last}")
    # u64 on the wire, but the centre stores them as SQLite INTEGER (signed 64-bit): refuse
    # here, before anything is decrypted or stored, what it could not hold.
    for name, value in (("first_seq", first), ("last_seq", last), ("created", created)):
        if value > I64_MAX:
            raise EnvelopeError(MALFORMED, f"byte {_AT[name]}: {name} {value} above 2**63-1")
    at_len, at_sealed = _AT["station_id_len"], _AT["sealed_len"]
    end = HEADER_FIXED + length
    raw_id = bytes(packet[HEADER_FIXED:end])
    if len(raw_id) != length or len(packet) < end:
        raise EnvelopeError(MALFORMED,
                            f"byte {at_len}: station id of {length} bytes runs past the end")
    if length == 0 or length > MAX_STATION_ID:
        raise EnvelopeError(MALFORMED, f"byte {at_len}: station id length {length} not in 1..32")
    sid = raw_id.decode("ascii", "replace")
    if _station_id_bytes(sid) != raw_id:
        raise EnvelopeError(MALFORMED, f"byte {HEADER_FIXED}: invalid station id {raw_id!r}")
    if len(packet) != end + sealed_len:
        raise EnvelopeError(
            MALFORMED,
            f"byte {at_sealed}: header says {sealed_len} sealed bytes follow the {end}-byte "
            f"header, {len(packet) - end} do (truncated or padded)",
        )
    if sealed_len < PACKET_OVERHEAD + FIXED_SIZE:
        raise EnvelopeError(MALFORMED, f"byte {at_sealed}: sealed length {sealed_len} too short")
    header = Header(
        version=version,
        suite=suite,
        station_id=sid,
        key_id=kid,
        centre_key_id=centre_kid,
        first_seq=first,
        last_seq=last,
        created=created,
    )
    return header, end


def seal(
    header: Header,
    payload: bytes,
    station_key: Ed25519PrivateKey,
    centre_public: X25519PublicKey,
    max_packet: int = MAX_PACKET,
) -> bytes:
    """Sign ``header || payload`` with the station key, HPKE-seal it to the centre.

    Raises ValueError (a bug of the caller, not a bad packet) when the packet would be larger
    than ``max_packet``; ``batch_records`` sizes batches so that it never is.
    """
    if header.version != VERSION or header.suite != SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305:
        raise ValueError(f"cannot seal version {header.version} suite {header.suite}")
    sealed_len = PACKET_OVERHEAD + len(payload)
    head = header.to_bytes(sealed_len)
    size = len(head) + sealed_len
    if size > max_packet:
        raise ValueError(f"packet of {size} bytes exceeds the maximum of {max_packet}")
    signature = station_key.sign(SIG_CONTEXT + head + payload)
    sealed = _SUITE.encrypt(signature + payload, centre_public, info=INFO_CONTEXT + head)
    assert len(sealed) == sealed_len, "HPKE output length is enc + plaintext + tag"
    return head + sealed


def open_packet(
    packet: bytes,
    centre_private: X25519PrivateKey,
    lookup_station_key: Callable[[str, bytes], Ed25519PublicKey],
    max_packet: int = MAX_PACKET,
    centre_key_id: bytes | None = None,
) -> Opened:
    """Check, decrypt, verify and decode a packet; EnvelopeError (with reason) if anything fails.

    Order: size, header syntax, centre key id (WRONG_CENTRE), station key lookup (the callback
    raises UNKNOWN_STATION / UNKNOWN_KEY / REVOKED), HPKE open (DECRYPT_FAILED), signature
    (BAD_SIGNATURE), payload syntax (MALFORMED), header seq range vs payload (HEADER_MISMATCH).
    ``centre_key_id`` may be passed precomputed to save a scalar multiplication per packet.
    Replays are the centre's to judge with ``check_not_replayed``: it alone knows what it stored.
    """
    data = bytes(packet)
    if len(data) > max_packet:
        raise EnvelopeError(TOO_LARGE, f"{len(data)} bytes exceeds the maximum of {max_packet}")
    header, head_len = parse_header(data)
    ours = centre_key_id if centre_key_id is not None else key_id(centre_private.public_key())
    if header.centre_key_id != ours:
        raise EnvelopeError(
            WRONG_CENTRE, f"byte 12: sealed to centre key {header.centre_key_id.hex()}"
        )
    station_public = lookup_station_key(header.station_id, header.key_id)
    head = data[:head_len]
    try:
        inner = _SUITE.decrypt(data[head_len:], centre_private, info=INFO_CONTEXT + head)
    except (InvalidTag, ValueError) as exc:
        raise EnvelopeError(DECRYPT_FAILED, f"HPKE open failed ({type(exc).__name__})") from None
    signature, payload = inner[:SIGNATURE_SIZE], inner[SIGNATURE_SIZE:]
    try:
        station_public.verify(signature, SIG_CONTEXT + head + payload)
    except InvalidSignature:
        raise EnvelopeError(
            BAD_SIGNATURE, f"not signed by station {header.station_id} key {header.key_id.hex()}"
        ) from None
    records = decode_records(payload)
    if records[0][0] != header.first_seq or records[-1][0] != header.last_seq:
        raise EnvelopeError(
            HEADER_MISMATCH,
            f"header seq {header.first_seq}..{header.last_seq}, payload "
            f"{records[0][0]}..{records[-1][0]}",
        )
    return Opened(header, payload, records)


def check_not_replayed(
    opened: Opened, is_stored: Callable[[str, int], bool]
) -> list[tuple[int, Record]]:
    """The records of ``opened`` the centre has not stored yet; REPLAY if it has them all.

    Delivery is at least once: after a lost acknowledgement the station sends records again,
    possibly batched differently, so a partial overlap is normal and only the new records are
    returned. A packet whose every sequence number is already stored is a replay (or a resend
    after a lost ack: the centre should log it and acknowledge the range again either way).
    """
    sid = opened.header.station_id
    fresh = [(seq, rec) for seq, rec in opened.records if not is_stored(sid, seq)]
    if not fresh:
        raise EnvelopeError(
            REPLAY,
            f"station {sid} seq {opened.header.first_seq}..{opened.header.last_seq} "
            "already stored",
        )
    return fresh


def batch_records(
    records: Iterable[tuple[int, Record]],
    max_packet: int = MAX_PACKET,
    station_id_len: int = MAX_STATION_ID,
) -> Iterator[list[tuple[int, Record]]]:
    """Split ascending ``(seq, record)`` pairs into batches whose sealed packet fits.

    Sizes are exact (header of a ``station_id_len``-byte id, HPKE enc, signature, AEAD tag,
    payload tables and records), so a batch fills a packet up to ``max_packet``.
    """
    budget = max_packet - (HEADER_FIXED + station_id_len + PACKET_OVERHEAD)
    batch: list[tuple[int, Record]] = []
    channels: set[str] = set()
    units: set[str] = set()
    size = FIXED_SIZE
    previous = -1
    for seq, rec in records:
        if seq <= previous:
            raise ValueError(f"seq {seq} after {previous}: records must come in ascending order")
        previous = seq
        while True:
            cost = RECORD_SIZE
            new_channel = rec.channel not in channels
            new_unit = rec.unit not in units
            if new_channel:
                cost += 1 + len(channel_bytes(rec.channel))
            if new_unit:
                cost += 1 + len(unit_bytes(rec.unit))
            full = (
                size + cost > budget
                or len(batch) >= MAX_RECORDS
                or (new_channel and len(channels) >= MAX_TABLE)
                or (new_unit and len(units) >= MAX_TABLE)
            )
            if not full:
                break
            if not batch:
                raise ValueError(f"seq {seq}: one record does not fit in {max_packet} bytes")
            yield batch
            batch, channels, units, size = [], set(), set(), FIXED_SIZE
        batch.append((seq, rec))
        channels.add(rec.channel)
        units.add(rec.unit)
        size += cost
    if batch:
        yield batch


# --- commands, centre -> station -------------------------------------------------------------

COMMAND_KINDS: dict[str, int] = {"ack": 1, "resend": 2, "config": 3}
_KIND_NAMES = {v: k for k, v in COMMAND_KINDS.items()}
#: magic 2, version 1, kind 1, key id 8, counter 8, created 8, id len 1
_COMMAND_FIXED = 29


@dataclass(frozen=True)
class Command:
    """A signed instruction from the centre. ``created`` is UTC epoch milliseconds.

    ``kind`` is "ack" or "resend" (body: ``ranges_body``) or "config" (body: opaque bytes the
    agent's config loader validates). ``counter`` strictly increases per station.
    """

    kind: str
    station_id: str
    counter: int
    created: int
    body: bytes = b""


def sign_command(cmd: Command, centre_signing_key: Ed25519PrivateKey) -> bytes:
    """The command's wire form, signed with the centre's Ed25519 command key."""
    if cmd.kind not in COMMAND_KINDS:
        raise ValueError(f"command kind {cmd.kind!r}: one of {sorted(COMMAND_KINDS)}")
    sid = _station_id_bytes(cmd.station_id)
    if sid is None:
        raise ValueError(f"station_id {cmd.station_id!r}: 1-32 printable ASCII, no space, / + #")
    if not 0 <= cmd.counter <= _U64 or not 0 <= cmd.created <= _U64:
        raise ValueError("counter and created are u64")
    if cmd.kind in ("ack", "resend"):
        try:
            parse_ranges(cmd.body)  # refuse to sign what the station would reject
        except EnvelopeError as exc:
            raise ValueError(f"{cmd.kind} command body: {exc}") from None
    if len(cmd.body) > MAX_PACKET:
        raise ValueError(f"command body of {len(cmd.body)} bytes exceeds {MAX_PACKET}")
    signed = b"".join(
        (
            COMMAND_MAGIC,
            bytes((VERSION, COMMAND_KINDS[cmd.kind])),
            key_id(centre_signing_key.public_key()),
            cmd.counter.to_bytes(8, "big"),
            cmd.created.to_bytes(8, "big"),
            bytes((len(sid),)),
            sid,
            len(cmd.body).to_bytes(4, "big"),
            cmd.body,
        )
    )
    return signed + centre_signing_key.sign(COMMAND_CONTEXT + signed)


def open_command(
    data: bytes,
    centre_verify_key: Ed25519PublicKey,
    station_id: str,
    last_counter: int,
    now_ms: int | None = None,
    max_age_ms: int = 24 * 3600 * 1000,
    max_skew_ms: int = 10 * 60 * 1000,
) -> Command:
    """Parse and verify a command for ``station_id``; EnvelopeError unless it is to be obeyed.

    Rejects: malformed, signed by another key (UNKNOWN_KEY) or not validly signed
    (BAD_SIGNATURE), addressed to another station (WRONG_STATION), a counter not above
    ``last_counter`` (REPLAY), and, when ``now_ms`` is given, one created more than
    ``max_age_ms`` ago or ``max_skew_ms`` in the future (STALE_COMMAND). The caller persists
    the returned counter as its new ``last_counter``.
    """
    raw = bytes(data)
    if len(raw) > MAX_PACKET + _COMMAND_FIXED + MAX_STATION_ID + 4 + SIGNATURE_SIZE:
        raise EnvelopeError(TOO_LARGE, f"command of {len(raw)} bytes")
    if len(raw) < _COMMAND_FIXED + 1 + 4 + SIGNATURE_SIZE:
        raise EnvelopeError(MALFORMED, f"command truncated: {len(raw)} bytes")
    if raw[0:2] != COMMAND_MAGIC:
        raise EnvelopeError(MALFORMED, f"command byte 0: magic {raw[0:2].hex()}, want 5143")
    if raw[2] != VERSION:
        raise EnvelopeError(UNSUPPORTED_VERSION, f"command byte 2: version {raw[2]}")
    kind = _KIND_NAMES.get(raw[3])
    if kind is None:
        raise EnvelopeError(MALFORMED, f"command byte 3: unknown kind {raw[3]}")
    id_len = raw[28]
    pos = _COMMAND_FIXED + id_len
    if not 1 <= id_len <= MAX_STATION_ID or len(raw) < pos + 4 + SIGNATURE_SIZE:
        raise EnvelopeError(MALFORMED, f"command byte 28: station id length {id_len}")
    raw_id = raw[_COMMAND_FIXED:pos]
    body_len = int.from_bytes(raw[pos : pos + 4], "big")
    body_end = pos + 4 + body_len
    if len(raw) != body_end + SIGNATURE_SIZE:
        raise EnvelopeError(
            MALFORMED,
            f"command byte {pos}: body of {body_len} bytes makes {body_end + SIGNATURE_SIZE} "
            f"bytes in all, got {len(raw)}",
        )
    if raw[4:12] != key_id(centre_verify_key):
        raise EnvelopeError(UNKNOWN_KEY, f"command byte 4: signed by key {raw[4:12].hex()}")
    try:
        centre_verify_key.verify(raw[body_end:], COMMAND_CONTEXT + raw[:body_end])
    except InvalidSignature:
        raise EnvelopeError(BAD_SIGNATURE, "command signature does not verify") from None
    sid = raw_id.decode("ascii", "replace")
    if _station_id_bytes(sid) != raw_id:
        raise EnvelopeError(MALFORMED, f"command byte 29: invalid station id {raw_id!r}")
    if sid != station_id:
        raise EnvelopeError(WRONG_STATION, f"command for station {sid}, this is {station_id}")
    counter = int.from_bytes(raw[12:20], "big")
    if counter <= last_counter:
        raise EnvelopeError(REPLAY, f"command counter {counter} <= last seen {last_counter}")
    created = int.from_bytes(raw[20:28], "big")
    if now_ms is not None and not now_ms - max_age_ms <= created <= now_ms + max_skew_ms:
        raise EnvelopeError(STALE_COMMAND, f"command created {created} ms, now {now_ms} ms")
    body = raw[pos + 4 : body_end]
    if kind in ("ack", "resend"):
        parse_ranges(body)
    return Command(kind, sid, counter, created, body)


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Compress sequence numbers into sorted, merged inclusive ``(first, last)`` ranges."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def ranges_body(ranges: Sequence[tuple[int, int]]) -> bytes:
    """Body of an ack/resend command: u16 count, then count x (u64 first, u64 last)."""
    if len(ranges) > 0xFFFF:
        raise ValueError(f"{len(ranges)} ranges: at most 65535 per command")
    out = bytearray(len(ranges).to_bytes(2, "big"))
    for first, last in ranges:
        out += first.to_bytes(8, "big") + last.to_bytes(8, "big")
    try:
        parse_ranges(bytes(out))
    except EnvelopeError as exc:
        raise ValueError(f"ranges {list(ranges)[:4]}...: {exc}") from None
    return bytes(out)


def parse_ranges(body: bytes) -> list[tuple[int, int]]:
    """Decode ``ranges_body``: ascending, non-overlapping, first <= last; else MALFORMED."""
    if len(body) < 2:
        raise EnvelopeError(MALFORMED, "range body byte 0: truncated")
    count = int.from_bytes(body[0:2], "big")
    if len(body) != 2 + 16 * count:
        raise EnvelopeError(
            MALFORMED, f"range body byte 2: {count} ranges need {2 + 16 * count} bytes"
        )
    out: list[tuple[int, int]] = []
    previous = -1
    for i in range(count):
        at = 2 + 16 * i
        first = int.from_bytes(body[at : at + 8], "big")
        last = int.from_bytes(body[at + 8 : at + 16], "big")
        if first > last or first <= previous:
            raise EnvelopeError(MALFORMED, f"range body byte {at}: range {first}..{last}")
        previous = last
        out.append((first, last))
    return out
