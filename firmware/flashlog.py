"""The node's own log: fixed-size records with a CRC32 each, in a ring of segment files.

Record (20 bytes, little-endian): seq u32, time u32, boot u16, channel u8, flags u8,
value u32 (float32 bits for analog channels, the count for pulse/digital/clock records),
crc32 u32 of the 16 bytes before it. ``seq`` numbers every record the node ever wrote, so the
gateway's history cursor is a plain sequence number.

Why segments and not one preallocated ring file: littlefs stores a file as a backwards-linked
list of blocks, so overwriting the middle of a big file rewrites every block after it.
Appending to the newest segment and deleting the oldest whole segment keeps each write an
append. Each segment is named by the hex seq of its first record and holds ``seg_records``.

Power cut at any instant. One :meth:`Log.append` is one ``write`` + ``flush`` (littlefs
``lfs_file_sync``): littlefs commits it copy-on-write, so after a cut the file is either as
before or as after. The record CRC is the second line of defence, for a flash that lost a
page or a port whose filesystem is not copy-on-write: at open, a record whose CRC (or
position: record k of segment s must have seq s + k) does not check is *skipped*, never
served. At every boot the log starts a new segment, so a torn tail is never appended to;
an empty or all-torn newest segment is deleted first, and the next seq is the last good
record's seq + 1. So after a cut at most the records of the write in flight are missing,
and no seq is ever served twice.

Wear (firmware/README.md has the full arithmetic): the node writes one batch per log period
(all channels of one scan in one append), i.e. 1440 commits a day at 60 s.
"""

import binascii
import os
import struct

REC = 20
Rec = tuple  # (seq, time, boot, channel, flags, value); typed as a plain tuple for MicroPython
_FMT = "<IIHBBI"
_BODY = 16


def pack(seq: int, t: int, boot: int, ch: int, flags: int, value: int) -> bytes:
    body = struct.pack(_FMT, seq & 0xFFFFFFFF, t & 0xFFFFFFFF, boot & 0xFFFF, ch, flags,
                       value & 0xFFFFFFFF)
    return body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF)


def unpack(buf: bytes | bytearray | memoryview, off: int = 0) -> Rec | None:
    """(seq, time, boot, channel, flags, value) or None when the CRC does not check."""
    body = bytes(buf[off:off + _BODY])
    crc = struct.unpack("<I", bytes(buf[off + _BODY:off + REC]))[0]
    if binascii.crc32(body) & 0xFFFFFFFF != crc:
        return None
    return struct.unpack(_FMT, body)


def f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bits_f32(b: int) -> float:
    return struct.unpack("<f", struct.pack("<I", b))[0]


def _isdir(path: str) -> bool:
    try:
        return (os.stat(path)[0] & 0x4000) != 0
    except OSError:
        return False


class Log:
    def __init__(self, path: str, capacity: int, seg_records: int = 512) -> None:
        self.path = path
        self.seg = seg_records
        self.max_segs = max(2, (capacity + seg_records - 1) // seg_records)
        self.capacity = self.max_segs * seg_records
        self.segs: list[int] = []
        self.head = 0          # seq of the next record
        self.skipped = 0       # torn/corrupt records found at open
        self.f = None
        self.cur_n = 0         # records in the open segment
        self.writes = 0
        self.error = False

    def _name(self, first: int) -> str:
        return "%s/%08x.bin" % (self.path, first)

    def _records(self, first: int) -> int:
        try:
            return os.stat(self._name(first))[6] // REC
        except OSError:
            return 0

    def _last_good(self, first: int) -> int:
        """seq of the last good record of segment ``first``, or -1."""
        n = self._records(first)
        if not n:
            return -1
        with open(self._name(first), "rb") as f:
            k = n - 1
            buf = bytearray(REC)
            while k >= 0:
                f.seek(k * REC)
                f.readinto(buf)
                r = unpack(buf)
                if r is not None and r[0] == first + k:
                    return first + k
                self.skipped += 1
                k -= 1
        return -1

    def open(self) -> None:
        if not _isdir(self.path):
            os.mkdir(self.path)
        segs = []
        for name in os.listdir(self.path):
            if name.endswith(".bin") and len(name) == 12:
                try:
                    segs.append(int(name[:8], 16))
                except ValueError:
                    pass
            elif name.endswith(".bin"):
                os.remove("%s/%s" % (self.path, name))
        segs.sort()
        self.head = 0
        while segs:
            last = self._last_good(segs[-1])
            if last >= 0:
                self.head = last + 1
                break
            os.remove(self._name(segs.pop()))  # empty or all torn: never served
        self.segs = segs
        self._start()

    def _start(self) -> None:
        if self.f is not None:
            self.f.close()
        self.segs.append(self.head)
        self.f = open(self._name(self.head), "wb")
        self.cur_n = 0
        self._trim()

    def _trim(self) -> None:
        """Drop the oldest segment while the newer ones alone hold ``capacity`` records.

        Counted in records, not segments: every boot starts a segment, and a node that
        reboots often must not lose history for it.
        """
        while len(self.segs) > 1 and self.head - self.segs[1] >= self.capacity:
            os.remove(self._name(self.segs.pop(0)))

    @property
    def oldest(self) -> int:
        return self.segs[0] if self.segs else self.head

    def append(self, recs: list) -> None:
        """Write records (ch, t, boot, flags, value) as one batch; seq numbers assigned here."""
        if self.cur_n + len(recs) > self.seg:
            self._start()
        buf = bytearray()
        seq = self.head
        for ch, t, boot, flags, value in recs:
            buf.extend(pack(seq, t, boot, ch, flags, value))
            seq += 1
        f = self.f
        assert f is not None
        f.write(buf)
        f.flush()
        self.head = seq
        self.cur_n += len(recs)
        self.writes += 1
        if self.head - self.segs[1 if len(self.segs) > 1 else 0] >= self.capacity:
            self._trim()

    def read(self, seq: int, n: int) -> list:
        """Up to ``n`` good records from ``seq`` on (a record that does not check is skipped).

        A cursor older than the oldest segment starts at the oldest record; one at or past
        the head gives nothing.
        """
        out: list = []
        if seq < self.oldest:
            seq = self.oldest
        i = len(self.segs) - 1
        while i > 0 and self.segs[i] > seq:
            i -= 1
        buf = bytearray(REC * n)
        while len(out) < n and i < len(self.segs) and seq < self.head:
            first = self.segs[i]
            nxt = self.segs[i + 1] if i + 1 < len(self.segs) else self.head
            if seq < first:
                seq = first
            if seq >= nxt:
                i += 1
                continue
            want = min(n - len(out), nxt - seq)
            try:
                with open(self._name(first), "rb") as f:
                    f.seek((seq - first) * REC)
                    mv = memoryview(buf)[:want * REC]
                    got = f.readinto(mv) // REC
            except OSError:
                got = 0
            for k in range(got):
                r = unpack(buf, k * REC)
                if r is not None and r[0] == seq + k:
                    out.append(r)
            seq += want if got == want else got
            if got < want:
                i += 1
        return out

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
