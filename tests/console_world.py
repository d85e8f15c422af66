"""A station for the console tests: simulated analysers on an RS-485 pty, the agent running
on them, and a tmux terminal to run ``quantrac console`` in and read its screen.

The simulator (in this process, ``hw_sim.running_station``) has a control socket of its own, so
the tests inject faults the technician's way, with ``quantrac sim fault --control``. Its
units: a liquiline at 1, a Hach at 2, a flowmeter at 5, and a spare Hach at 12 that starts
silent: "the Hach was given address 12" is then two faults away (unit 2 silent, unit 12
answering). No uplink and no enrolment: the agent runs its polling, status and control socket,
which is all the console talks to.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from buffer import OUTBOX_NAME, Store
from hw_sim import RunningStation, running_station
from hw_sim.config import parse_station
from protocol.model import Record, Status
from tests.mqtt_world import wait_for

TMUX = "tmux"

SIM = {
    "name": "console-test",
    "device": [
        {"name": "liquiline", "profile": "liquiline", "unit": 1, "transports": ["rtu"],
         "seed": 21},
        {"name": "hach", "profile": "hach_sc", "unit": 2, "transports": ["rtu"], "seed": 22},
        {"name": "flow", "profile": "flowmeter", "unit": 5, "transports": ["rtu"], "seed": 23},
        {"name": "spare-hach", "profile": "hach_sc", "unit": 12, "transports": ["rtu"],
         "seed": 22},
    ],
}


def station_config(state_dir: Path, pty: str) -> str:
    return f"""\
[station]
id = "HCM-CON-01"
province = "HCM"
facility = "Console test"
name = "Outfall1"
[agent]
state_dir = "{state_dir}"
sample_flush_s = 1.0
[poll]
timeout = 0.3
retries = 0
backoff_max = 1.0
[[bus]]
name = "rs485"
port = "{pty}"
baud = 19200
[[device]]
name = "liquiline"
bus = "rs485"
profile = "liquiline"
unit = 1
interval = 1.0
channels = ["pH", "Temp", "TSS"]
[[device]]
name = "hach"
bus = "rs485"
profile = "hach_sc"
unit = 2
interval = 1.0
channels = ["COD", "NH4"]
[[device]]
name = "flow"
bus = "rs485"
profile = "flowmeter"
unit = 5
interval = 1.0
channels = ["Flow"]
[averaging]
windows = [3600]  # no window closes during a test: the agent never stops to average
grace_s = 1.0
"""


def many_sim(devices: int) -> dict[str, object]:
    """A bigger station for the repaint benchmark: ``devices`` liquilines at units 1..N, three
    channels each."""
    return {"name": "console-many", "device": [
        {"name": f"ll{u}", "profile": "liquiline", "unit": u, "transports": ["rtu"],
         "seed": 30 + u} for u in range(1, devices + 1)]}


def many_config(state_dir: Path, pty: str, devices: int) -> str:
    """The config of :func:`many_sim`'s station: each liquiline's channels under symbols of
    their own (``pH_3``: a second measuring point's tag), 3 x ``devices`` channels."""
    text = station_config(state_dir, pty).split("[[device]]")[0]
    for u in range(1, devices + 1):
        text += (f'[[device]]\nname = "ll{u}"\nbus = "rs485"\nprofile = "liquiline"\n'
                 f"unit = {u}\ninterval = 1.0\n")
        text += "".join(f'[device.channels.{ch}]\nsymbol = "{ch}_{u}"\n'
                        for ch in ("pH", "Temp", "TSS"))
    return text + "[averaging]\nwindows = [3600]\ngrace_s = 1.0\n"


def many_channels(devices: int) -> dict[str, str]:
    """:func:`many_config`'s channels and units, for :func:`seed_outbox`."""
    return {f"{ch}_{u}": unit for u in range(1, devices + 1)
            for ch, unit in (("pH", "pH"), ("Temp", "C"), ("TSS", "mg/L"))}


#: the channels the config polls, with a unit each (for records seeded in the outbox)
CHANNELS = {"pH": "pH", "Temp": "C", "TSS": "mg/L", "COD": "mg/L", "NH4": "mg/L",
            "Flow": "m3/h"}
SEEDED_WINDOW = 300


def seed_outbox(state_dir: Path, now: float, channels: dict[str, str] = CHANNELS) -> int:
    """The last hour's 5-minute records of every channel in the outbox, as an agent that ran
    before this one stored them (through ``buffer.Store``, the agent's own writer): the
    history a console started now has not seen. Each channel rises through the hour. The
    number of windows a channel."""
    last = int(now // SEEDED_WINDOW) * SEEDED_WINDOW  # the window still open starts here
    starts = range(last - 3600 + SEEDED_WINDOW, last, SEEDED_WINDOW)
    state_dir.mkdir(parents=True, exist_ok=True)
    with Store(state_dir / OUTBOX_NAME) as store:
        store.append([Record(ch, t, t + SEEDED_WINDOW, mean=1.0 + i + math.sin(i), min=0.0,
                             max=20.0, std=0.1, n_valid=300, n_expected=300, valid=True,
                             status=Status.MEASURING, unit=unit)
                      for i, t in enumerate(starts) for ch, unit in channels.items()])
    return len(starts)


def quantrac(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_agent.daemon.cli", *args]


@dataclass
class ConsoleWorld:
    root: Path
    sim: RunningStation
    config: Path
    state_dir: Path
    control: Path
    agent: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.state_dir / "control.sock"

    @property
    def agent_log(self) -> Path:
        return self.root / "agent.log"

    def start_agent(self) -> None:
        with self.agent_log.open("ab") as log:
            self.agent = subprocess.Popen(quantrac("run", "--config", str(self.config)),
                                          stdout=log, stderr=subprocess.STDOUT,
                                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_for(self.socket.exists, 30, f"the agent's socket\n{self.agent_log.read_text()}")

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait(10)
        self.agent = None

    def fault(self, unit: int, fault: str, state: str) -> None:
        """The technician's way: ``quantrac sim fault`` against the simulator's socket."""
        subprocess.run(quantrac("sim", "fault", "--control", str(self.control), "--unit",
                                str(unit), "--fault", fault, state),
                       check=True, capture_output=True, timeout=30)


@contextmanager
def console_world(root: Path, devices: int = 0) -> Iterator[ConsoleWorld]:
    """The test station; with ``devices``, :func:`many_sim`'s instead."""
    control = root / "sim.sock"
    with running_station(parse_station(many_sim(devices) if devices else SIM, "console-test"),
                         tcp_port=None, pty=True, baud=19200, control=control) as sim:
        assert sim.pty_path is not None
        state = root / "state"
        config = root / "station.toml"
        if devices:
            config.write_text(many_config(state, sim.pty_path, devices))
        else:
            sim.set_fault(12, "no_answer", True)  # the spare starts silent
            config.write_text(station_config(state, sim.pty_path))
        world = ConsoleWorld(root, sim, config, state, control)
        try:
            yield world
        finally:
            world.stop_agent()


class Tmux:
    """One tmux server of our own (``-S`` socket in a temp dir) and one window in it."""

    def __init__(self, root: Path, width: int = 80, height: int = 24) -> None:
        self.sock = str(root / "tmux.sock")
        self.width, self.height = width, height

    def tmux(self, *args: str) -> str:
        done = subprocess.run([TMUX, "-S", self.sock, *args], capture_output=True, timeout=20,
                              check=True)
        return done.stdout.decode("utf-8", "replace")

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={_quote(v)}" for k, v in env.items())
        # after the program: its exit code, and whether the terminal is cooked again
        command = (f"env {exports} {' '.join(_quote(a) for a in argv)}; echo EXITED $?; "
                   "stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon; sleep 600")
        self.tmux("-f", "/dev/null", "new-session", "-d", "-x", str(self.width), "-y",
                  str(self.height), command)
        self.tmux("set-option", "-g", "remain-on-exit", "on")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-x", str(width), "-y", str(height))
        self.width, self.height = width, height

    def wait(self, cond: Callable[[str], bool], timeout: float, what: str) -> str:
        """The screen once ``cond(screen)`` holds; fails with the last screen after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if cond(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"{what}: not on the screen within {timeout} s:\n{text}")

    def kill(self) -> None:
        subprocess.run([TMUX, "-S", self.sock, "kill-server"], capture_output=True, timeout=20,
                       check=False)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def has(*words: str) -> Callable[[str], bool]:
    return lambda text: all(w in text for w in words)

