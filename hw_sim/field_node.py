"""The field node as the simulator serves it: its live words, its log, its history window.

A device with the ``field_node`` profile is the quantrac field node (firmware/), and the agent
reads such a device's channels from the node's log, not from its live registers
(edge_agent/poll/backfill.py: node words 26..35, clock set at holding 0-1, cursor at holding
3-4, history window at input 100). A simulator that served only the live registers left the
channels of every field node offline; this serves the firmware's register map
(firmware/regmap.py, mirrored by drivers/field_node.py, whose constants are used here so the
three cannot drift) from a log kept the way the firmware keeps it:

* every ``period_s`` the node appends one record per input (the four analog inputs, the two
  pulse totals) with a sequence number; until the gateway sets the clock, slots are aligned to
  uptime and records carry the uptime with ``FLAG_UNSYNCED``, after it to UTC;
* a clock set (FC16 of both words of ``HR_TIME``) appends a ``CH_CLOCK`` record (new UTC,
  uptime then), so the gateway maps the unsynced records of the boot as it does the node's;
* the window shows up to ``HIST_MAX`` records from ``HR_CURSOR`` (or the oldest kept), and the
  ring keeps the last ``capacity`` records, so a long cut trims the log as on the node's flash.

The values are the simulator's signals (:func:`hw_sim.signals.channel_value`) at each slot's
time, so a record equals what the live registers served at that moment; a scheduled
``status = "fault"`` logs the status ``ST_LOW`` (NE 43, a broken loop), anything else 0.
What is not emulated: the node's config registers (5-8: unit, baud, period, commit), refused
with exception 02; digital inputs (always 0); the relay is a holding word with no contact.

Pure: the caller passes the time (the station's clock) to every call; the slave
(:mod:`hw_sim.slave`) holds the lock around it.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from collections.abc import Callable

from drivers import field_node as fn
from drivers import modbus
from drivers.profile import ChannelSpec, Profile

LIVE_COUNT = 40
IR_DIGITAL = 24
IR_RELAY = 25
IR_LOG_CAPACITY = 36
IR_VERSION = 38
IR_HEAP_FREE = 39
HR_RELAY = 2
HOLDING_COUNT = 9
HIST_COUNT = fn.HIST_HEADER + fn.HIST_MAX * fn.REC_WORDS
ST_LOW = 1
VERSION = 1

#: (value, status word) of a channel at a host time
ValueOf = Callable[[ChannelSpec, float], tuple[float, int]]
_Rec = tuple[int, int, int, int, int, int]  # seq, time, boot, channel, flags, raw


def _hi(v: int) -> int:
    return (v >> 16) & 0xFFFF


def _lo(v: int) -> int:
    return v & 0xFFFF


def log_inputs(profile: Profile) -> list[tuple[int, ChannelSpec]]:
    """(log channel, profile channel) of every input the node logs: analog input ``i`` is the
    float32 at input register ``4 i``, pulse total ``j`` the uint32 at ``16 + 4 j``."""
    out = []
    for ch in profile.channels:
        if ch.function != 4 or ch.address % 4:
            continue
        if ch.dtype == "float32" and ch.address < 16:
            out.append((ch.address // 4, ch))
        elif ch.dtype == "uint32" and 16 <= ch.address < 24:
            out.append((fn.CH_PULSE0 + (ch.address - 16) // 4, ch))
    return sorted(out, key=lambda p: p[0])


class SimNode:
    """One simulated field node's clock, log, cursor and relay."""

    def __init__(self, profile: Profile, start: float, value_of: ValueOf, *,
                 period_s: int = 60, capacity: int = 4096, boot: int = 1) -> None:
        self.inputs = log_inputs(profile)
        self.start = start
        self.value_of = value_of
        self.period_s = period_s
        self.capacity = capacity
        self.boot = boot
        self.offset: float | None = None  # node UTC - host time, once the gateway set it
        self.log: deque[_Rec] = deque(maxlen=capacity)
        self.head = 0
        self.cursor = 0
        self.relay = 0
        self.next_slot = period_s  # uptime seconds until synced, then UTC seconds

    # ----------------------------------------------------------------- clock and log

    def uptime(self, t: float) -> int:
        return max(0, math.floor(t - self.start))

    def utc(self, t: float) -> int:
        return 0 if self.offset is None else math.floor(t + self.offset)

    def _slot_host_time(self, slot: int) -> float:
        return self.start + slot if self.offset is None else slot - self.offset

    def _append(self, rec: tuple[int, int, int, int, int]) -> None:
        self.log.append((self.head, *rec))
        self.head += 1

    def catch_up(self, t: float) -> None:
        """Log every slot due by ``t`` (the node scans and logs on its own, between polls)."""
        now = self.uptime(t) if self.offset is None else self.utc(t)
        flags = fn.FLAG_UNSYNCED if self.offset is None else 0
        while self.next_slot <= now:
            host = self._slot_host_time(self.next_slot)
            for channel, spec in self.inputs:
                value, status = self.value_of(spec, host)
                if channel < fn.CH_PULSE0:
                    raw = int.from_bytes(struct.pack(">f", value), "big")
                else:
                    raw, status = int(value) & 0xFFFFFFFF, 0
                self._append((self.next_slot, self.boot, channel, flags | status, raw))
            self.next_slot += self.period_s

    def set_clock(self, utc: int, t: float) -> None:
        self.catch_up(t)
        self.offset = utc - t
        self._append((utc, self.boot, fn.CH_CLOCK, 0, self.uptime(t)))
        self.next_slot = (utc // self.period_s + 1) * self.period_s

    @property
    def oldest(self) -> int:
        return self.log[0][0] if self.log else self.head

    # ----------------------------------------------------------------- registers

    def live(self, t: float, image: dict[tuple[int, int], int]) -> list[int]:
        """Input registers 0..39: the profile's words (``image``) and the node's own."""
        w = [image.get((4, a), 0) for a in range(LIVE_COUNT)]
        w[IR_DIGITAL] = 0
        w[IR_RELAY] = self.relay
        w[fn.IR_NODE_STATUS] = fn.NODE_UNSYNCED if self.offset is None else 0
        w[fn.IR_BOOT] = self.boot
        for a, v in ((fn.IR_UPTIME, self.uptime(t)), (fn.IR_CLOCK, self.utc(t)),
                     (fn.IR_LOG_HEAD, self.head), (fn.IR_LOG_OLDEST, self.oldest),
                     (IR_LOG_CAPACITY, self.capacity)):
            w[a], w[a + 1] = _hi(v), _lo(v)
        w[IR_VERSION] = VERSION
        w[IR_HEAP_FREE] = 0xFFFF
        return w

    def window(self) -> list[int]:
        first_kept = max(self.cursor, self.oldest)
        recs = [r for r in self.log if r[0] >= first_kept][:fn.HIST_MAX]
        first = recs[0][0] if recs else max(self.cursor, self.head)
        w = [len(recs), _hi(first), _lo(first)]
        for seq, time, boot, ch, flags, raw in recs:
            w.extend((_hi(seq), _lo(seq), _hi(time), _lo(time), boot, (ch << 8) | flags,
                      _hi(raw), _lo(raw)))
        return w + [0] * (HIST_COUNT - len(w))

    def holding(self, t: float) -> list[int]:
        c = self.utc(t)
        return [_hi(c), _lo(c), self.relay, _hi(self.cursor), _lo(self.cursor), 0, 96,
                self.period_s, 0]

    def read(self, function: int, address: int, count: int, t: float,
             image: dict[tuple[int, int], int]) -> list[int] | int:
        """The words of an FC03/FC04 read, or a Modbus exception code (as the firmware)."""
        self.catch_up(t)
        end = address + count
        if function == modbus.READ_HOLDING:
            if end > HOLDING_COUNT:
                return modbus.ILLEGAL_DATA_ADDRESS
            return self.holding(t)[address:end]
        if end <= LIVE_COUNT:
            return self.live(t, image)[address:end]
        if address >= fn.IR_HIST and end <= fn.IR_HIST + HIST_COUNT:
            return self.window()[address - fn.IR_HIST:end - fn.IR_HIST]
        return modbus.ILLEGAL_DATA_ADDRESS

    def write(self, address: int, words: list[int], t: float) -> int | None:
        """Apply an FC06/FC16 write; a Modbus exception code when refused (nothing applied).

        The clock and the cursor are 32-bit: both words in one FC16, else exception 03."""
        acts: list[tuple[int, int]] = []
        i = 0
        while i < len(words):
            reg = address + i
            if reg in (fn.HR_TIME, fn.HR_CURSOR):
                if i + 1 >= len(words):
                    return modbus.ILLEGAL_DATA_VALUE
                acts.append((reg, (words[i] << 16) | words[i + 1]))
                i += 2
                continue
            if reg in (fn.HR_TIME + 1, fn.HR_CURSOR + 1):
                return modbus.ILLEGAL_DATA_VALUE
            if reg != HR_RELAY:
                return modbus.ILLEGAL_DATA_ADDRESS  # config registers: not emulated
            if words[i] not in (0, 1):
                return modbus.ILLEGAL_DATA_VALUE
            acts.append((reg, words[i]))
            i += 1
        for reg, v in acts:
            if reg == fn.HR_TIME:
                self.set_clock(v, t)
            elif reg == fn.HR_CURSOR:
                self.cursor = v
            else:
                self.relay = v
        return None
