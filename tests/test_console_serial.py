"""``quantrac console`` over a real serial pair, as a technician's laptop meets it: the console
on one end of a socat pty pair (stdin and stdout on the pty; TERM=vt100 at 9600 baud, and
TERM=linux, which has colour, at 115200), picocom (a terminal client no one here wrote) on the
other end inside an 80x24 tmux, keystrokes typed into picocom, the screen read from tmux.
Then the cable is pulled (socat killed: the console's end hangs up) and the console must end
by itself, exit 0, print no traceback.

No agent and no analyser behind it (the config's port does not exist): what is tested here
is the line, the terminal and the way out; the agent-backed screens are
tests/test_console_screen.py's.
"""

from __future__ import annotations

import os
import subprocess
import termios
from pathlib import Path

import pytest

from tests.console_world import Tmux, has, quantrac
from tests.mqtt_world import wait_for

SOCAT = "socat"
PICOCOM = "picocom"
SPEEDS = {9600: termios.B9600, 115200: termios.B115200}

CONFIG = """\
[agent]
state_dir = "{state}"
[[bus]]
name = "rs485"
port = "{root}/no-such-port"
[[device]]
name = "hach"
bus = "rs485"
profile = "hach_sc"
unit = 2
"""


@pytest.mark.parametrize(("baud", "term_type"), [(9600, "vt100"), (115200, "linux")])
def test_console_through_picocom(tmp_path: Path, baud: int, term_type: str) -> None:
    config = tmp_path / "station.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state", root=tmp_path))
    ours, theirs = tmp_path / "console-end", tmp_path / "laptop-end"
    socat = subprocess.Popen([SOCAT, f"pty,raw,echo=0,link={ours}",
                              f"pty,raw,echo=0,link={theirs}"], stderr=subprocess.DEVNULL)
    term = Tmux(tmp_path)
    console: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: ours.exists() and theirs.exists(), 10, "the socat pty pair")
        fd = os.open(ours, os.O_RDWR | os.O_NOCTTY)
        attrs = termios.tcgetattr(fd)
        attrs[4] = attrs[5] = SPEEDS[baud]  # the console's end of the line at this speed
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        console = subprocess.Popen(quantrac("console", "--config", str(config)), stdin=fd,
                                   stdout=fd, stderr=subprocess.PIPE,
                                   env={**os.environ, "TERM": term_type},
                                   start_new_session=True)
        os.close(fd)
        term.start([PICOCOM, "-b", str(baud), "--quiet", str(theirs)], {"TERM": "vt100"})
        term.keys("C-l")  # picocom came up after the first paint: ask for a full one
        text = term.wait(has("quantrac console", "[overview]", "agent not running"), 30,
                         "the console through picocom")
        assert "Traceback" not in text
        term.keys("v")
        text = term.wait(has("[values]", "COD"), 15, "the values page")
        term.keys("x")
        term.wait(has("key x does nothing"), 15, "the hint")
        term.keys("?")
        text = term.wait(has("[help]", "q: quit"), 15, "the help page")
        assert all(len(line) <= 80 for line in text.split("\n"))
        assert console.poll() is None
        socat.kill()  # the cable is pulled: the console's pty hangs up
        socat.wait(10)
        code = console.wait(20)
        assert console.stderr is not None
        err = console.stderr.read().decode("utf-8", "replace")
        assert code == 0 and "Traceback" not in err and "error" not in err, err
    finally:
        term.kill()
        for proc in (console, socat):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
