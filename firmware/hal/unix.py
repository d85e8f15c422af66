"""The unix-port HAL: the node's trunk is a pty (or any serial device), its flash a littlefs
image in a file, its inputs and its clock what a control file says. Tests, the demo and the
bench drive the node through that file; nothing above the HAL knows it is not an MCU.

Control file (JSON, replaced atomically by the driver; re-read every few ms when its size or
mtime changed, or anyway every 50 ms)::

    {"ma": [12.0, 4.0], "pulses": [17, 0], "bounce": 3, "di": [0, 1],
     "sim_ms": 600000, "speed": 0, "host_ms": 1796115605391, "hang": false}

* ``ma``: loop current per analog channel, quantised through the same 12-bit front end the
  MCU has (inputs.counts_for_ma), so scaling is tested to the real resolution.
* ``pulses``: pulses the field device has produced so far on each input (a running count);
  the node counts the ones that arrive while it runs. Each pulse comes with ``bounce`` extra
  edges 50 us apart, fed through inputs.Debounce like a pin IRQ would.
* ``sim_ms``/``speed``/``host_ms``: the simulated world clock = sim_ms + speed * (host wall
  ms now - host_ms). ``speed`` 0 freezes it (the test steps it), 1 is real time, 1000 runs a
  minute in 60 ms. The node's ticks_ms is that clock minus its value at boot (ticks start at
  0 at every boot, as on the MCU). Without ``sim_ms`` the clock is the real one.
* ``hang``: the main loop hangs (stops feeding the watchdog) while true.

Watchdog: the WDT is hardware outside the CPU, so here it is outside the process too: each
feed rewrites a heartbeat file (at most every 100 ms) whose content is the timeout; the
supervisor in ``quantrac firmware run`` SIGKILLs and restarts the node when it goes stale.
``reset()`` exits with status 75; the supervisor restarts the node with --reset-cause soft.
"""

import json
import os
import select
import sys
import termios
import time

import inputs

MYPY = False
if MYPY:  # typing only (mypy treats MYPY as true); MicroPython has no typing module
    from typing import Any
from hal.base import Hal, ms

RESET_EXIT = 75
BLOCK = 4096


def _host_ms() -> int:
    return time.time_ns() // 1_000_000


class FileBlockDev:
    """A flash chip as a file: 4 KiB erase blocks, littlefs's extended block interface."""

    def __init__(self, path: str, blocks: int) -> None:
        try:
            size = os.stat(path)[6]
        except OSError:
            size = 0
        self.created = size == 0
        if self.created:
            with open(path, "wb") as f:
                chunk = b"\xff" * BLOCK
                for _ in range(blocks):
                    f.write(chunk)
            size = blocks * BLOCK
        self.blocks = size // BLOCK
        self.f = open(path, "r+b")

    def readblocks(self, n: int, buf: bytearray, off: int = 0) -> None:
        self.f.seek(n * BLOCK + off)
        self.f.readinto(buf)

    def writeblocks(self, n: int, buf: bytearray, off: int | None = None) -> None:
        self.f.seek(n * BLOCK + (off or 0))
        self.f.write(buf)

    def ioctl(self, op: int, arg: int) -> int | None:
        if op == 4:
            return self.blocks
        if op == 5:
            return BLOCK
        if op == 6:  # erase: littlefs never relies on erased contents, nothing to do
            return 0
        return None


class UnixHal(Hal):
    ROOT = "/flash"

    def __init__(self, port: str, ctl: str | None, status: str | None,
                 heartbeat: str | None, cause: str) -> None:
        self.port = port
        self.ctl_path = ctl
        self.status_path = status
        self.hb_path = heartbeat
        self.cause = cause
        self.ctl: dict[str, Any] = {}
        self._ctl_sig: tuple[int, ...] = ()
        self._ctl_at = 0
        self.f = None
        self.poller = select.poll()
        self.rx = bytearray(256)
        self.reopen_at = 0
        self.read_ctl(True)
        self.boot_world = self._world()
        self.base: list[int] = []
        self.deb: list[inputs.Debounce] = []
        self.edge_us = 0
        self.relay_state = 0
        self.wdt_ms = 0
        self._hb_at = 0
        self._status_at = 0
        self._status_sig: tuple[object, ...] = ()

    # ------------------------------------------------------------------ control file
    def read_ctl(self, force: bool = False) -> None:
        if not self.ctl_path:
            return
        now = ms()
        if not force and time.ticks_diff(now, self._ctl_at) < 3:
            return
        try:
            st = os.stat(self.ctl_path)
        except OSError:
            return
        sig = (st[6], st[8], st[1])
        if not force and sig == self._ctl_sig and time.ticks_diff(now, self._ctl_at) < 50:
            return
        self._ctl_at = now
        try:
            with open(self.ctl_path) as f:
                doc = json.loads(f.read())
        except (OSError, ValueError):
            return  # being replaced: keep the last good one
        if isinstance(doc, dict):
            self.ctl = doc
            self._ctl_sig = sig

    def _world(self) -> int:
        c = self.ctl
        if "sim_ms" not in c:
            return _host_ms()
        t: int = int(c["sim_ms"] + c.get("speed", 0) * (_host_ms() - c.get("host_ms", 0)))
        return t

    def ticks_ms(self) -> int:
        self.read_ctl()
        return self._world() - self.boot_world

    # ------------------------------------------------------------------ UART
    def uart_open(self, baud: int, parity: str) -> None:
        self.baud = baud
        self._open()

    def _open(self) -> None:
        try:
            f = open(self.port, "r+b")
        except OSError:
            self.f = None
            self.reopen_at = ms() + 200
            return
        fd = f.fileno()
        termios.setraw(fd)
        a = termios.tcgetattr(fd)
        a[6][6] = 0  # VMIN: a read returns at once with what there is
        a[6][5] = 0  # VTIME
        termios.tcsetattr(fd, termios.TCSANOW, a)
        self.f = f
        self.poller = select.poll()
        self.poller.register(f, select.POLLIN)

    def _drop(self) -> None:
        if self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass
        self.f = None
        self.poller = select.poll()
        self.reopen_at = ms() + 200

    def uart_read(self) -> bytes | None:
        if self.f is None:
            if time.ticks_diff(ms(), self.reopen_at) >= 0:
                self._open()
            return None
        try:
            n = self.f.readinto(self.rx)
        except OSError:
            self._drop()  # the line went away (the pty's far side closed): reopen later
            return None
        return bytes(self.rx[:n]) if n else None

    def uart_send(self, data: bytes) -> None:
        if self.f is None:
            return
        try:
            self.f.write(data)  # DE/RE: a pty has no driver to turn around
        except OSError:
            self._drop()

    def wait_us(self, us: int) -> None:
        while self.ctl.get("hang"):
            time.sleep_ms(20)  # hung: no feed, the watchdog will reset us
            self.read_ctl(True)
        ms = (us + 999) // 1000
        if self.f is None:
            time.sleep_ms(min(ms, 20))
            return
        for _, ev in self.poller.poll(max(1, ms)):
            if ev & (select.POLLHUP | select.POLLERR):
                self._drop()  # the pty's master went away (trunk cut): reopen in 200 ms
        return

    # ------------------------------------------------------------------ inputs
    def adc_counts(self, ch: int) -> int:
        ma = self.ctl.get("ma", [])
        return inputs.counts_for_ma(float(ma[ch]) if ch < len(ma) else 0.0)

    def _produced(self, ch: int) -> int:
        p = self.ctl.get("pulses", [])
        return int(p[ch]) if ch < len(p) else 0

    def setup_pulses(self, debounce_ms: list[int]) -> None:
        self.deb = [inputs.Debounce(ms * 1000) for ms in debounce_ms]
        self.base = [self._produced(j) for j in range(len(debounce_ms))]

    def pulses(self, ch: int) -> int:
        new = self._produced(ch) - self.base[ch]
        d = self.deb[ch]
        bounce = int(self.ctl.get("bounce", 0))
        step = max(2 * d.us, 1000)
        for _ in range(max(0, new)):
            self.edge_us += step
            d.edge(self.edge_us, self.edge_us - d.last)
            for k in range(bounce):  # contact bounce: edges 50 us apart
                t = self.edge_us + 50 * (k + 1)
                d.edge(t, t - d.last)
        if new > 0:
            self.base[ch] += new
        return d.count

    def digital(self, ch: int) -> int:
        di = self.ctl.get("di", [])
        return 1 if ch < len(di) and di[ch] else 0

    def relay(self, on: int) -> None:
        self.relay_state = 1 if on else 0

    # ------------------------------------------------------------------ watchdog, reset
    def wdt_start(self, timeout: int) -> None:
        self.wdt_ms = timeout
        self._hb_at = ms() - 1000
        self.wdt_feed()

    def wdt_feed(self) -> None:
        if not self.hb_path or not self.wdt_ms:
            return
        now = ms()
        if time.ticks_diff(now, self._hb_at) < 100:
            return
        self._hb_at = now
        tmp = self.hb_path + ".new"
        with open(tmp, "w") as f:
            f.write(str(self.wdt_ms))
        os.rename(tmp, self.hb_path)

    def reset_cause(self) -> str:
        return self.cause

    def reset(self) -> None:
        sys.exit(RESET_EXIT)

    # ------------------------------------------------------------------ status file
    def report(self, node: object) -> None:
        if not self.status_path:
            return
        n: Any = node
        sig = (n.scans, n.log.head, n.frames, n.asm.dropped, n.relay, n.offset_ms, n.uptime // 100,
               n.totals[0] if n.totals else 0)
        now = ms()
        if sig == self._status_sig and time.ticks_diff(now, self._status_at) < 500:
            return
        if time.ticks_diff(now, self._status_at) < 10:
            return
        self._status_at = now
        self._status_sig = sig
        st = n.status()
        st["relay_out"] = self.relay_state
        st["host_ms"] = _host_ms()
        tmp = self.status_path + ".new"
        with open(tmp, "w") as f:
            f.write(json.dumps(st))
        os.rename(tmp, self.status_path)
