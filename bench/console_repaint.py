"""Bytes ``quantrac console`` sends to the terminal, and what they cost on a 9600-baud line.

A technician's serial console may run at 9600 baud: 960 characters a second (8N1 is 10 bits
a character). A full-screen program that repainted everything on each change would need
80x24 = 1920 characters, two seconds, per refresh; curses (ncurses' optimiser) sends only
the cells that changed. This measures it on the real program: the console runs under a pty
(TERM=vt100, 80x24) against a running agent and simulator (``tests.console_world``), and
every byte it writes is counted. The pty is set to 9600 baud, as getty sets a slow serial
console: the console holds a screen to what that speed carries in 0.7 s (a longer page is
scrolled, j/k), so this measures that bound too. Two stations: the test station (6
channels) and one of 10 analysers (30 channels), each with the last hour in its outbox
(``seed_outbox``), so every sparkline is full: the most bytes a values line can take.

* the start-up: everything written in the first 3 s (the first paint, then the page again
  as the agent's status arrives);
* a full refresh (Ctrl-L: clear and repaint everything) of every page, and of every page of
  the values page (``+`` turns it), the median of three;
* a page switch (each page key, the screen mostly replaced);
* the typical update: the values page left alone, where the clock and the values' ages tick;
  bytes per second over several seconds.

Each figure is printed with its time at 9600 baud (bytes * 10 / 9600 s) and its share of a
naive full repaint (1920 characters plus positioning). Target: every full refresh at most
~0.7 s at 9600 baud, whatever the channel count (the values page is paged for that). Usage:
``.venv/bin/python bench/console_repaint.py [--idle S] [--devices N]``.
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

from edge_agent.console.screen.app import FULL_REPAINT_S
from edge_agent.console.screen.pages import VALUES_PER_PAGE
from tests.console_world import CHANNELS, console_world, many_channels, quantrac, seed_outbox

BAUD = 9600
TARGET_S = 0.7
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


def full_refresh(meter: Meter) -> int:
    """The median bytes of three Ctrl-L repaints of the page shown."""
    return sorted(meter.burst(b"\x0c") for _ in range(3))[1]


def measure(devices: int, idle_s: float) -> tuple[list[str], float, float]:
    """The figures of one station (``devices`` 0: the test station), and its slowest full
    refresh of a values page and of any page, in seconds at 9600 baud."""
    channels = many_channels(devices) if devices else CHANNELS
    with tempfile.TemporaryDirectory(prefix="console-bench") as tmp, \
            console_world(Path(tmp), devices) as world:
        seed_outbox(world.state_dir, time.time(), channels)
        world.start_agent()
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        attrs = termios.tcgetattr(slave)  # the tty at 9600, as getty sets a slow console
        attrs[4] = attrs[5] = termios.B9600  # line: the console sizes its screens by it
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        proc = subprocess.Popen(quantrac("console", "--config", str(world.config)),
                                stdin=slave, stdout=slave, stderr=subprocess.DEVNULL,
                                env={**os.environ, "TERM": "vt100"}, start_new_session=True)
        os.close(slave)
        meter = Meter(master)
        full: dict[str, int] = {}
        try:
            time.sleep(3)  # the first status arrives, the overview fills
            first = meter.settle()
            meter.burst(b"v")
            time.sleep(2.5)  # the values page with data, every channel seen
            pages = {k: meter.burst(k.encode()) for k in "obrenv?"}
            for key in "obren?":
                meter.burst(key.encode())
                full[key] = full_refresh(meter)
            meter.burst(b"v")
            n_pages = -(-len(channels) // VALUES_PER_PAGE)
            for n in range(1, n_pages + 1):
                full[f"v {n}/{n_pages}"] = full_refresh(meter)
                meter.burst(b"+")
            meter.burst(b"-" * n_pages)  # back to the first page
            start, t0 = meter.settle(), time.monotonic()
            time.sleep(idle_s)
            idle = (meter.total - start) / (time.monotonic() - t0)
            os.write(master, b"q")
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
    out = [f"station with {len(channels)} channels ({n_pages} values page(s))",
           line("start-up, first 3 s (paint + data)", first)]
    out += [line(f"full refresh (^L), {key!r}", n) for key, n in full.items()]
    out += [line(f"page switch to {key!r}", n) for key, n in pages.items()]
    out.append(line("typical update, values page (/s)", idle))
    values = max(n for key, n in full.items() if key.startswith("v "))
    return out, values * 10 / BAUD, max(full.values()) * 10 / BAUD


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=float, default=6.0, help="seconds of typical updates")
    parser.add_argument("--devices", type=int, default=10,
                        help="analysers of the bigger station (3 channels each)")
    args = parser.parse_args()
    worst_values = worst = 0.0
    for devices in (0, args.devices):
        lines, values, slowest = measure(devices, args.idle)
        print("\n".join(lines))
        worst_values, worst = max(worst_values, values), max(worst, slowest)
    for what, s in (("a values page", worst_values), ("any page", worst)):
        print(f"slowest full refresh of {what} at {BAUD} baud: {s:.3f} s, target {TARGET_S} s "
              f"({'met' if s <= TARGET_S else 'NOT met'}); at 115200 baud "
              f"{s * BAUD / 115200:.3f} s")
    print(f"(a page is held under {FULL_REPAINT_S} s at the line's speed whatever the station: "
          "the rest of a longer one scrolls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
