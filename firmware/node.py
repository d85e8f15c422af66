"""The field node: inputs -> live registers and the flash log; Modbus RTU slave on the trunk.

Everything here is the same on rp2, esp32 and the unix port; only ``hal`` differs (see
firmware/hal/__init__.py for the interface). One loop, no threads, no allocation on the
pulse path (the pin IRQ only bumps an int in the HAL):

1. feed the watchdog;
2. move UART bytes into the frame assembler; once the line has been quiet for 3.5 characters,
   answer the frame (mbrtu.answer) and send the reply with DE raised (hal.uart_send);
3. every ``scan_ms``: read every input (oversampled, filtered, scaled, NE 43 checked);
4. at every log slot (``period_s``, aligned to UTC once synced, else to uptime): append one
   record per channel as one batch, then save the pulse totals if they moved;
5. sleep until a byte arrives or the next thing is due.

Time: the node has no RTC. ``uptime`` is its monotonic ms since boot, kept in software from
hal.ticks_ms() with ticks_diff (ticks wrap every few days on the MCU ports). Until the gateway
writes the clock (HR_TIME), records carry FLAG_UNSYNCED and uptime seconds of boot ``boot``;
the clock write itself is logged as a CH_CLOCK record (new UTC, uptime at that moment) so the
gateway can map every unsynced record of that boot to UTC afterwards (drivers/field_node.py).

Totaliser: pulses since boot come from the HAL; the total is the saved total at boot plus
those. It is saved (state.json, atomically renamed) after each log batch when it moved, so a
power cut loses at most one period of pulses, and ``unsaved`` tells the gateway how many are
at risk; a watchdog reset or a commanded reset saves first where it can (the MCU's WDT reset
cannot: hence the period bound). The watchdog reset is a reboot: log and totals are on flash.
"""

import gc
import json
import os
import struct
import time

import flashlog
import inputs
import mbrtu
import nodecfg
import regmap
from hal.base import Hal

NAN = float("nan")


def _hi(v: int) -> int:
    return (v >> 16) & 0xFFFF


def _lo(v: int) -> int:
    return v & 0xFFFF


def _f32_words(x: float) -> tuple[int, int]:
    b = struct.pack(">f", x)
    return (b[0] << 8) | b[1], (b[2] << 8) | b[3]


class Node(mbrtu.Device):
    def __init__(self, hal: Hal) -> None:
        self.hal = hal
        root = hal.ROOT
        self.cfg_path = root + "/node.json"
        self.state_path = root + "/state.json"
        self.cfg, self.cfg_error = nodecfg.load(self.cfg_path)
        if self.cfg_error:
            print("CONFIG ERROR:", self.cfg_error)
            print("running on the safe default: unit %d, 9600 8N1, analog in mA"
                  % nodecfg.SAFE_UNIT)
        cfg = self.cfg
        self.unit = cfg["unit"]
        self.boot, self.totals = self._load_state()
        self.boot = (self.boot + 1) & 0xFFFF
        self.reset_cause = hal.reset_cause()
        self._save_state()
        self.log = flashlog.Log(root + "/log", cfg["log_capacity"])
        self.log.open()
        self.uptime = 0
        self._ticks = hal.ticks_ms()
        self.offset_ms: int | None = None  # UTC ms - uptime ms, once the gateway set the clock
        na = len(cfg["analog"])
        self.a_val = [NAN] * regmap.MAX_ANALOG
        self.a_st = [regmap.ST_OFF] * regmap.MAX_ANALOG
        self.a_ua = [0] * regmap.MAX_ANALOG
        self.n_analog = na
        self.n_pulse = len(cfg["pulse"])
        hal.setup_pulses([p["debounce_ms"] for p in cfg["pulse"]])
        self.p_base = [hal.pulses(j) for j in range(self.n_pulse)]
        self.saved_totals = list(self.totals)
        self.levels = [inputs.Level(d["debounce_ms"]) for d in cfg["digital"]]
        self.di = 0
        self.relay = 0
        hal.relay(0)
        self.cursor = 0
        self.pending: dict = {}
        self.reset_after_reply = False
        self.next_scan = 0
        self.next_slot = self._first_slot()
        self.scans = 0
        self.frames = 0
        self.answered = 0
        self.heap_peak = 0
        self.heap_free = 0
        self._last_gc = 0
        self._samples = [0] * cfg["oversample"]
        self.asm = mbrtu.Assembler(mbrtu.gap_us(cfg["baud"]))
        hal.uart_open(cfg["baud"], cfg["parity"])
        hal.wdt_start(cfg["watchdog_ms"])

    # ------------------------------------------------------------------ persistent state
    def _load_state(self) -> tuple[int, list[int]]:
        n = regmap.MAX_PULSE
        try:
            with open(self.state_path) as f:
                doc = json.loads(f.read())
            totals = [int(x) & 0xFFFFFFFF for x in doc["totals"]][:n]
            return int(doc["boot"]), totals + [0] * (n - len(totals))
        except (OSError, ValueError, KeyError, TypeError):
            return 0, [0] * n

    def _save_state(self) -> None:
        tmp = self.state_path + ".new"
        with open(tmp, "w") as f:
            f.write(json.dumps({"boot": self.boot, "totals": self.totals}))
        os.rename(tmp, self.state_path)

    # ------------------------------------------------------------------ time
    def _tick(self) -> int:
        now = self.hal.ticks_ms()
        d = time.ticks_diff(now, self._ticks)
        if d > 0:
            self.uptime += d
            self._ticks = now
        return self.uptime

    def utc_s(self) -> int:
        off = self.offset_ms
        return 0 if off is None else (off + self.uptime) // 1000

    def _first_slot(self) -> int:
        p = self.cfg["period_s"]
        base = self.utc_s() if self.offset_ms is not None else self.uptime // 1000
        return (base // p + 1) * p

    def _now_slot_time(self) -> int:
        return self.utc_s() if self.offset_ms is not None else self.uptime // 1000

    # ------------------------------------------------------------------ inputs
    def scan(self) -> None:
        hal = self.hal
        cfg = self.cfg
        buf = self._samples
        for i in range(self.n_analog):
            for k in range(len(buf)):
                buf[k] = hal.adc_counts(i)
            counts = inputs.filtered(buf, cfg["filter"])
            ma = counts * inputs.MA_PER_COUNT
            ch = cfg["analog"][i]
            self.a_val[i], self.a_st[i] = inputs.scale(ma, ch["lo"], ch["hi"])
            self.a_ua[i] = min(65535, int(ma * 1000.0 + 0.5))
        for j in range(self.n_pulse):
            n = hal.pulses(j)
            self.totals[j] = (self.saved_totals[j] + n - self.p_base[j]) & 0xFFFFFFFF
        di = 0
        for k in range(len(self.levels)):
            di |= self.levels[k].update(hal.digital(k), self.uptime) << k
        self.di = di
        self.scans += 1

    def unsaved(self, j: int) -> int:
        return (self.totals[j] - self.saved_totals[j]) & 0xFFFFFFFF

    def log_slot(self, t: int) -> None:
        flags = 0 if self.offset_ms is not None else regmap.FLAG_UNSYNCED
        recs = []
        for i in range(self.n_analog):
            v = self.a_val[i]
            recs.append((i, t, self.boot, flags | self.a_st[i], flashlog.f32_bits(v)))
        for j in range(self.n_pulse):
            recs.append((regmap.CH_PULSE0 + j, t, self.boot, flags, self.totals[j]))
        if self.levels:
            recs.append((regmap.CH_DIGITAL, t, self.boot, flags, self.di))
        if recs:
            self._append(recs)
        if any(self.unsaved(j) for j in range(self.n_pulse)):
            self.persist_totals()

    def _append(self, recs: list) -> None:
        try:
            self.log.append(recs)
            self.log.error = False
        except OSError as exc:
            self.log.error = True
            print("LOG ERROR:", exc)

    def persist_totals(self) -> None:
        # Rebase: what is saved becomes the base, so totals stay saved + pulses since then.
        for j in range(self.n_pulse):
            self.p_base[j] += self.unsaved(j)
            self.saved_totals[j] = self.totals[j]
        self._save_state()

    # ------------------------------------------------------------------ registers
    def node_status(self) -> int:
        s = 0
        if self.offset_ms is None:
            s |= regmap.NODE_UNSYNCED
        if self.cfg_error:
            s |= regmap.NODE_CONFIG_DEFAULT
        if self.log.error:
            s |= regmap.NODE_LOG_ERROR
        if self.reset_cause == "wdt":
            s |= regmap.NODE_WDT_RESET
        if self.pending:
            s |= regmap.NODE_CONFIG_PENDING
        return s

    def live(self) -> list[int]:
        w = [0] * regmap.LIVE_COUNT
        for i in range(regmap.MAX_ANALOG):
            a = regmap.IR_ANALOG + regmap.ANALOG_STRIDE * i
            w[a], w[a + 1] = _f32_words(self.a_val[i])
            w[a + 2] = self.a_st[i]
            w[a + 3] = self.a_ua[i]
        for j in range(regmap.MAX_PULSE):
            a = regmap.IR_PULSE + regmap.PULSE_STRIDE * j
            if j < self.n_pulse:
                t = self.totals[j]
                w[a], w[a + 1] = _hi(t), _lo(t)
                w[a + 2] = regmap.ST_OK
                w[a + 3] = min(0xFFFF, self.unsaved(j))
            else:
                w[a + 2] = regmap.ST_OFF
        w[regmap.IR_DIGITAL] = self.di
        w[regmap.IR_RELAY] = self.relay
        w[regmap.IR_NODE_STATUS] = self.node_status()
        w[regmap.IR_BOOT] = self.boot
        up = self.uptime // 1000
        w[regmap.IR_UPTIME], w[regmap.IR_UPTIME + 1] = _hi(up), _lo(up)
        c = self.utc_s()
        w[regmap.IR_CLOCK], w[regmap.IR_CLOCK + 1] = _hi(c), _lo(c)
        log = self.log
        w[regmap.IR_LOG_HEAD], w[regmap.IR_LOG_HEAD + 1] = _hi(log.head), _lo(log.head)
        w[regmap.IR_LOG_OLDEST], w[regmap.IR_LOG_OLDEST + 1] = _hi(log.oldest), _lo(log.oldest)
        w[regmap.IR_LOG_CAPACITY] = _hi(log.capacity)
        w[regmap.IR_LOG_CAPACITY + 1] = _lo(log.capacity)
        w[regmap.IR_VERSION] = regmap.VERSION
        w[regmap.IR_HEAP_FREE] = min(0xFFFF, self.heap_free)
        return w

    def window(self) -> list[int]:
        recs = self.log.read(self.cursor, regmap.HIST_MAX)
        first = recs[0][0] if recs else max(self.cursor, self.log.head)
        w = [len(recs), _hi(first), _lo(first)]
        for seq, t, boot, ch, flags, value in recs:
            w.extend((_hi(seq), _lo(seq), _hi(t), _lo(t), boot, (ch << 8) | flags,
                      _hi(value), _lo(value)))
        w.extend([0] * (regmap.HIST_COUNT - len(w)))
        return w

    def holding(self) -> list[int]:
        c = self.utc_s()
        cfg = self.cfg
        p = self.pending
        return [_hi(c), _lo(c), self.relay, _hi(self.cursor), _lo(self.cursor),
                p.get("unit", cfg["unit"]), p.get("baud", cfg["baud"]) // 100,
                p.get("period_s", cfg["period_s"]), 0]

    def read(self, fc: int, addr: int, count: int) -> list[int]:
        end = addr + count
        if fc == 3:
            if end > regmap.HOLDING_COUNT:
                raise mbrtu.ModbusError(mbrtu.ILLEGAL_DATA_ADDRESS)
            return self.holding()[addr:end]
        if end <= regmap.LIVE_COUNT:
            return self.live()[addr:end]
        if addr >= regmap.IR_HIST and end <= regmap.IR_HIST + regmap.HIST_COUNT:
            return self.window()[addr - regmap.IR_HIST:end - regmap.IR_HIST]
        raise mbrtu.ModbusError(mbrtu.ILLEGAL_DATA_ADDRESS)

    def write(self, fc: int, addr: int, words: list[int]) -> None:
        if addr + len(words) > regmap.HOLDING_COUNT:
            raise mbrtu.ModbusError(mbrtu.ILLEGAL_DATA_ADDRESS)
        acts = []
        i = 0
        while i < len(words):
            reg = addr + i
            if reg in (regmap.HR_TIME, regmap.HR_CURSOR):
                if i + 1 >= len(words):
                    raise mbrtu.ModbusError(mbrtu.ILLEGAL_DATA_VALUE)  # half a u32
                acts.append((reg, (words[i] << 16) | words[i + 1]))
                i += 2
                continue
            if reg in (regmap.HR_TIME + 1, regmap.HR_CURSOR + 1):
                raise mbrtu.ModbusError(mbrtu.ILLEGAL_DATA_VALUE)
            v = words[i]
            ok = ((reg == regmap.HR_RELAY and v in (0, 1))
                  or (reg == regmap.HR_UNIT and 1 <= v <= 247)
                  or (reg == regmap.HR_BAUD and v * 100 in nodecfg.BAUDS)
                  or (reg == regmap.HR_PERIOD and 1 <= v <= 3600 and 3600 % v == 0)
                  or (reg == regmap.HR_COMMIT and v == regmap.COMMIT_MAGIC))
            if not ok:
                raise mbrtu.ModbusError(mbrtu.ILLEGAL_DATA_VALUE)
            acts.append((reg, v))
            i += 1
        for reg, v in acts:
            self._apply(reg, v)

    def _apply(self, reg: int, v: int) -> None:
        if reg == regmap.HR_TIME:
            self.set_clock(v)
        elif reg == regmap.HR_CURSOR:
            self.cursor = v
        elif reg == regmap.HR_RELAY:
            self.relay = v
            self.hal.relay(v)
        elif reg == regmap.HR_UNIT:
            self.pending["unit"] = v
        elif reg == regmap.HR_BAUD:
            self.pending["baud"] = v * 100
        elif reg == regmap.HR_PERIOD:
            self.pending["period_s"] = v
        elif reg == regmap.HR_COMMIT:
            cfg = dict(self.cfg)
            cfg.update(self.pending)
            nodecfg.save(self.cfg_path, nodecfg.validate(cfg))
            self.reset_after_reply = True

    def set_clock(self, utc: int) -> None:
        self._tick()
        self.offset_ms = utc * 1000 - self.uptime
        self._append([(regmap.CH_CLOCK, utc, self.boot, 0, self.uptime // 1000)])
        self.next_slot = self._first_slot()

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        return {
            "boot": self.boot, "reset_cause": self.reset_cause, "uptime_ms": self.uptime,
            "utc": self.utc_s(), "synced": self.offset_ms is not None, "unit": self.unit,
            "config_error": self.cfg_error,
            "analog": [[self.a_val[i] if self.a_val[i] == self.a_val[i] else None,  # NaN
                        self.a_st[i], self.a_ua[i]] for i in range(self.n_analog)],
            "totals": self.totals[:self.n_pulse], "saved": self.saved_totals[:self.n_pulse],
            "digital": self.di, "relay": self.relay, "scans": self.scans,
            "log": {"head": self.log.head, "oldest": self.log.oldest,
                    "capacity": self.log.capacity, "skipped": self.log.skipped,
                    "writes": self.log.writes, "error": self.log.error},
            "next_slot": self.next_slot, "frames": self.frames, "answered": self.answered,
            "dropped": self.asm.dropped,
            "heap_peak": self.heap_peak, "heap_free": self.heap_free,
        }

    # ------------------------------------------------------------------ loop
    def step(self) -> None:
        hal = self.hal
        hal.wdt_feed()
        data = hal.uart_read()
        if data:
            self.asm.feed(data, hal.line_us())
        if self.asm.pending():
            frame = self.asm.take(time.ticks_diff(hal.line_us(), self.asm.last))
            if frame is not None:
                self.frames += 1
                reply = mbrtu.answer(frame, self.unit, self)
                if reply is not None:
                    hal.uart_send(reply)
                    self.answered += 1
                if self.reset_after_reply:
                    self.log.close()
                    hal.reset()
        now = self._tick()
        if now >= self.next_scan:
            self.scan()
            self.next_scan = now + self.cfg["scan_ms"]
        t = self._now_slot_time()
        if t >= self.next_slot:
            p = self.cfg["period_s"]
            slot = (t // p) * p
            self.log_slot(slot)
            self.next_slot = slot + p
        alloc = gc.mem_alloc()
        if alloc > self.heap_peak:
            self.heap_peak = alloc
        line = hal.line_us()
        if gc.mem_free() < 16384 or time.ticks_diff(line, self._last_gc) > 1_000_000:
            gc.collect()
            self._last_gc = line
            self.heap_free = gc.mem_free()
        hal.report(self)
        if self.asm.pending():
            hal.wait_us(self.asm.gap)
        else:
            hal.wait_us(min(20_000, max(0, self.next_scan - self._tick()) * 1000))


def run(hal: Hal) -> None:
    """Boot and serve forever; an unexpected error is printed and resets the node."""
    node = None
    try:
        node = Node(hal)
        print("field node: unit %d, boot %d, log head %d (%d torn records skipped)"
              % (node.unit, node.boot, node.log.head, node.log.skipped))
        while True:
            node.step()
    except KeyboardInterrupt:
        if node is not None:
            node.log.close()
        raise
    except Exception as exc:  # the node must come back, not sit at a REPL
        import sys

        sys.print_exception(exc)
        hal.reset()
