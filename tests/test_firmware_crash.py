"""Power cut at any instant: the node process is SIGKILLed at 100 random moments while it
writes its log as fast as it can (the simulated clock runs 500x, one slot per second of it),
and restarted on the same flash image each time.

After every restart the log opens; at the end the whole log is read back over the trunk:
every seq once, no gap (a record lost in flight gives its seq to the next record written,
so "at most the record being written is missing" shows as: nothing the node had reported
committed before the kill is missing), every record whole (the node serves only records
whose CRC32 checks) and carrying the value the test drove.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from drivers import field_node
from drivers.transport import RtuTransport, SerialSettings
from provisioning.firmware_cli import NodeProcess

UNIT = 9
CONFIG = {"unit": UNIT, "period_s": 1, "scan_ms": 10, "oversample": 1,
          "analog": [{"name": "Level", "lo": 0.0, "hi": 16.0}]}
KILLS = 100


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_or_duplicates(tmp_path: Path) -> None:
    rng = random.Random(1414)
    committed: list[int] = []
    with NodeProcess(CONFIG, tmp_path) as node:
        node.set(ma=[12.0], speed=500, host_ms=0, sim_ms=0)
        import time
        node.set(host_ms=int(time.time() * 1000), sim_ms=0)
        for k in range(KILLS):
            node.start()
            s = node.status() or {}
            if committed:
                assert s["log"]["head"] >= committed[-1], (k, s["log"], committed[-1])
            want = s["log"]["head"] + rng.randint(1, 15)
            node.wait(lambda st, w=want: st["log"]["head"] >= w, 30, f"kill {k}: writes")
            # a random moment inside the stream of writes (not a wait for anything)
            time.sleep(rng.uniform(0, 0.02))
            last = node.status()
            assert last is not None
            node.kill()
            committed.append(last["log"]["head"])
        node.start()
        final = node.status() or {}
        assert final["log"]["head"] >= committed[-1]
        node.set(speed=0)
        t = RtuTransport(SerialSettings(node.port, 9600))
        try:
            recs = list(field_node.read_history(t, UNIT, 0))
            info = field_node.read_node(t, UNIT)
        finally:
            t.close()
    seqs = [r.seq for r in recs]
    assert seqs == list(range(info.oldest, info.head)), "a seq missing or served twice"
    assert info.oldest == 0
    assert {r.boot for r in recs} <= set(range(1, KILLS + 2))
    assert all(r.channel == 0 and r.value == pytest.approx(8.0, abs=0.01) for r in recs)
    for boot in {r.boot for r in recs}:
        times = [r.time for r in recs if r.boot == boot]
        assert times == sorted(set(times)), f"boot {boot}: a slot logged twice"
    assert len(recs) >= committed[-1]
