"""The serial getty drop-in that starts ``quantrac console`` for the technician parses as
systemd reads it, and the account's login shell can only run the console.

``systemd-analyze verify`` loads Debian's own ``serial-getty@.service`` with our drop-in from
a unit path of our own (``$SYSTEMD_UNIT_PATH``, the trailing ``:`` keeps the system paths):
an ExecStart= that does not clear the packaged one, or a bad key, makes it refuse. The same
check on a copy without the clearing ``ExecStart=`` line must fail, which proves the drop-in
is the one read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "edge_agent" / "daemon" / "systemd"
DROP_IN = SYSTEMD / "serial-getty@ttyS0.service.d" / "quantrac-console.conf"
SHELL = SYSTEMD / "quantrac-tech-shell"
ANALYZE = "systemd-analyze"


def verify(unit_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ANALYZE, "verify", "serial-getty@ttyS0.service"],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"})


def test_the_getty_drop_in_is_valid_and_read(tmp_path: Path) -> None:
    good = tmp_path / "good"
    shutil.copytree(DROP_IN.parent, good / DROP_IN.parent.name)
    done = verify(good)
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "broken"
    shutil.copytree(DROP_IN.parent, broken / DROP_IN.parent.name)
    conf = broken / DROP_IN.parent.name / DROP_IN.name
    conf.write_text("\n".join(x for x in conf.read_text().splitlines() if x != "ExecStart="))
    done = verify(broken)
    assert done.returncode != 0 and "ExecStart" in done.stderr, done.stderr


def test_the_drop_in_autologins_the_technician_into_the_console() -> None:
    keys = [x for x in DROP_IN.read_text().splitlines() if x and not x.startswith("#")]
    assert keys[0] == "[Service]" and keys[1] == "ExecStart="
    [start] = [x for x in keys[2:] if x.startswith("ExecStart=")]
    assert "agetty --autologin quantrac-tech" in start and "115200,9600" in start
    shell = [x for x in SHELL.read_text().splitlines() if x and not x.startswith("#")]
    # the only command: exec the console, no "$@" and nothing from the environment
    assert shell == ["exec /opt/quantrac/venv/bin/quantrac console --config "
                     "/etc/quantrac/station.toml"]
    assert os.access(SHELL, os.X_OK)
