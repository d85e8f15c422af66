"""Bytes ``quantrac console`` sends to the terminal, and what they cost on a 9600-baud line.

A technician's serial console may run at 9600 baud: 960 characters a second (8N1 is 10 bits
a character). A full-screen program that repainted everything on each change would need
80x24 = 1920 characters, two seconds, per refresh; curses (ncurses' optimiser) sends only
the cells that changed. This measures it on the real program: the console runs under a pty
(TERM=vt100, 80x24) against a running agent and simulator (``tests.console_world``), and
every byte it writes is counted:

* the start-up: everything written in the first 3 s (the first paint, then the page again
  as the agent's status arrives);
* a full refresh (Ctrl-L: clear and repaint everything) of the values and overview pages,
  the fullest ones;
* a page switch (each page key, the screen mostly replaced);
* the typical update: the values page left alone, where the clock and the values' ages tick;
  bytes per second over several seconds.

Each figure is printed with its time at 9600 baud (bytes * 10 / 9600 s) and its share of a
naive full repaint (1920 characters plus positioning). Target: a full refresh well under
1 s at 9600 baud. Usage: ``.venv/bin/python bench/console_repaint.py [--idle S]``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.console_world

from tests.console_world import console_world, quantrac

BAUD = 9600
NAIVE = 80 * 24  # characters of a repaint that sends every cell
QUIET_S = 0.15  # no byte for this long: the repaint is over (ncurses writes one in a burst;
# the next change, an age ticking, comes a second later)


class Meter:
    """Counts the bytes the console writes to the pty master, with when they came."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.total = 0
        self.last = time.monotonic()
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.total += len(data)
                self.last = time.monotonic()

    def settle(self, timeout: float = 15.0) -> int:
        """Wait until QUIET_S pass without a byte; the total so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if time.monotonic() - self.last >= QUIET_S:
                    return self.total
            time.sleep(0.05)
        with self.lock:
            return self.total

    def burst(self, send: bytes) -> int:
        """Bytes written in answer to the keys ``send`` (until quiet)."""
        before = self.settle()
        os.write(self.fd, send)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the answer's first byte
            with self.lock:
                if self.total > before:
                    break
            time.sleep(0.01)
        return self.settle() - before


def line(what: str, n: float) -> str:
    return (f"{what:<34} {n:>7.0f} bytes  {n * 10 / BAUD:>6.3f} s at {BAUD}  "
            f"{n / NAIVE:>5.0%} of a naive repaint")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=float, default=6.0, help="seconds of typical updates")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="console-bench") as tmp, \
            console_world(Path(tmp)) as world:
        world.start_agent()
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        proc = subprocess.Popen(quantrac("console", "--config", str(world.config)),
                                stdin=slave, stdout=slave, stderr=subprocess.DEVNULL,
                                env={**os.environ, "TERM": "vt100"}, start_new_session=True)
        os.close(slave)
        meter = Meter(master)
        try:
            time.sleep(3)  # the first status arrives, the overview fills
            first = meter.settle()
            meter.burst(b"v")
            time.sleep(2.5)  # the values page with data
            full = sorted(meter.burst(b"\x0c") for _ in range(5))
            pages = {k: meter.burst(k.encode()) for k in "obrenv?"}
            meter.burst(b"o")
            overview = sorted(meter.burst(b"\x0c") for _ in range(3))
            meter.burst(b"v")
            start, t0 = meter.settle(), time.monotonic()
            time.sleep(args.idle)
            idle = (meter.total - start) / (time.monotonic() - t0)
            os.write(master, b"q")
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
    print(line("start-up, first 3 s (paint + data)", first))
    print(line("full refresh, values page (^L)", full[2]))
    print(f"  (five refreshes: {', '.join(map(str, full))} bytes; the median is shown)")
    print(line("full refresh, overview page (^L)", overview[1]))
    for key, n in pages.items():
        print(line(f"page switch to {key!r}", n))
    print(line("typical update, values page (/s)", idle))
    worst = max(full[-1], overview[-1]) * 10 / BAUD
    print(f"slowest full refresh at {BAUD} baud: {worst:.3f} s, {worst:.0%} of the 1 s target "
          f"({'met' if worst < 1 else 'NOT met'}); at 115200 baud {worst * BAUD / 115200:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
