"""`make demo` runs the whole station end to end and ends with the centre's verified records."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


def test_demo_ends_with_the_centres_table_of_verified_records(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(DEMO), "--seconds", "25", "--work", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    stations = text[text.index("== the centre: stations"):].splitlines()
    fields = stations[2].split()
    assert fields[0] == "HCM-DEMO-WW01"
    assert int(fields[1]) >= 8  # at least one 10 s window of the 8 channels arrived
    assert fields[4] == "0" and fields[-1] == "0"  # no seq missing, no security event
    table = text[text.index("== what the centre stored"):].splitlines()
    rows = [line.split() for line in table[3:] if line.startswith("20")]
    assert {r[3] for r in rows} == {"pH", "Temp", "TSS", "COD", "NH4", "TN", "TP", "Flow"}
    assert any(r[8] == "yes" and r[9] == "measuring" for r in rows)
    assert "stopped agent (exit 0)" in text
