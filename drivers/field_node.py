"""Gateway side of the field node (firmware/): its history window, read and mapped to UTC.

The node logs every sample with a sequence number; the gateway reads them back through a
register window (firmware/regmap.py: write the cursor to HR_CURSOR with FC16, read the window
at IR_HIST with FC04, advance the cursor past the last record served). Reads are idempotent,
so a lost response costs a retry, never a record. The constants below mirror
firmware/regmap.py; tests/test_firmware_profile.py runs the firmware's module under
MicroPython and fails if they differ.

Time: a record is either synced (its time is UTC seconds from the node's clock, which the
gateway sets) or unsynced (FLAG_UNSYNCED: its time is uptime seconds of boot ``boot``). The
node logs each clock set as a CH_CLOCK record (new UTC, uptime then), so for every boot that
was synced at some point, UTC = uptime + (utc_set - uptime_set). :func:`map_times` applies
that; a boot the gateway never synced has no known offset and its records stay unmapped
(``utc`` None) unless the caller gives one (e.g. from the node's live uptime and the
gateway's own clock while that boot is still running: :func:`live_offset`).

Everything but :func:`read_history`, :func:`set_clock` and :func:`read_node` is pure.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

IR_NODE_STATUS = 26
IR_BOOT = 27
IR_UPTIME = 28
IR_CLOCK = 30
IR_LOG_HEAD = 32
IR_LOG_OLDEST = 34
IR_HIST = 100
HIST_HEADER = 3
REC_WORDS = 8
HIST_MAX = 15
HR_TIME = 0
HR_CURSOR = 3
CH_PULSE0 = 8
CH_DIGITAL = 16
CH_CLOCK = 255
FLAG_UNSYNCED = 0x80
FLAG_STATUS = 0x0F
NODE_UNSYNCED = 1


@runtime_checkable
class WritableTransport(Protocol):
    def read_registers(self, unit: int, function: int, address: int, count: int,
                       timeout: float) -> list[int]: ...

    def write_registers(self, unit: int, address: int, words: list[int],
                        timeout: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    time: int          # UTC seconds, or uptime seconds of ``boot`` when ``unsynced``
    boot: int
    channel: int
    flags: int
    raw: int           # float32 bits (analog) or the count (pulse, digital, clock)

    @property
    def unsynced(self) -> bool:
        return bool(self.flags & FLAG_UNSYNCED)

    @property
    def status(self) -> int:
        return self.flags & FLAG_STATUS

    @property
    def value(self) -> float:
        """Engineering value: a float32 for analog channels, the count otherwise."""
        if self.channel < CH_PULSE0:
            v: float = struct.unpack(">f", self.raw.to_bytes(4, "big"))[0]
            return v
        return float(self.raw)


@dataclass(frozen=True, slots=True)
class TimedRecord:
    record: Record
    utc: int | None    # None: unsynced and no offset known for its boot


def decode_window(words: list[int]) -> tuple[int, list[Record]]:
    """(seq of the first record, records) of one window read; raises ValueError if malformed."""
    if len(words) < HIST_HEADER:
        raise ValueError(f"history window of {len(words)} words, expected >= {HIST_HEADER}")
    n = words[0]
    first = (words[1] << 16) | words[2]
    if n > HIST_MAX or len(words) < HIST_HEADER + n * REC_WORDS:
        raise ValueError(f"history window word 0: {n} records do not fit {len(words)} words")
    out = []
    for k in range(n):
        w = words[HIST_HEADER + k * REC_WORDS:HIST_HEADER + (k + 1) * REC_WORDS]
        out.append(Record(seq=(w[0] << 16) | w[1], time=(w[2] << 16) | w[3], boot=w[4],
                          channel=w[5] >> 8, flags=w[5] & 0xFF, raw=(w[6] << 16) | w[7]))
    if out and out[0].seq != first:
        raise ValueError(f"history window words 1-2: first seq {first}, record says "
                         f"{out[0].seq}")
    for a, b in itertools.pairwise(out):
        if b.seq <= a.seq:
            raise ValueError(f"history window: seq {b.seq} after {a.seq}")
    return first, out


def boot_offsets(records: list[Record]) -> dict[int, int]:
    """{boot: UTC - uptime seconds} from the clock-set records (the latest set per boot)."""
    out: dict[int, int] = {}
    for r in records:
        if r.channel == CH_CLOCK:
            out[r.boot] = r.time - r.raw
    return out


def map_times(records: list[Record], offsets: Mapping[int, int] | None = None
              ) -> list[TimedRecord]:
    """Every record with its original time in UTC (clock records themselves are left out).

    An unsynced record of a boot is mapped with the *first* clock set of that boot after
    it, which is the offset its uptime had when it was written (a later re-sync corrects
    drift from then on, not backwards). ``offsets`` supplies boots with no clock record.
    """
    known = dict(offsets or {})
    first_set: dict[int, int] = {}
    for r in records:
        if r.channel == CH_CLOCK and r.boot not in first_set:
            first_set[r.boot] = r.time - r.raw
    out = []
    for r in records:
        if r.channel == CH_CLOCK:
            continue
        if not r.unsynced:
            out.append(TimedRecord(r, r.time))
            continue
        off = first_set.get(r.boot, known.get(r.boot))
        out.append(TimedRecord(r, None if off is None else r.time + off))
    return out


def live_offset(words: list[int], gateway_utc: float) -> tuple[int, int]:
    """(boot, UTC - uptime) for the node's running boot, from live words 0..39 read now."""
    boot = words[IR_BOOT]
    uptime = (words[IR_UPTIME] << 16) | words[IR_UPTIME + 1]
    return boot, math.floor(gateway_utc) - uptime


@dataclass(frozen=True, slots=True)
class NodeInfo:
    status: int
    boot: int
    uptime: int
    clock: int
    head: int
    oldest: int

    @property
    def synced(self) -> bool:
        return not self.status & NODE_UNSYNCED


def read_node(t: WritableTransport, unit: int, timeout: float = 1.0) -> NodeInfo:
    w = t.read_registers(unit, 4, IR_NODE_STATUS, IR_LOG_OLDEST + 2 - IR_NODE_STATUS, timeout)

    def u32(a: int) -> int:
        return (w[a - IR_NODE_STATUS] << 16) | w[a - IR_NODE_STATUS + 1]

    return NodeInfo(status=w[0], boot=w[IR_BOOT - IR_NODE_STATUS], uptime=u32(IR_UPTIME),
                    clock=u32(IR_CLOCK), head=u32(IR_LOG_HEAD), oldest=u32(IR_LOG_OLDEST))


def set_clock(t: WritableTransport, unit: int, utc: int, timeout: float = 1.0) -> None:
    t.write_registers(unit, HR_TIME, [(utc >> 16) & 0xFFFF, utc & 0xFFFF], timeout)


def read_history(t: WritableTransport, unit: int, start: int, *, timeout: float = 1.0,
                 stop: int | None = None) -> Iterator[Record]:
    """Every record from seq ``start`` (or the oldest kept) to the head, in order.

    Stops when a window comes back empty or ``stop`` (exclusive) is reached; a record
    older than ``start`` or a window that does not advance is a node fault (ValueError).
    """
    cursor = start
    while stop is None or cursor < stop:
        t.write_registers(unit, HR_CURSOR, [(cursor >> 16) & 0xFFFF, cursor & 0xFFFF], timeout)
        words = t.read_registers(unit, 4, IR_HIST, HIST_HEADER + HIST_MAX * REC_WORDS, timeout)
        _, recs = decode_window(words)
        if not recs:
            return
        if recs[0].seq < cursor:
            raise ValueError(f"history window served seq {recs[0].seq} for cursor {cursor}")
        for r in recs:
            if stop is not None and r.seq >= stop:
                return
            yield r
        cursor = recs[-1].seq + 1
