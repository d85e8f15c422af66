"""Poller throughput and RTU timing against the simulator, in one run (`make bench`).

1. TCP loopback: transactions/s of our poller (threaded bus worker, decoding every poll) vs a
   bare pymodbus loop (``ModbusTcpClient.read_input_registers``), same simulated device, same
   9-word read. Target: our overhead under 10% (ratio pymodbus/ours under 1.10).
2. pty at 9600 baud with the simulator's wire-time emulation: our measured time per
   transaction vs the least the wire allows (``drivers.modbus.rtu_transaction_wire_time``,
   DESIGN §9). Target: within 15% (ratio under 1.15).

The simulator runs in its own process (``quantrac sim station``) so that it and the client
under test do not share one interpreter lock. Rounds alternate between the two TCP clients
so that machine noise hits both alike.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pymodbus.client import ModbusTcpClient

from drivers import modbus
from drivers.profile import builtin_profile
from drivers.transport import RtuTransport, SerialSettings, TcpTransport, Transport
from edge_agent.poller import Bus, Device, Poller, PollPolicy
from protocol.model import Sample, Status

UNIT = 1
PROFILE = builtin_profile("liquiline")  # one FC04 block of 9 words
ADDRESS, COUNT = 0, 9
ROUND_S = 0.6
ROUNDS = 10
RTU_S = 6.0
BAUD = 9600


def start_sim(tmp: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    config = tmp / "bench-station.toml"
    config.write_text(f'name = "bench"\n[[device]]\nname = "liq"\nprofile = "liquiline"\n'
                      f'unit = {UNIT}\ntransports = ["tcp", "rtu"]\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "--log-level", "WARNING", "sim", "station",
         "--config", str(config), *extra],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("bench/poll.py: the simulator did not start")
    return proc, json.loads(line)


def stop_sim(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def pymodbus_round(port: int, seconds: float) -> float:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
    client.connect()  # type: ignore[no-untyped-call]
    n = 0
    end = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        rr = client.read_input_registers(ADDRESS, count=COUNT, device_id=UNIT)
        if rr.isError():
            raise SystemExit(f"pymodbus read failed: {rr}")
        n += 1
    elapsed = time.perf_counter() - start
    client.close()  # type: ignore[no-untyped-call]
    return n / elapsed


def transport_round(port: int, seconds: float) -> float:
    """Our TcpTransport alone, in the same bare loop as pymodbus: no decoding, no thread."""
    t = TcpTransport("127.0.0.1", port)
    n = 0
    end = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        t.read_registers(UNIT, modbus.READ_INPUT, ADDRESS, COUNT, 2.0)
        n += 1
    elapsed = time.perf_counter() - start
    t.close()
    return n / elapsed


def poller_round(transport: Transport, seconds: float) -> tuple[int, float, int]:
    """(transactions, elapsed, offline samples) of the threaded poller polling flat out."""
    polls = [0]
    offline = [0]
    lock = threading.Lock()

    def sink(device: str, samples: list[Sample]) -> None:
        with lock:
            polls[0] += 1
            offline[0] += sum(s.status is Status.OFFLINE for s in samples)

    device = Device("liq", PROFILE, UNIT, None, interval=1e-6)
    poller = Poller([Bus(transport, (device,))], sink, time.time, PollPolicy(timeout=2.0))
    blocks = len(poller.workers[0].pollers[0].blocks)
    start = time.perf_counter()
    poller.start()
    time.sleep(seconds)
    with lock:
        n = polls[0]
        elapsed = time.perf_counter() - start
    poller.stop()
    return n * blocks, elapsed, offline[0]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        proc, ends = start_sim(tmp, "--tcp-port", "0")
        try:
            port = int(str(ends["tcp_port"]))
            ours, theirs, bare = [], [], []
            for _ in range(ROUNDS):
                theirs.append(pymodbus_round(port, ROUND_S))
                bare.append(transport_round(port, ROUND_S))
                n, elapsed, offline = poller_round(TcpTransport("127.0.0.1", port), ROUND_S)
                if offline:
                    raise SystemExit(f"{offline} offline samples during the TCP bench")
                ours.append(n / elapsed)
        finally:
            stop_sim(proc)
        best_ours, best_theirs = max(ours), max(theirs)
        # each round pairs the clients within a few seconds: the median of the per-round
        # ratios is the figure least moved by other load on the machine
        ratio = statistics.median(t / o for t, o in zip(theirs, ours, strict=True))
        bare_ratio = statistics.median(t / b for t, b in zip(theirs, bare, strict=True))
        print(f"TCP loopback, FC04 x{COUNT} words, {ROUNDS} alternating rounds of {ROUND_S} s "
              f"(best round shown):")
        print(f"  pymodbus loop : {best_theirs:8.0f} transactions/s "
              f"(worst {min(theirs):.0f})")
        print(f"  our transport : {max(bare):8.0f} transactions/s "
              f"(worst {min(bare):.0f}; same bare loop, no decoding)")
        print(f"  our poller    : {best_ours:8.0f} transactions/s "
              f"(worst {min(ours):.0f}; thread, decode, health)")
        print(f"  transport ratio pymodbus/ours = {bare_ratio:.3f} (median of rounds)")
        print(f"  poller ratio pymodbus/ours    = {ratio:.3f} (median of rounds; target < 1.10: "
              f"{'met' if ratio < 1.10 else 'MISSED'})")

        proc, ends = start_sim(tmp, "--pty", "--baud", str(BAUD))
        try:
            transport = RtuTransport(SerialSettings(str(ends["pty"]), BAUD))
            n, elapsed, offline = poller_round(transport, RTU_S)
        finally:
            stop_sim(proc)
        if offline:
            raise SystemExit(f"{offline} offline samples during the RTU bench")
        per = elapsed / n
        wire = modbus.rtu_transaction_wire_time(COUNT, BAUD)
        ratio = per / wire
        print(f"pty at {BAUD} baud with wire-time emulation, FC04 x{COUNT} words, "
              f"{n} transactions in {elapsed:.1f} s:")
        print(f"  measured      : {per * 1000:7.2f} ms per transaction")
        print(f"  wire minimum  : {wire * 1000:7.2f} ms (8 + 5 + 2x{COUNT} chars, 2 frame gaps)")
        print(f"  ratio measured/wire = {ratio:.3f}  (target < 1.15: "
              f"{'met' if ratio < 1.15 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("QUANTRAC_LOG_LEVEL", "WARNING")
    sys.exit(main())
