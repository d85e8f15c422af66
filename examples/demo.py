"""`make demo`: a whole station, end to end, on this one machine, for a bounded time.

Everything goes through the same commands an installer and a centre operator type
(``quantrac centre init``, ``provision init``, ``centre enrol``, ``provision import``,
``centre broker-config``, ``sim station``, ``centre serve``, ``run``, ``sim fault``, ``status``,
``centre query``); there is no shortcut, so the demo also proves those commands fit together.
It only orchestrates processes, so it imports nothing of the centre or the simulator (the
arrows stay one-way).

It is also the first thing a new installer or operator runs, so it teaches: every command is
printed before it runs (``$ quantrac ...``), in the short form one would type from the
directory above ``demo-run/`` (the commands really run there, with those relative paths, so
what is shown is what ran), and every line fits 80 columns, the width of a serial console.
Halfway through, the flowmeter goes silent (``sim fault ... no_answer``) and answers again,
so the records show a fault window with its reason and the recovery after it, not only the
happy path. The fault's times scale with ``--seconds`` and are put on the 10 s window grid,
so a short run (the test's) still shows a whole silent window and a whole good one after it.
It ends with three commands to look further, which work on ``demo-run/`` after it ends.

The simulated wastewater station answers on a pty (Modbus RTU, the pH/temperature/TSS
transmitter and the COD/NH4 controller on one multidrop bus) and on TCP (the nutrient cabinet
and the flowmeter). Windows are 10 s and 60 s instead of 5 min so records reach the centre in
seconds. Every process started is stopped on the way out, also on Ctrl-C or an error.

Other station types: ``--station TYPE`` (or ``DEMO_STATION=TYPE make demo``) runs
``examples/TYPE.toml`` against ``hw_sim/examples/TYPE.toml``, found by name, so a new type
needs only its two files. The example is the installer's config; the demo changes only what a
short run on this machine needs (:func:`demo_config`): the simulator's pty and TCP port for
its buses, 1 s polls, the 10 s and 60 s windows (so the roll-ups, rolling averages and limits
written for the example's own windows are left out), its own state dir and uplink. The
analyser that goes silent is the one the simulator config already schedules a ``no_answer``
fault for (its cable fault), else the first one without a calibration cycle (a calibration
would hide the fault behind "calibrating"); it is named as its device in the station config.
The wastewater demo keeps its own written-out config, the one the tests and docs show.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

STATION_ID = "HCM-DEMO-WW01"
DEMO_PASSWORD = "demo-password"  # the centre dashboard's and the station page's (`web passwd`)
ZONE = "Asia/Ho_Chi_Minh"  # the station's and the centre's: times on a command line are in it
ROOT = Path(__file__).resolve().parent.parent
SIM_CONFIG = ROOT / "hw_sim" / "examples" / "wastewater.toml"
WIDTH = 80  # a serial console, a narrow terminal: nothing the demo prints is wider
WINDOW_S = 10  # the shortest averaging window (agent_config), the grid the fault is put on
GRACE_S = 2.0  # [averaging] grace_s: how long after its end a window closes
# The analyser that goes silent: the flowmeter, alone on its TCP endpoint with the cabinet,
# and without a calibration cycle that could hide its fault behind "calibrating".
FAULT_DEVICE, FAULT_UNIT, FAULT_CHANNEL = "flow", 4, "Flow"
FAULT_ANALYSER = "flowmeter"


class Shell:
    """Runs commands the way the demo shows them: from ``cwd``, with paths relative to it."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def word(self, arg: str | Path) -> str:
        """A path as typed from ``cwd`` (relative below it, else absolute); other text as is."""
        if not isinstance(arg, Path):
            return arg
        rel = os.path.relpath(arg, self.cwd)
        return str(arg) if rel.startswith("..") else rel

    def argv(self, args: Sequence[str | Path]) -> list[str]:
        return [self.word(a) for a in args]

    def show(self, args: Sequence[str | Path], background: bool = False) -> None:
        print("\n".join(command_lines(self.argv(args), "&" if background else "")), flush=True)

    def run(self, *args: str | Path, quiet: bool = False) -> str:
        """Show ``quantrac ARGS``, run it, print its answer (fitted) unless ``quiet``."""
        shown = ["quantrac", *self.argv(args)]
        self.show(shown)
        out = subprocess.run(_quantrac(*shown[1:]), capture_output=True, text=True,
                             cwd=self.cwd, stdin=subprocess.DEVNULL, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{shlex.join(shown)} failed ({out.returncode}):\n"
                               f"{out.stdout}{out.stderr}")
        if not quiet and out.stdout.strip():
            print(fit(out.stdout))
        return out.stdout


def command_lines(words: Sequence[str], suffix: str = "") -> list[str]:
    """``$ quantrac ...`` as one would type it, broken before an option to fit ``WIDTH``.

    An option stays on one line with its value; every line but the last ends in `` \\`` so the
    whole can be pasted into a shell as it is.
    """
    units: list[str] = []
    for w in [shlex.quote(w) for w in words] + ([suffix] if suffix else []):
        if units and units[-1].startswith("--") and " " not in units[-1] and not (
                w.startswith("-") or w == "&"):
            units[-1] += " " + w
        else:
            units.append(w)
    lines: list[str] = []
    line = "$"
    for i, unit in enumerate(units):
        room = WIDTH if i == len(units) - 1 else WIDTH - 2  # the last line needs no " \\"
        if line.strip() in ("$", "") or len(line) + 1 + len(unit) <= room:
            line += " " + unit
        else:
            lines.append(line + " \\")
            line = "    " + unit
    return [*lines, line]


def fit(text: str) -> str:
    """``text`` with every line over ``WIDTH`` wrapped at spaces, the rest indented under it."""
    out: list[str] = []
    for line in text.rstrip("\n").splitlines():
        if len(line) <= WIDTH:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()) + 4)
        out.extend(textwrap.wrap(line, WIDTH, subsequent_indent=indent,
                                 break_on_hyphens=False, drop_whitespace=True))
    return "\n".join(out)


def say(text: str) -> None:
    """A step's heading."""
    print(f"\n== {text}", flush=True)


def note(text: str) -> None:
    """An explanation: indented, wrapped to ``WIDTH``."""
    print(textwrap.fill(text, WIDTH, initial_indent="   ", subsequent_indent="   "),
          flush=True)


def _quantrac(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "edge_agent.daemon.cli", *map(str, args)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Processes:
    """Background processes of the demo, each with its log file; all stopped on exit."""

    def __init__(self, shell: Shell, logs: Path) -> None:
        self.shell = shell
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, argv: Sequence[str | Path],
              stdout: int | None = None) -> subprocess.Popen[bytes]:
        """Show ``argv`` (``quantrac`` or another program) as a background command, start it."""
        shown = self.shell.argv(argv)
        self.shell.show(shown, background=True)
        run = _quantrac(*shown[1:]) if shown[0] == "quantrac" else shown
        path = self.logs / f"{name}.log"
        log = path.open("ab")
        proc = subprocess.Popen(
            run, stdout=stdout if stdout is not None else log, stderr=log,
            stdin=subprocess.DEVNULL, cwd=self.shell.cwd, start_new_session=True,
        )
        self.running.append((name, proc, log))
        print(f"   started {name}: pid {proc.pid}, log {self.shell.word(path)}")
        return proc

    def check(self) -> None:
        for name, proc, _ in self.running:
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop_all(self) -> None:
        for name, proc, log in reversed(self.running):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
            print(f"   stopped {name} (exit {proc.returncode})")
        self.running.clear()


def _wait_for(condition: Callable[[], bool], what: str, timeout: float,
              procs: Processes) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        procs.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def agent_config(pty: str, tcp_port: int) -> str:
    """The station config the installer would write, pointed at the simulated analysers."""
    return f"""\
# Demo wastewater station, written by `make demo`; paths are relative to this file.
[station]
id = "{STATION_ID}"
province = "HCM"
facility = "DemoBrewery"
name = "Outfall1"
timezone = "{ZONE}"

[agent]
state_dir = "station"

[poll]
timeout = 0.5
retries = 1
backoff_max = 10.0

[[bus]]
name = "rs485-1"
port = "{pty}"
baud = 19200
parity = "N"

[[bus]]
name = "cabinet-lan"
host = "127.0.0.1"
tcp_port = {tcp_port}

[[device]]
name = "liquiline"
bus = "rs485-1"
profile = "liquiline"
unit = 1
interval = 1.0
channels = ["pH", "Temp", "TSS"]

[[device]]
name = "hach"
bus = "rs485-1"
profile = "hach_sc"
unit = 2
interval = 1.0
channels = ["COD", "NH4"]

[[device]]
name = "cabinet"
bus = "cabinet-lan"
profile = "wastewater_multi"
unit = 3
interval = 1.0
channels = ["TN", "TP"]

[[device]]
name = "{FAULT_DEVICE}"
bus = "cabinet-lan"
profile = "flowmeter"
unit = {FAULT_UNIT}
interval = 1.0
channels = ["{FAULT_CHANNEL}"]

[averaging]
windows = [{WINDOW_S}, 60]
rule = "coverage_75"
grace_s = {GRACE_S}

[uplink.mqtt]
window = 8
ack_timeout_s = 15.0
"""


STATIONS = ("wastewater", "stackgas", "groundwater", "ambient")
"""The station types ``--station`` / ``$DEMO_STATION`` offers; each but wastewater is the pair
``examples/TYPE.toml`` + ``hw_sim/examples/TYPE.toml``."""


@dataclass(frozen=True)
class Station:
    """What one demo runs: the station config it writes, the simulator, the analyser to fault."""

    kind: str
    station_id: str
    sim_config: Path
    fault_device: str
    fault_unit: int
    fault_channel: str  # the first symbol the faulted device reports: the summary shows it
    fault_analyser: str  # how the demo's text names that device
    config: Callable[[str, int], str]  # the station config, given the pty and the TCP port
    buses: int
    analysers: int


WASTEWATER = Station("wastewater", STATION_ID, SIM_CONFIG, FAULT_DEVICE, FAULT_UNIT,
                     FAULT_CHANNEL, FAULT_ANALYSER, agent_config, 2, 4)


class MissingStation(Exception):
    """A station type whose example or simulator config is not there (yet)."""


def station_for(kind: str) -> Station:
    """The demo of ``kind``: wastewater's own, or one made from the type's two config files."""
    if kind == "wastewater":
        return WASTEWATER
    example = ROOT / "examples" / f"{kind}.toml"
    sim = ROOT / "hw_sim" / "examples" / f"{kind}.toml"
    missing = [str(p.relative_to(ROOT)) for p in (example, sim) if not p.exists()]
    if missing:
        raise MissingStation(
            f"DEMO_STATION={kind}: {' and '.join(missing)} missing; this demo runs the "
            f"example station config against its simulator config, found by name "
            f"(examples/{kind}.toml + hw_sim/examples/{kind}.toml)")
    doc = tomllib.loads(example.read_text(encoding="utf-8"))
    sim_doc = tomllib.loads(sim.read_text(encoding="utf-8"))
    devices: list[dict[str, Any]] = doc.get("device", [])
    by_name = {d.get("name"): d for d in sim_doc.get("device", [])}

    def simulated(d: Mapping[str, Any]) -> Mapping[str, Any]:
        found: Mapping[str, Any] = by_name.get(d["name"], {})
        return found

    silent = [d for d in devices
              if any(f.get("fault") == "no_answer" for f in simulated(d).get("fault", []))]
    calm = [d for d in devices if "calibration" not in simulated(d)]
    pick = (silent or calm or devices)[0]
    return Station(kind, doc["station"]["id"], sim, pick["name"], int(pick["unit"]),
                   reported(pick)[0], f"analyser {pick['name']!r}",
                   lambda pty, port: demo_config(doc, example, pty, port),
                   len(doc.get("bus", [])), len(devices))


def reported(device: Mapping[str, Any]) -> list[str]:
    """The symbols a ``[[device]]`` reports, as the example names them."""
    channels = device.get("channels")
    if isinstance(channels, list):
        return [str(c) for c in channels]
    if isinstance(channels, Mapping):
        return [str(v.get("symbol", k)) for k, v in channels.items()]
    raise MissingStation(f"device {device.get('name')!r}: the demo needs its channels listed "
                         "to know what it reports")


def demo_config(doc: Mapping[str, Any], example: Path, pty: str, tcp_port: int) -> str:
    """``doc`` (an example station config) pointed at the simulator, for a short run.

    Only what a run of a minute or two on this machine needs changes: every serial bus is the
    simulator's pty (19200 baud), every TCP bus its port on loopback (Modbus TCP), devices are
    polled every second into the 10 s and 60 s windows, the state dir and the uplink are the
    demo's. Roll-ups, rolling averages and limits are written for the example's own windows, so
    they are left out; ``[uplink.circular10]`` needs the province's server, so it is too."""
    out: dict[str, Any] = {"station": doc["station"], "agent": {"state_dir": "station"}}
    out["poll"] = {"timeout": 0.5, "retries": 1, "backoff_max": 10.0}
    buses = []
    for bus in doc.get("bus", []):
        if "port" in bus:
            buses.append({"name": bus["name"], "port": pty, "baud": 19200, "parity": "N"})
        else:
            buses.append({"name": bus["name"], "host": "127.0.0.1", "tcp_port": tcp_port})
    out["bus"] = buses
    out["device"] = [{**d, "interval": 1.0} for d in doc.get("device", [])]
    out["averaging"] = {"windows": [WINDOW_S, 60], "rule": "coverage_75", "grace_s": GRACE_S}
    out.update((k, v) for k, v in doc.items() if k not in (*out, "limit", "uplink"))
    out["uplink"] = {"mqtt": {"window": 8, "ack_timeout_s": 15.0}}
    head = (f"# Demo station from {example.parent.name}/{example.name}, written by `make "
            "demo`;\n# paths are relative to this file.\n")
    return head + to_toml(out)


def to_toml(doc: Mapping[str, Any], path: str = "") -> str:
    """``doc`` as TOML text: its keys and values, then its tables and arrays of tables in their
    order (a table holding only tables gets no header of its own)."""
    lines: list[str] = []
    nested: list[tuple[str, Mapping[str, Any], bool]] = []  # (name, table, one of an array)
    for key, value in doc.items():
        name = f"{path}.{_key(key)}" if path else _key(key)
        if isinstance(value, Mapping):
            nested.append((name, value, False))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            nested += [(name, item, True) for item in value]
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    text = "\n".join(lines) + ("\n" if lines else "")
    for name, table, in_array in nested:
        if in_array:
            text += f"\n[[{name}]]\n"
        elif any(not isinstance(v, Mapping | list) or (isinstance(v, list) and not all(
                isinstance(i, Mapping) for i in v)) for v in table.values()):
            text += f"\n[{name}]\n"
        text += to_toml(table, name)
    return text


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


def centre_config(port: int, web_port: int, st: Station) -> str:
    """The centre's config (receiver, dashboard, what is public); paths are relative to the
    file, in ``demo-run/``. The demo station is public with every channel it reports."""
    public = ", ".join(f'"{c}"' for c in public_channels(st))
    return f"""\
# Demo centre receiver, written by `make demo`; paths are relative to this file.
centre_dir = "centre"
store = "centre/records.sqlite"
zone = "{ZONE}"

[broker]
host = "127.0.0.1"
port = {port}
ca = "broker/ca.crt"
cert = "broker/receiver.crt"
key = "broker/receiver.key"
client_id = "demo-centre-1"

[receiver]
group = "demo"

[web]
listen = "127.0.0.1:{web_port}"

[station."{st.station_id}"]
public = true
public_channels = [{public}]
"""


def public_channels(st: Station) -> list[str]:
    """Every symbol the demo station's devices report (its config, built with no ports)."""
    doc = tomllib.loads(st.config("/dev/null", 0))
    try:
        return sorted({c for d in doc.get("device", []) for c in reported(d)})
    except MissingStation:
        return []


def start_web(sh: Shell, procs: Processes, command: list[str], config: Path, port: int,
              what: str) -> None:
    """``<command> passwd`` (the demo password from stdin), then ``<command>`` on ``port``."""
    passwd: list[str | Path] = ["quantrac", *command, "passwd", "--config", config,
                                "--password-stdin"]
    sh.show(passwd)
    out = subprocess.run(_quantrac(*sh.argv(passwd)[1:]), input=DEMO_PASSWORD + "\n",
                         capture_output=True, text=True, cwd=sh.cwd, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} passwd failed:\n{out.stdout}{out.stderr}")
    procs.start(what.replace(" ", "-"), ["quantrac", *command, "--config", config])
    _wait_for(lambda: _accepts(port), f"the {what} to listen", 30, procs)


def start_dashboard(sh: Shell, procs: Processes, work: Path, port: int) -> None:
    """The centre dashboard and the public page: their URLs."""
    start_web(sh, procs, ["centre", "web"], work / "centre.toml", port, "centre dashboard")
    print(f"   dashboard: http://127.0.0.1:{port}/  (password {DEMO_PASSWORD})")
    print(f"   public page: http://127.0.0.1:{port}/public")


def start_station_page(sh: Shell, procs: Processes, config: Path, port: int) -> None:
    """The station's own page: its URL."""
    start_web(sh, procs, ["web"], config, port, "station page")
    print(f"   station page: http://127.0.0.1:{port}/  (password {DEMO_PASSWORD})")


def provision(sh: Shell, work: Path, port: int, station_id: str = STATION_ID) -> None:
    """The offline flow an installer follows, with a USB stick that is just a folder."""
    usb = work / "usb-stick"
    usb.mkdir()
    say("centre: create the centre's keys and CA")
    sh.run("centre", "init", "--dir", work / "centre", "--broker", f"127.0.0.1:{port}")
    fingerprint = sh.run("centre", "fingerprint", "--dir", work / "centre").strip()
    note("The centre operator reads this fingerprint to the installer (phone, letter): it is "
         "how the station knows the bundle it imports really comes from this centre.")
    say(f"installer: provision gateway {station_id} (keys made on the device)")
    sh.run("provision", "init", "--station-id", station_id, "--out", usb / "request.json",
           "--state-dir", work / "station")
    say("centre: enrol the station from the request on the stick")
    sh.run("centre", "enrol", usb / "request.json", "--out", usb / "bundle.json",
           "--dir", work / "centre")
    say("installer: import the signed bundle, checked against the fingerprint")
    sh.run("provision", "import", usb / "bundle.json", "--centre-fingerprint", fingerprint,
           "--state-dir", work / "station", "--yes")
    sh.run("provision", "show", "--state-dir", work / "station")


def start_simulator(sh: Shell, procs: Processes, work: Path,
                    sim_config: Path = SIM_CONFIG) -> tuple[str, int]:
    say("simulated analysers: Modbus RTU on a pty and Modbus TCP on loopback")
    sim = procs.start("simulator", [
        "quantrac", "sim", "station", "--config", sim_config, "--pty", "--tcp-port", "0",
        "--baud", "19200", "--control", work / "sim.sock",
    ], stdout=subprocess.PIPE)
    assert sim.stdout is not None
    line = sim.stdout.readline().decode()
    if not line:
        procs.check()
        raise RuntimeError("the simulator printed nothing")
    info = json.loads(line)
    (work / "sim-endpoints.json").write_text(line)
    print(f"   RTU bus on {info['pty']}, Modbus TCP on 127.0.0.1:{info['tcp_port']}")
    return str(info["pty"]), int(info["tcp_port"])


class Schedule:
    """When the flowmeter goes silent and answers again, in ``time.time()`` seconds.

    Windows are aligned to the wall clock, so the fault starts just after a window boundary
    and lasts whole windows: at least one window then has no valid sample at all (``offline``),
    the 60 s window around it fails on coverage, and the run goes on long enough after it for a
    whole window of good samples to close (the recovery), whatever ``--seconds`` asks.
    """

    def __init__(self, start: float, seconds: float) -> None:
        # not before the agent has polled for a while: its first window is short anyway
        lead = max(0.25 * seconds, WINDOW_S)
        self.fault_on = math.ceil((start + lead) / WINDOW_S) * WINDOW_S + 0.5
        self.fault_off = self.fault_on + WINDOW_S * max(1, round(0.25 * seconds / WINDOW_S))
        # the agent probes a silent device about once a second: back within ~2 s, then the
        # next whole window, its grace, and a little for the records to reach the centre
        earliest_end = self.fault_off + 2 * WINDOW_S + GRACE_S + 2
        self.end = max(start + seconds, earliest_end)
        self.status_at = self.fault_on + 4  # long enough for the first timeouts to show


def run_station(sh: Shell, procs: Processes, config: Path, work: Path,
                seconds: float, st: Station = WASTEWATER) -> Schedule:
    """Run the agent for ``seconds`` (or longer: :class:`Schedule`) with the fault."""
    start = time.time()
    plan = Schedule(start, seconds)
    say(f"running for {plan.end - start:.0f} s; the {st.fault_analyser} goes silent at "
        f"+{plan.fault_on - start:.0f} s for {plan.fault_off - plan.fault_on:.0f} s")
    def fault(state: str) -> Callable[[], None]:
        def act() -> None:
            print()
            sh.run("sim", "fault", "--control", work / "sim.sock", "--unit", str(st.fault_unit),
                   "--fault", "no_answer", state)
            if state == "on":
                note(f"The {st.fault_analyser} (unit {st.fault_unit}) stops answering: the agent "
                     "times out, records its samples as offline, and keeps probing it.")
            else:
                note("It answers again; the agent's next probe finds it within about a "
                     "second.")
        return act

    def status() -> None:
        print()
        text = sh.run("status", "--config", config)
        line = next((x for x in text.splitlines() if x.startswith("clock")), "")
        explain_clock(None if "unknown" in line else "NOT synchronised" not in line)

    steps: list[tuple[float, Callable[[], None]]] = [
        (plan.fault_on, fault("on")), (plan.status_at, status), (plan.fault_off, fault("off"))]
    while time.time() < plan.end:
        procs.check()
        if steps and time.time() >= steps[0][0]:
            steps.pop(0)[1]()
            continue
        time.sleep(min(0.2, max(0.0, (steps[0][0] if steps else plan.end) - time.time())))
    return plan


def explain_clock(synchronised: bool | None) -> None:
    """Why the records carry ``clock_unsynced`` here: the agent asks the kernel (adjtimex,
    ``edge_agent.daemon.clock_sync``), and a container or a laptop without NTP says no."""
    if synchronised is None:
        note("clock unknown: the agent could not ask this kernel whether its clock is "
             "NTP-synchronised, so records are flagged clock_unsynced. A real station runs "
             "chrony or systemd-timesyncd on Linux, which the agent can ask.")
    elif synchronised:
        note("clock: the kernel reports this machine's clock NTP-synchronised, so no record "
             "is flagged clock_unsynced; a station without chrony or systemd-timesyncd "
             "would flag every record.")
    else:
        note("clock NOT synchronised: this machine's kernel does not report its clock as "
             "NTP-synchronised (`timedatectl`: System clock synchronized: no), so every "
             "record is flagged clock_unsynced: its time is not evidence. A real station "
             "runs chrony or systemd-timesyncd and is synced minutes after boot.")


def look_further(sh: Shell, work: Path, st: Station = WASTEWATER) -> None:
    say("to look further (from this directory, after the demo)")
    commands: list[list[str | Path]] = [
        ["history", "--config", work / "station.toml", "--channel", st.fault_channel],
        ["centre", "query", "--config", work / "centre.toml", "--station", st.station_id,
         "--invalid", "--wide"],
        ["centre", "stations", "--config", work / "centre.toml"],
    ]
    for args in commands:
        sh.show(["quantrac", *sh.argv(args)])
    centre_toml = sh.word(work / "centre.toml")
    note(f"the station's own records of {st.fault_channel}; every invalid window at the centre "
         "with its counts and flags; per station: records held, seq gaps, security events. "
         f"The dashboard again on the stored records: `quantrac centre web --config "
         f"{centre_toml}` (password {DEMO_PASSWORD}; `quantrac web --config` the same for "
         f"the station's own page). Logs: {sh.word(work / 'logs')}/.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("DEMO_SECONDS", "90")),
                        help="how long the station runs (default 90, or $DEMO_SECONDS; "
                             "longer if a fault and its recovery need it)")
    parser.add_argument("--work", type=Path, default=ROOT / "demo-run",
                        help="working directory, wiped at the start (default ./demo-run); "
                             "commands run from its parent")
    parser.add_argument("--station", choices=STATIONS,
                        default=os.environ.get("DEMO_STATION") or "wastewater",
                        help="the station type (default wastewater, or $DEMO_STATION)")
    args = parser.parse_args(argv)
    try:
        st = station_for(args.station)
    except MissingStation as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    work: Path = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "logs").mkdir()
    sh = Shell(work.parent)
    procs = Processes(sh, work / "logs")
    port = _free_port()
    note(f"Everything runs from {sh.cwd}; files and logs go to {sh.word(work)}/.")
    try:
        provision(sh, work, port, st.station_id)

        say("broker: Mosquitto with TLS client certificates and a per-station ACL")
        sh.run("centre", "broker-config", "--dir", work / "centre", "--out-dir",
               work / "broker", "--listen", f"127.0.0.1:{port}")
        procs.start("mosquitto", ["mosquitto", "-c", work / "broker" / "mosquitto.conf"])
        _wait_for(lambda: _accepts(port), "Mosquitto to listen", 15, procs)

        say("centre: receiver (verify, de-duplicate, store, acknowledge)")
        web_port = _free_port()
        (work / "centre.toml").write_text(centre_config(port, web_port, st))
        print(f"   wrote {sh.word(work / 'centre.toml')}: broker, store, time zone, "
              "dashboard")
        procs.start("centre", ["quantrac", "centre", "serve", "--config", work / "centre.toml"])
        say("centre: dashboard (login) and public open-data page, while the demo runs")
        start_dashboard(sh, procs, work, web_port)

        pty, tcp_port = start_simulator(sh, procs, work, st.sim_config)

        say("station: the edge agent (poll -> average -> outbox -> sealed MQTT packets)")
        config = work / "station.toml"
        page_port = _free_port()
        config.write_text(st.config(pty, tcp_port) + f'\n[web]\nlisten = "127.0.0.1:{page_port}"\n')
        print(f"   wrote {sh.word(config)}: {st.buses} buses, {st.analysers} analysers, "
              f"{WINDOW_S} s and 60 s windows")
        sh.run("config", "check", config)
        procs.start("agent", ["quantrac", "run", "--config", config])
        say("station: its own page (login), while the demo runs")
        start_station_page(sh, procs, config, page_port)

        plan = run_station(sh, procs, config, work, args.seconds, st)
        say("stopping everything (the agent first: SIGTERM closes partial windows)")
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        procs.stop_all()

    try:
        say(f"what the centre stored and verified of the {st.fault_analyser}")
        sh.run("centre", "query", "--config", work / "centre.toml", "--station", st.station_id,
               "--channel", st.fault_channel)
        note("A window is valid when at least 75% of its expected samples are (rule "
             "coverage_75). offline: the analyser was silent (nearly) all the window; "
             "coverage n/m < 75%: too few valid samples (the first windows after the agent "
             "starts count what it missed); partial: the agent stopped mid-window. --wide "
             "adds the counts, status and flags.")
        say(f"every channel in the minute the {st.fault_analyser} went silent")
        minute = dt.datetime.fromtimestamp(plan.fault_on, ZoneInfo(ZONE)).replace(
            second=0, microsecond=0)
        sh.run("centre", "query", "--config", work / "centre.toml", "--station", st.station_id,
               "--window", "1m", "--from", f"{minute:%Y-%m-%dT%H:%M}",
               "--to", f"{minute + dt.timedelta(minutes=1):%Y-%m-%dT%H:%M}")
        note("A silent analyser costs only its own channels' windows; the others keep "
             "theirs (unless they were calibrating, or the agent started or stopped in that "
             "minute).")
        look_further(sh, work, st)
    except RuntimeError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
