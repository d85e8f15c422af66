"""The gateway's view of the node cannot drift from the firmware's register map, and the
node's log skips what its CRC rejects.

firmware/regmap.py is run under MicroPython (``describe()``); drivers/profiles/field_node.toml
and the constants of drivers/field_node.py must say the same. The log half runs
firmware/flashlog.py under MicroPython on a directory of the host (the unix port's VfsPosix):
records are written, one is corrupted in the middle and the tail is torn, and the reopened
log serves every good record once, none of the bad, and carries on after the last good seq.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from drivers import field_node
from drivers.profile import builtin_profile
from provisioning.firmware_cli import FIRMWARE, tool


def micropython(script: str) -> str:
    out = subprocess.run([tool("micropython"), "-X", "heapsize=200k", "-c",
                          f"import sys\nsys.path.insert(0, {str(FIRMWARE)!r})\n" + script],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def firmware_map() -> dict[str, object]:
    doc: dict[str, object] = json.loads(
        micropython("import json, regmap\nprint(json.dumps(regmap.describe()))"))
    return doc


def test_profile_matches_the_firmware_register_map() -> None:
    fw = firmware_map()
    profile = builtin_profile("field_node")
    expected = {}
    for i, a in enumerate(fw["analog"]):  # type: ignore[attr-defined]
        expected[f"AI{i + 1}"] = (a["value"], a["dtype"], a["status"])
    for j, p in enumerate(fw["pulse"]):  # type: ignore[attr-defined]
        expected[f"P{j + 1}"] = (p["value"], p["dtype"], p["status"])
    assert sorted(profile.channel_names) == sorted(expected)
    for ch in profile.channels:
        value, dtype, status = expected[ch.name]
        assert (ch.function, ch.address, ch.dtype) == (fw["function"], value, dtype), ch.name
        assert ch.byte_order == "big" and ch.word_order == "big", ch.name
        assert ch.status is not None and ch.status.address == status, ch.name
        raw_ok = fw["status_ok"]
        assert ch.status.mapping[raw_ok].name == "MEASURING"  # type: ignore[index]
        for raw in fw["status_fault"]:  # type: ignore[attr-defined]
            assert ch.status.status_of(raw).name == "FAULT", (ch.name, raw)


def test_gateway_constants_match_the_firmware() -> None:
    out = json.loads(micropython(
        "import json, regmap\nprint(json.dumps({k: getattr(regmap, k) for k in dir(regmap) "
        "if k.isupper()}))"))
    for name in ("IR_NODE_STATUS", "IR_BOOT", "IR_UPTIME", "IR_CLOCK", "IR_LOG_HEAD",
                 "IR_LOG_OLDEST", "IR_HIST", "HIST_HEADER", "REC_WORDS", "HIST_MAX", "HR_TIME",
                 "HR_CURSOR", "CH_PULSE0", "CH_DIGITAL", "CH_CLOCK", "FLAG_UNSYNCED",
                 "FLAG_STATUS", "NODE_UNSYNCED"):
        assert getattr(field_node, name) == out[name], name


def test_a_corrupt_or_torn_record_is_skipped_never_served(tmp_path: Path) -> None:
    log = tmp_path / "log"
    script = f"""
import flashlog, json, os
L = flashlog.Log({str(log)!r}, 4096, seg_records=64)
L.open()
for k in range(10):
    L.append([(0, 1000 + k, 1, 0, k)])
L.close()
name = {str(log)!r} + "/00000000.bin"
with open(name, "r+b") as f:        # flip one byte inside record 4
    f.seek(4 * flashlog.REC + 9)
    b = f.read(1)
    f.seek(4 * flashlog.REC + 9)
    f.write(bytes([b[0] ^ 0x40]))
with open(name, "ab") as f:         # a torn tail: half of record 10
    f.write(flashlog.pack(10, 1010, 1, 0, 0, 10)[:11])
L = flashlog.Log({str(log)!r}, 4096, seg_records=64)
L.open()
head1 = L.head
L.append([(0, 2000, 2, 0, 99)])
print(json.dumps({{"head1": head1, "skipped": L.skipped, "recs": L.read(0, 15)}}))
"""
    out = json.loads(micropython(script))
    assert out["head1"] == 10  # the torn record 10 is not there; the next write gets seq 10
    seqs = [r[0] for r in out["recs"]]
    assert seqs == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]  # record 4 (bad CRC) skipped, not served
    assert out["recs"][-1][1] == 2000 and out["recs"][-1][5] == 99
    assert [r[5] for r in out["recs"][:4]] == [0, 1, 2, 3]


def test_config_errors_name_the_key_and_the_value(tmp_path: Path) -> None:
    cases = {
        '{"unit": 300}': "node.json: unit = 300: expected an integer in 1..247",
        '{"baud": 14400}': "node.json: baud = 14400: expected one of",
        '{"period_s": 7}': "node.json: period_s = 7: expected a divisor of 3600",
        '{"analog": [{"lo": "x"}]}': "node.json: analog[0].lo = 'x': expected a number",
        '{"pulse": [{"debounce_ms": -1}]}': "node.json: pulse[0].debounce_ms = -1",
        '{"colour": 1}': "node.json: colour: unknown key",
        '{"unit": 1,': "node.json: not valid JSON",
    }
    for text, want in cases.items():
        path = str(tmp_path / "node.json")
        script = (f"import nodecfg, json\nf = open({path!r}, 'w')\n"
                  f"f.write({text!r})\nf.close()\n"
                  f"cfg, err = nodecfg.load({path!r})\n"
                  "print(json.dumps([cfg['unit'], err]))")
        unit, err = json.loads(micropython(script))
        assert unit == 247 and err is not None and err.startswith(want), (text, err)
