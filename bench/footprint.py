"""The agent's footprint: RSS and CPU% over 2 minutes with 30 channels polled at 1 Hz from the
simulator, and the time from start to the first poll (warm numba cache).

    .venv/bin/python bench/footprint.py [--seconds 120]

The simulator (``quantrac sim station``: Modbus TCP, and RTU on a socat pty at 19200 baud) and
the agent (``quantrac run``, no uplink) are separate processes; only the agent is measured,
from /proc. A first agent run warms the numba cache in the state dir, as on a station after its
first boot. Baselines measured in the same run: an idle interpreter that imported the same
modules (RSS), and the simulator serving the same polls (CPU).

Targets (issue 7): under 2 % of one core, RSS under 200 MB, first poll under 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUANTRAC = [sys.executable, "-m", "edge_agent.daemon.cli"]
TICK = os.sysconf("SC_CLK_TCK")

# unit, profile, transport, channels (profile name -> reported symbol): 30 channels in all
DEVICES = [
    (1, "cems", "tcp", {"SO2": "SO2", "NOx": "NOx", "CO": "CO", "O2": "O2", "PM": "PM",
                        "Temp": "Temp", "P": "P", "Flow": "Flow"}),
    (2, "wastewater_multi", "tcp", {"COD": "COD", "TSS": "TSS", "NH4": "NH4", "TN": "TN",
                                    "TP": "TP"}),
    (3, "liquiline", "rtu", {"pH": "pH", "Temp": "Temp_2", "TSS": "TSS_2"}),
    (4, "hach_sc", "rtu", {"COD": "COD_2", "NH4": "NH4_2", "Temp": "Temp_3"}),
    (5, "flowmeter", "tcp", {"Flow": "Flow_2", "FlowTotal": "Flow_total"}),
    (6, "ph_probe", "rtu", {"pH": "pH_2", "Temp": "Temp_4"}),
    (7, "cems", "tcp", {"SO2": "SO2_2", "NOx": "NOx_2", "CO": "CO_2", "O2": "O2_2",
                        "PM": "PM_2", "Temp": "Temp_5", "P": "P_2"}),
]


def sim_config() -> str:
    return "name = \"footprint\"\n" + "".join(
        f'[[device]]\nname = "d{u}"\nprofile = "{p}"\nunit = {u}\ntransports = ["{tr}"]\n'
        f"seed = {u}\n" for u, p, tr, _ in DEVICES)


def agent_config(state: Path, pty: str, tcp_port: int) -> str:
    out = [f'[station]\nid = "BENCH-01"\n[agent]\nstate_dir = "{state}"\n'
           f'[[bus]]\nname = "rtu"\nport = "{pty}"\nbaud = 19200\n'
           f'[[bus]]\nname = "lan"\nhost = "127.0.0.1"\ntcp_port = {tcp_port}\n']
    for unit, profile, tr, chans in DEVICES:
        out.append(f'[[device]]\nname = "d{unit}"\nbus = "{"rtu" if tr == "rtu" else "lan"}"\n'
                   f'profile = "{profile}"\nunit = {unit}\ninterval = 1.0\n')
        for name, symbol in chans.items():
            out.append(f'[device.channels.{name}]\nsymbol = "{symbol}"\n')
    out.append("[averaging]\nwindows = [60, 300]\n[[averaging.rollup]]\nwidth = 3600\n"
               "from = 300\n")
    return "".join(out)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_log(path: Path, needle: str, timeout: float, since: float | None = None) -> float:
    """Seconds from ``since`` (default: now) until ``needle`` is in the log."""
    start = time.monotonic() if since is None else since
    while needle not in path.read_text(errors="replace"):
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"no {needle!r} in {path} after {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - start


def start_agent(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    with log.open("wb") as f:
        t0 = time.monotonic()
        proc = subprocess.Popen([*QUANTRAC, "run", "--config", str(config)], stdout=f,
                                stderr=subprocess.STDOUT, env={**os.environ,
                                                               "PYTHONUNBUFFERED": "1"})
    return proc, t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quantrac-footprint-") as tmp:
        work = Path(tmp)
        (work / "sim.toml").write_text(sim_config())
        sim = subprocess.Popen([*QUANTRAC, "sim", "station", "--config", str(work / "sim.toml"),
                                "--pty", "--tcp-port", "0", "--baud", "19200"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert sim.stdout is not None
            ends = json.loads(sim.stdout.readline())
            config = work / "station.toml"
            config.write_text(agent_config(work / "state", ends["pty"], ends["tcp_port"]))
            # 1. warm-up run: compiles the numba kernels into the state dir's cache
            warm, _ = start_agent(config, work / "warm.log")
            wait_log(work / "warm.log", "event=agent_ready", 60)
            from edge_agent.averaging import configure_cache

            configure_cache(work / "state")
            from edge_agent.averaging import aggregate

            aggregate([0.0], [1.0], [0], width_s=60, period_s=1.0)  # same cache, same kernels
            warm.send_signal(signal.SIGTERM)
            warm.wait(30)
            # 2. the measured run
            agent, t0 = start_agent(config, work / "agent.log")
            first_poll = wait_log(work / "agent.log", "event=agent_ready", 60, since=t0)
            time.sleep(5)  # settle (first window, imports) before measuring the steady state
            c0, s0, w0 = cpu_ticks(agent.pid), cpu_ticks(sim.pid), time.monotonic()
            peak = 0.0
            while time.monotonic() - w0 < args.seconds:
                peak = max(peak, rss_mb(agent.pid))
                time.sleep(1)
            c1, s1, w1 = cpu_ticks(agent.pid), cpu_ticks(sim.pid), time.monotonic()
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
            log = (work / "agent.log").read_text()
            # baseline: an interpreter that imported what the agent imports, doing nothing
            idle = subprocess.Popen([sys.executable, "-c",
                                     "import edge_agent.daemon.agent, "
                                     "edge_agent.averaging.kernels, "
                                     "edge_agent.uplinks.mqtt.uplink, time; print(1, flush=True); "
                                     "time.sleep(60)"],
                                    stdout=subprocess.PIPE, text=True,
                                    env={**os.environ,
                                         "NUMBA_CACHE_DIR": str(work / "state/numba-cache")})
            assert idle.stdout is not None
            idle.stdout.readline()
            base_rss = rss_mb(idle.pid)
            idle.kill()
            idle.wait()
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.wait(30)
    wall = w1 - w0
    cpu = 100.0 * (c1 - c0) / TICK / wall
    sim_cpu = 100.0 * (s1 - s0) / TICK / wall
    polls = log.count("event=poll_failed")
    print(f"footprint: 30 channels, 7 devices (3 on RTU 19200 baud pty, 4 over TCP), "
          f"1 Hz, {wall:.0f} s")
    print(f"  CPU           {cpu:6.2f} % of one core   target < 2 %     "
          f"{'ok' if cpu < 2 else 'MISSED'}   (simulator serving it: {sim_cpu:.2f} %, "
          f"ratio {cpu / sim_cpu if sim_cpu else float('nan'):.2f})")
    print(f"  RSS peak      {peak:6.1f} MB              target < 200 MB  "
          f"{'ok' if peak < 200 else 'MISSED'}   (idle interpreter with the same imports: "
          f"{base_rss:.1f} MB, ratio {peak / base_rss:.2f})")
    print(f"  first poll    {first_poll:6.2f} s (start -> every device polled once, warm cache)"
          f"   target < 3 s  {'ok' if first_poll < 3 else 'MISSED'}")
    if polls:
        print(f"  note: {polls} poll_failed lines in the agent log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
