"""The field node firmware itself, under the MicroPython unix port with the heap limited to
what an RP2040 leaves free (-X heapsize=200k), on a socat pty pair, read by our drivers'
RtuTransport, by pymodbus and by mbpoll. Its inputs and clock come from the unix HAL's
control file (the designed test seam); every wait is on a condition with a deadline.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.client import ModbusSerialClient

from drivers import field_node
from drivers.decode import decode_samples
from drivers.planner import plan_reads
from drivers.profile import builtin_profile, profile_registers
from drivers.transport import RtuTransport, SerialSettings
from protocol.model import Status
from provisioning.firmware_cli import NodeProcess, tool, wait_for

UNIT = 17
T0 = 1_780_000_200  # a UTC second on a 5-minute boundary (T0 % 300 == 0)
MA_STEP = 3.3 / 4096 / (250.0 * 25000.0 / 25250.0 * 0.6) * 1000.0  # one ADC count, in mA
CONFIG = {
    "unit": UNIT, "period_s": 60, "scan_ms": 1000, "oversample": 8, "filter": "median",
    "watchdog_ms": 1000,
    "analog": [{"name": "Level", "lo": 0.0, "hi": 5.0, "unit": "m"},
               {"name": "Flow", "lo": 0.0, "hi": 250.0, "unit": "m3/h"},
               {"name": "TSS", "lo": -10.0, "hi": 90.0, "unit": "mg/L"},
               {"name": "pH", "lo": 0.0, "hi": 14.0, "unit": "pH"}],
    "pulse": [{"name": "Rain", "debounce_ms": 5}],
    "digital": [{"name": "Door", "debounce_ms": 50}],
}
LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)", re.MULTILINE)


def expected_value(ma: float, lo: float, hi: float) -> float:
    return lo + (ma - 4.0) * (hi - lo) / 16.0


def resolution(lo: float, hi: float) -> float:
    """firmware/inputs.py: one 12-bit count of the front end, in engineering units."""
    return (hi - lo) * MA_STEP / 16.0


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    assert shutil.which("socat"), "socat is not installed: apt-get install socat"
    with NodeProcess(CONFIG, tmp_path) as n:
        n.set(ma=[12.0, 4.0, 20.0, 12.0], pulses=[0], di=[0])
        n.start()
        yield n


def rtu(node: NodeProcess) -> RtuTransport:
    return RtuTransport(SerialSettings(node.port, 9600))


def mbpoll(node: NodeProcess, table: str, address: int, count: int, *extra: str
           ) -> dict[int, str]:
    args = ["mbpoll", "-m", "rtu", "-b", "9600", "-P", "none", "-a", str(UNIT), "-t", table,
            "-r", str(address + 1), "-c", str(count), "-1", "-o", "2", *extra, node.port]
    out = subprocess.run(args, capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stdout + out.stderr
    return {int(ref) - 1: value for ref, value in LINE.findall(out.stdout)}


def scan(node: NodeProcess) -> None:
    scans = (node.status() or {})["scans"]
    node.advance(1000)
    node.wait(lambda s: s["scans"] > scans, 20, "a scan of the new inputs")


def test_live_registers_agree_with_the_driven_inputs(node: NodeProcess) -> None:
    drive = [4.0 + 1234 * MA_STEP / 100, 12.345, 19.99, 2.5]  # AI4 below NE 43's 3.6 mA
    node.set(ma=drive)
    scan(node)
    profile = builtin_profile("field_node")
    t = rtu(node)
    try:
        image: dict[tuple[int, int], int] = {}
        for block in plan_reads(profile_registers(profile)):
            words = t.read_registers(UNIT, block.function, block.address, block.count, 1.0)
            image.update(zip([(block.function, a) for a in block.registers()], words,
                             strict=True))
        raw = t.read_registers(UNIT, 4, 0, 40, 1.0)
    finally:
        t.close()
    samples = {s.channel: s for s in decode_samples(profile, image, 0.0)}
    for i, (ma, ch) in enumerate(zip(drive, CONFIG["analog"], strict=True)):
        s = samples[f"AI{i + 1}"]
        if ma < 3.6:
            assert s.status is Status.FAULT and math.isnan(s.value), s
            assert raw[4 * i + 2] == 1  # status word: NE 43 low
            continue
        lo, hi = ch["lo"], ch["hi"]
        assert s.status is Status.MEASURING, s
        assert abs(s.value - expected_value(ma, lo, hi)) <= resolution(lo, hi), (ch, s)
        assert abs(raw[4 * i + 3] / 1000 - ma) <= MA_STEP + 0.0005  # loop current in uA

    # mbpoll (libmodbus) reads the same words, and the same floats (big-endian words: -B)
    theirs = mbpoll(node, "3", 0, 24)
    assert [int(theirs[a]) for a in range(24)] == raw[:24]
    for i in range(3):
        f = mbpoll(node, "3:float", 4 * i, 1, "-B")
        assert f[4 * i] == f"{samples[f'AI{i + 1}'].value:g}"

    # pymodbus too
    client = ModbusSerialClient(node.port, baudrate=9600, timeout=2, retries=0)
    assert client.connect()
    try:
        rr = client.read_input_registers(0, count=40, device_id=UNIT)
        assert not rr.isError(), rr
        assert rr.registers[:26] == raw[:26]
    finally:
        client.close()


def test_ne43_high_fault_and_the_range_edges(node: NodeProcess) -> None:
    node.set(ma=[21.5, 3.7, 20.9, 3.59])
    scan(node)
    t = rtu(node)
    try:
        w = t.read_registers(UNIT, 4, 0, 16, 1.0)
    finally:
        t.close()
    values = [struct.unpack(">f", struct.pack(">HH", w[4 * i], w[4 * i + 1]))[0]
              for i in range(4)]
    statuses = [w[4 * i + 2] for i in range(4)]
    assert statuses == [2, 0, 0, 1]
    assert math.isnan(values[0]) and math.isnan(values[3])
    a = CONFIG["analog"]
    assert abs(values[1] - expected_value(3.7, a[1]["lo"], a[1]["hi"])) <= resolution(
        a[1]["lo"], a[1]["hi"])
    assert abs(values[2] - expected_value(20.9, a[2]["lo"], a[2]["hi"])) <= resolution(
        a[2]["lo"], a[2]["hi"])


def test_pulses_count_through_bounce_and_survive_a_restart(node: NodeProcess) -> None:
    node.set(pulses=[37], bounce=3)
    scan(node)
    node.wait(lambda s: s["totals"] == [37], 20, "37 pulses counted (bounce rejected)")
    node.advance(60_000)  # the log slot saves the total
    node.wait(lambda s: s["saved"] == [37], 20, "the total saved with the log slot")
    node.kill()  # SIGKILL: nothing is flushed on the way down
    node.set(pulses=[37 + 5])  # pulses while the node was down are lost, as on hardware
    node.start()
    node.set(pulses=[37 + 5 + 8])
    scan(node)
    node.wait(lambda s: s["totals"] == [45], 20, "37 + 8 pulses after the restart")
    t = rtu(node)
    try:
        w = t.read_registers(UNIT, 4, 16, 4, 1.0)
    finally:
        t.close()
    assert (w[0] << 16 | w[1]) == 45 and w[2] == 0 and w[3] == 8  # 8 not yet saved
    assert mbpoll(node, "3:int", 16, 1, "-B")[16] == "45"


def test_relay_clock_and_exceptions_over_the_wire(node: NodeProcess) -> None:
    client = ModbusSerialClient(node.port, baudrate=9600, timeout=2, retries=0)
    assert client.connect()
    try:
        assert not client.write_register(2, 1, device_id=UNIT).isError()
        node.wait(lambda s: s["relay_out"] == 1, 20, "the relay output closed")
        rr = client.write_register(2, 7, device_id=UNIT)  # a relay is 0 or 1
        assert rr.isError() and rr.exception_code == 3
        assert not client.write_registers(0, [T0 >> 16, T0 & 0xFFFF], device_id=UNIT).isError()
        node.wait(lambda s: s["synced"] and s["utc"] == T0, 20, "the clock set")
        rr = client.write_register(0, 5, device_id=UNIT)  # half a u32 clock
        assert rr.isError() and rr.exception_code == 3
        rr = client.read_coils(0, count=1, device_id=UNIT)
        assert rr.isError() and rr.exception_code == 1
        rr = client.read_input_registers(45, count=2, device_id=UNIT)  # the gap in the map
        assert rr.isError() and rr.exception_code == 2
    finally:
        client.close()


def test_history_backfills_a_ten_minute_trunk_cut_with_original_times(node: NodeProcess
                                                                      ) -> None:
    t = rtu(node)
    field_node.set_clock(t, UNIT, T0 - 5)
    node.wait(lambda s: s["synced"], 20, "the clock set")
    driven: dict[int, float] = {}  # UTC second -> Level the test drove for that slot

    def minute(k: int) -> None:
        ma = 4.0 + (k * 37 % 160) / 10.0
        node.set(ma=[ma, 12.0, 12.0, 12.0])
        scans = (node.status() or {})["scans"]
        head = (node.status() or {})["log"]["head"]
        node.advance(60_000)
        node.wait(lambda s: s["log"]["head"] > head and s["scans"] > scans, 20,
                  f"the slot of minute {k} logged")
        driven[T0 + 60 * k - 5 + 5] = ma  # slot times are whole minutes of UTC

    # ten minutes with the trunk up: the live poll would see these
    for k in range(10):
        minute(k)
    info = field_node.read_node(t, UNIT)
    cursor = info.head
    t.close()

    node.pty.stop()  # the trunk is cut: the node's line goes away
    for k in range(10, 20):  # ten simulated minutes of logging with nobody listening
        minute(k)
    node.pty.start()  # the trunk is back; the node reopens its line

    t = rtu(node)
    try:
        info = wait_for(lambda: _try_read_node(t), 20, "the node answering again")
        recs = list(field_node.read_history(t, UNIT, cursor))
        everything = list(field_node.read_history(t, UNIT, 0))
    finally:
        t.close()
    assert [r.seq for r in recs] == list(range(cursor, info.head))
    timed = field_node.map_times(recs)
    level = {tr.utc: tr.record.value for tr in timed if tr.record.channel == 0}
    cut = {utc: ma for utc, ma in driven.items() if utc >= T0 + 600}
    assert sorted(level) == sorted(cut), "every sample of the cut, at its original time"
    lo, hi = 0.0, 5.0
    for utc, ma in cut.items():
        assert abs(level[utc] - expected_value(ma, lo, hi)) <= resolution(lo, hi), utc

    # the 5-minute averages from the node's log equal those of the values driven (uncut run)
    full = {tr.utc: tr.record.value for tr in field_node.map_times(everything)
            if tr.record.channel == 0}
    assert sorted(full) == sorted(driven)

    def averages(series: dict[int, float]) -> dict[int, float]:
        out: dict[int, list[float]] = {}
        for utc, v in series.items():
            out.setdefault(utc // 300 * 300, []).append(v)
        return {k: sum(v) / len(v) for k, v in out.items()}

    from_log = averages(full)
    uncut = averages({u: expected_value(ma, lo, hi) for u, ma in driven.items()})
    assert sorted(from_log) == sorted(uncut)
    for k in uncut:
        assert abs(from_log[k] - uncut[k]) <= resolution(lo, hi), k


def _try_read_node(t: RtuTransport) -> field_node.NodeInfo | None:
    try:
        return field_node.read_node(t, UNIT, 0.3)
    except Exception:
        return None


def test_unsynced_records_are_mapped_to_utc_once_the_clock_is_set(node: NodeProcess) -> None:
    for _ in range(3):
        head = (node.status() or {})["log"]["head"]
        node.advance(60_000)
        node.wait(lambda s, h=head: s["log"]["head"] > h, 20, "an unsynced slot logged")
    node.advance(10_000)
    t = rtu(node)
    try:
        up = field_node.read_node(t, UNIT).uptime
        field_node.set_clock(t, UNIT, T0)
        node.wait(lambda s: s["synced"], 20, "the clock set")
        recs = list(field_node.read_history(t, UNIT, 0))
    finally:
        t.close()
    unsynced = [r for r in recs if r.unsynced and r.channel == 0]
    assert [r.time for r in unsynced] == [60, 120, 180]  # uptime seconds of boot 1
    mapped = {tr.record.seq: tr.utc for tr in field_node.map_times(recs)}
    for r in unsynced:
        assert mapped[r.seq] == T0 - (up - r.time)


def test_a_hung_loop_is_reset_by_the_watchdog_and_keeps_log_and_totals(tmp_path: Path
                                                                        ) -> None:
    with NodeProcess(CONFIG, tmp_path, supervise=True) as n:
        n.set(ma=[12.0] * 4, pulses=[0])
        n.start()
        n.set(pulses=[9])
        n.advance(1000)
        n.wait(lambda s: s["totals"] == [9], 20, "9 pulses")
        n.advance(60_000)
        before = n.wait(lambda s: s["saved"] == [9] and s["log"]["head"] > 0, 20, "a slot")
        n.set(hang=True)
        wait_for(lambda: "watchdog" in n.output(), 20, "the watchdog to fire")
        n.set(hang=False)
        after = n.wait(lambda s: s["boot"] == before["boot"] + 1, 20, "the node rebooted")
        assert after["reset_cause"] == "wdt"
        assert after["totals"] == [9]
        assert after["log"]["head"] >= before["log"]["head"]
        t = RtuTransport(SerialSettings(n.port, 9600))
        try:
            w = t.read_registers(UNIT, 4, 26, 2, 1.0)
        finally:
            t.close()
        assert w[0] & 8 and w[1] == after["boot"]  # NODE_WDT_RESET, boot counter


def test_a_broken_config_names_the_key_and_runs_on_the_safe_default(tmp_path: Path) -> None:
    bad = dict(CONFIG, analog=[{"name": "Level", "lo": 4, "hi": 3}])
    with NodeProcess(bad, tmp_path) as n:
        n.start()
        assert "CONFIG ERROR: node.json: analog[0].hi = 3: expected a number above lo" \
            in n.output()
        t = RtuTransport(SerialSettings(n.port, 9600))
        try:
            w = t.read_registers(247, 4, 26, 1, 1.0)  # the safe default unit id
        finally:
            t.close()
        assert w[0] & 2  # NODE_CONFIG_DEFAULT


def test_the_heap_limit_is_real(tmp_path: Path) -> None:
    """-X heapsize does limit this build: far too small a heap fails at boot."""
    with NodeProcess(CONFIG, tmp_path, heapsize="12k") as n:
        n.start(wait=False)
        assert n.proc is not None
        rc = n.proc.wait(20)
        assert rc != 0 and "MemoryError" in n.output(), n.output()


def test_the_full_loop_runs_within_the_rp2040_heap(node: NodeProcess) -> None:
    t = rtu(node)
    try:
        field_node.set_clock(t, UNIT, T0)
        for _ in range(5):
            node.advance(60_000)
        for _ in range(20):
            t.read_registers(UNIT, 4, 0, 40, 1.0)
            list(field_node.read_history(t, UNIT, 0))
    finally:
        t.close()
    s = node.wait(lambda s: s["heap_free"] > 0, 20, "a heap figure")
    assert node.proc is not None and node.proc.poll() is None
    assert s["heap_peak"] < 200 * 1024


def test_console_prints_the_node_status(node: NodeProcess) -> None:
    out = subprocess.run([tool("python"), "-m", "provisioning.firmware_cli", "console",
                          "--status", str(node.status_path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "unit 17" in out.stdout and "AI1   12.000 mA" in out.stdout and "log seq" in out.stdout
