"""`make demo`: a whole station, end to end, on this one machine, for a bounded time.

Everything goes through the same commands an installer and a centre operator type
(``quantrac centre init``, ``provision init``, ``centre enrol``, ``provision import``,
``centre broker-config``, ``sim station``, ``centre serve``, ``run``, ``centre query``); there
is no shortcut, so the demo also proves those commands fit together. It only orchestrates
processes, so it imports nothing of the centre or the simulator (the arrows stay one-way).

The simulated wastewater station answers on a pty (Modbus RTU, the pH/temperature/TSS
transmitter and the COD/NH4 controller on one multidrop bus) and on TCP (the nutrient cabinet
and the flowmeter). Windows are 10 s and 60 s instead of 5 min so records reach the centre in
seconds. Every process started is stopped on the way out, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

STATION_ID = "HCM-DEMO-WW01"
ROOT = Path(__file__).resolve().parent.parent
SIM_CONFIG = ROOT / "hw_sim" / "examples" / "wastewater.toml"


def _quantrac(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "edge_agent.daemon.cli", *map(str, args)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


class Processes:
    """Background processes of the demo, each with its log file; all stopped on exit."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, argv: Sequence[str | Path],
              stdout: int | None = None) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(a) for a in argv], stdout=stdout if stdout is not None else log, stderr=log,
            cwd=ROOT, start_new_session=True,
        )
        self.running.append((name, proc, log))
        print(f"   started {name} (pid {proc.pid}, log {self.logs / (name + '.log')})")
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


def _run(argv: Sequence[str | Path], what: str) -> str:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return out.stdout


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


def agent_config(work: Path, pty: str, tcp_port: int) -> str:
    """The station config the installer would write, pointed at the simulated analysers."""
    return f"""\
# Demo wastewater station: written by `make demo` ({work}).
[station]
id = "{STATION_ID}"
province = "HCM"
facility = "DemoBrewery"
name = "Outfall1"
timezone = "Asia/Ho_Chi_Minh"

[agent]
state_dir = "{work / 'station'}"

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
name = "flow"
bus = "cabinet-lan"
profile = "flowmeter"
unit = 4
interval = 1.0
channels = ["Flow"]

[averaging]
windows = [10, 60]
rule = "coverage_75"
grace_s = 2.0

[uplink.mqtt]
window = 8
ack_timeout_s = 15.0
"""


def centre_config(work: Path, port: int) -> str:
    broker = work / "broker"
    return f"""\
# Demo centre receiver: written by `make demo`.
centre_dir = "{work / 'centre'}"
store = "{work / 'centre' / 'records.sqlite'}"
zone = "Asia/Ho_Chi_Minh"

[broker]
host = "127.0.0.1"
port = {port}
ca = "{broker / 'ca.crt'}"
cert = "{broker / 'receiver.crt'}"
key = "{broker / 'receiver.key'}"
client_id = "demo-centre-1"

[receiver]
group = "demo"
"""


def provision(work: Path, port: int) -> None:
    """The offline flow an installer follows, with a USB stick that is just a folder."""
    usb = work / "usb-stick"
    usb.mkdir()
    _say("centre: create the centre's keys and CA")
    _run(_quantrac("centre", "init", "--dir", work / "centre", "--broker", f"127.0.0.1:{port}"),
         "centre init")
    fingerprint = _run(_quantrac("centre", "fingerprint", "--dir", work / "centre"),
                       "centre fingerprint").strip()
    print(f"   centre fingerprint (read aloud to the installer): {fingerprint}")
    _say(f"installer: provision gateway {STATION_ID} (keys generated on the device)")
    _run(_quantrac("provision", "init", "--station-id", STATION_ID, "--out",
                   usb / "request.json", "--state-dir", work / "station"), "provision init")
    _say("centre: enrol the station from the request on the stick")
    _run(_quantrac("centre", "enrol", usb / "request.json", "--out", usb / "bundle.json",
                   "--dir", work / "centre"), "centre enrol")
    _say("installer: import the signed bundle, checked against the fingerprint")
    _run(_quantrac("provision", "import", usb / "bundle.json", "--centre-fingerprint",
                   fingerprint, "--state-dir", work / "station", "--yes"), "provision import")
    print(_run(_quantrac("provision", "show", "--state-dir", work / "station"),
               "provision show").rstrip())


def start_simulator(procs: Processes, work: Path) -> tuple[str, int]:
    _say("simulated analysers: Modbus RTU on a pty and Modbus TCP on loopback")
    endpoints = work / "sim-endpoints.json"
    sim = procs.start("simulator", _quantrac(
        "sim", "station", "--config", SIM_CONFIG, "--pty", "--tcp-port", "0", "--baud", "19200",
        "--control", work / "sim-control.sock",
    ), stdout=subprocess.PIPE)
    assert sim.stdout is not None
    line = sim.stdout.readline().decode()
    if not line:
        procs.check()
        raise RuntimeError("the simulator printed nothing")
    info = json.loads(line)
    endpoints.write_text(line)
    print(f"   RTU bus on {info['pty']}, Modbus TCP on 127.0.0.1:{info['tcp_port']}")
    return str(info["pty"]), int(info["tcp_port"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("DEMO_SECONDS", "75")),
                        help="how long the station runs (default 75, or $DEMO_SECONDS)")
    parser.add_argument("--work", type=Path, default=ROOT / "demo-run",
                        help="working directory, wiped at the start (default ./demo-run)")
    args = parser.parse_args(argv)
    work: Path = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "logs").mkdir()
    procs = Processes(work / "logs")
    port = _free_port()
    try:
        provision(work, port)

        _say("broker: Mosquitto with TLS client certificates and a per-station ACL")
        _run(_quantrac("centre", "broker-config", "--dir", work / "centre", "--out-dir",
                       work / "broker", "--listen", f"127.0.0.1:{port}"), "broker-config")
        procs.start("mosquitto", ["mosquitto", "-c", work / "broker" / "mosquitto.conf"])
        _wait_for(lambda: _accepts(port), "Mosquitto to listen", 15, procs)

        _say("centre: receiver (verify, de-duplicate, store, acknowledge)")
        (work / "centre.toml").write_text(centre_config(work, port))
        procs.start("centre", _quantrac("centre", "serve", "--config", work / "centre.toml"))

        pty, tcp_port = start_simulator(procs, work)

        _say("station: the edge agent (poll -> average -> outbox -> sealed MQTT packets)")
        config = work / "station.toml"
        config.write_text(agent_config(work, pty, tcp_port))
        print(_run(_quantrac("config", "check", config), "config check").rstrip())
        procs.start("agent", _quantrac("run", "--config", config))

        _say(f"running for {args.seconds:.0f} s")
        deadline = time.monotonic() + args.seconds
        next_status = time.monotonic() + 20
        while time.monotonic() < deadline:
            procs.check()
            time.sleep(1)
            if time.monotonic() >= next_status:
                next_status += 30
                status = subprocess.run(
                    _quantrac("status", "--config", config), capture_output=True, text=True,
                    cwd=ROOT, timeout=30,
                )
                print(status.stdout.rstrip() or status.stderr.rstrip())

        _say("stopping everything (the agent first: SIGTERM closes partial windows)")
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        procs.stop_all()

    _say("the centre: stations, gaps and security events")
    print(_run(_quantrac("centre", "stations", "--config", work / "centre.toml"),
               "centre stations").rstrip())
    _say(f"what the centre stored and verified for {STATION_ID}")
    table = _run(_quantrac("centre", "query", "--config", work / "centre.toml", "--station",
                           STATION_ID), "centre query")
    print(table.rstrip())
    print(f"\nlogs: {work / 'logs'}   centre store: {work / 'centre' / 'records.sqlite'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
