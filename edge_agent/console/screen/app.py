"""The thin curses driver: draw the pages, read keys, leave the terminal as it was found.

Why stdlib :mod:`curses`: ncurses does the terminfo work for ``vt100`` and ``linux`` (and
whatever else ``$TERM`` names), and its optimiser sends only the cells that changed between
two refreshes, which is what makes a repaint cheap on a 9600-baud line (``bench/
console_repaint.py`` measures it); and it is no new dependency on the gateway. Colour only
when the terminal has it (``curses.has_colors()``); otherwise bold marks a ``!`` line.

The terminal is always given back: :func:`curses.wrapper` runs ``endwin`` on every way out.
Raw mode (not cbreak) so Ctrl-C and Ctrl-Z arrive as keys: on the serial getty the console is
the login shell, and a suspended login shell is a dead console port; Ctrl-C quits like q.
A cable pulled out (the pty or tty hangs up: SIGHUP, or POLLHUP on stdin) ends the program
cleanly. A failure in a page is drawn as a line by :func:`~.pages.screen`; nothing here lets
a traceback reach the screen (:mod:`.cli` reports anything else after ``endwin``).
"""

from __future__ import annotations

import contextlib
import curses
import locale
import logging
import os
import select
import signal
import sys
import threading
import time
import types

from edge_agent.console.screen.keys import Ui, handle
from edge_agent.console.screen.pages import screen
from edge_agent.console.screen.source import Source

TICK_MS = 250  # how long a key is waited for before the screen is redrawn from new data
#: the longest a full repaint may take on the line: a screen holds no more than its speed
#: carries in that time (at 9600 baud 864 bytes; at 115200 a whole screen fits anyway), the
#: rest of a long page is a scroll away. Not tighter: the pages as they are take up to
#: ~0.8 s at 9600 (the help with a banner), and a page cut at every refresh for a few bytes
#: would hide its last line; the values page, the one that grows with the station, is paged
#: to ~0.7 s (.pages.VALUES_PER_PAGE)
FULL_REPAINT_S = 0.9
CTRL_C, CTRL_L = "\x03", "\x0c"


def run(source: Source) -> int:
    """Run the console on the process's terminal until q, Ctrl-C or a hang-up; exit code."""
    locale.setlocale(locale.LC_ALL, "")
    gone = threading.Event()

    def hang_up(signum: int, frame: types.FrameType | None) -> None:
        gone.set()

    old = {s: signal.signal(s, hang_up) for s in (signal.SIGHUP, signal.SIGTERM)}
    # a log line on stderr would scribble over the screen (even with --verbose, or when
    # started with a systemd environment): the screen is this program's only output
    logging.disable(logging.CRITICAL)
    try:
        return curses.wrapper(_main, source, gone)
    except curses.error:
        if gone.is_set():  # the terminal went away under endwin: nothing to restore
            return 0
        raise
    finally:
        logging.disable(logging.NOTSET)
        for s, handler in old.items():
            signal.signal(s, handler)


def _hung_up(poller: select.poll) -> bool:
    return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
               for _, ev in poller.poll(0))


def _resized(scr: curses.window) -> bool:
    """Follow the terminal's size even when its SIGWINCH went to another thread and no
    KEY_RESIZE came: the tty's own size (TIOCGWINSZ) against the screen's."""
    try:
        cols, lines = os.get_terminal_size(sys.stdout.fileno())
    except OSError:  # no size (a serial line): the terminfo default stands
        return False
    if not lines or not cols or (lines, cols) == scr.getmaxyx():
        return False
    curses.resizeterm(lines, cols)
    scr.clear()
    return True


def _attrs() -> tuple[int, int]:
    """(title, warning) attributes: colour pairs when the terminal has colour, else bold."""
    if curses.has_colors():
        curses.init_pair(1, curses.COLOR_RED, -1 if _default_colors() else curses.COLOR_BLACK)
        return curses.A_BOLD, curses.color_pair(1) | curses.A_BOLD
    return curses.A_BOLD, curses.A_BOLD


def _default_colors() -> bool:
    try:
        curses.use_default_colors()
    except curses.error:
        return False
    return True


def _main(scr: curses.window, source: Source, gone: threading.Event) -> int:
    curses.raw()
    with contextlib.suppress(curses.error):  # vt100 may not hide the cursor: harmless
        curses.curs_set(0)
    title, warning = _attrs()
    scr.timeout(TICK_MS)
    poller = select.poll()
    poller.register(0, select.POLLIN)
    encoding = locale.getpreferredencoding(False)
    ui = Ui()
    # the line's speed as the tty has it (getty sets it on a serial console; 38400 on a pty)
    budget = int(FULL_REPAINT_S * curses.baudrate() / 10)
    shown: list[str] | None = None
    instant = 0  # reads that failed at once, in a row
    while not ui.quit:
        if gone.is_set() or _hung_up(poller):
            gone.set()  # endwin may fail on a line that is gone: run() knows why
            return 0
        view = source.snapshot()
        if _resized(scr):
            shown = None
        height, width = scr.getmaxyx()
        lines = screen(view, ui, width, height, budget)
        if lines != shown:
            scr.erase()  # ncurses compares with what is on the glass: only changes are sent
            for row, line in enumerate(lines):
                text = line.encode(encoding, "replace").decode(encoding)
                attr = title if row == 0 else warning if line.startswith(("!", "  !")) else 0
                with contextlib.suppress(curses.error):  # the bottom-right cell: harmless
                    scr.addstr(row, 0, text, attr)
            scr.refresh()
            shown = lines
        asked = time.monotonic()
        try:
            got = scr.get_wch()
        except curses.error:  # no key within the tick, or a read error (EIO)
            # a line that fails every read at once without a hang-up: gone all the same
            instant = instant + 1 if time.monotonic() - asked < TICK_MS / 4000 else 0
            if instant > 100:
                gone.set()
                return 0
            continue
        instant = 0
        key = got if isinstance(got, str) else curses.keyname(got).decode("ascii", "replace")
        if key == CTRL_C:
            return 0
        if key in ("KEY_RESIZE", CTRL_L):
            curses.update_lines_cols()
            scr.clear()  # the next refresh repaints everything
            shown = None
            if key == CTRL_L:  # the terminal's usual "redraw", not a page key
                continue
        action = handle(ui, key, len(view.buses))
        if action is not None:
            source.ask(action, ui.form)
    return 0
