"""Interactive commands print their answer on stdout and errors on stderr, never log lines;
``--verbose``, an explicit ``--log-level``, systemd, or a service command bring the logs back.

Every command runs as the installer runs it: the real ``quantrac`` in a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LOG_LINE = re.compile(r"^(ts=\S+ )?level=\w+ logger=", re.MULTILINE)


def quantrac(*args: object, cwd: Path, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("JOURNAL_STREAM", "INVOCATION_ID", "QUANTRAC_LOG_LEVEL")}
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.daemon.cli", *map(str, args)],
        capture_output=True, text=True, timeout=120, cwd=cwd, env={**base, **(env or {})},
    )


def test_the_installers_and_operators_commands_write_no_log_lines(tmp_path: Path) -> None:
    steps: list[tuple[object, ...]] = [
        ("centre", "init", "--dir", "centre", "--broker", "127.0.0.1:8883"),
        ("centre", "fingerprint", "--dir", "centre"),
        ("provision", "init", "--state-dir", "station", "--station-id", "hn-ww-001",
         "--out", "request.json"),
        ("provision", "show", "--state-dir", "station"),
        ("centre", "enrol", "request.json", "--out", "bundle.json", "--dir", "centre"),
        ("centre", "revoke", "hn-ww-001", "--dir", "centre"),
        ("centre", "crl", "--dir", "centre"),
        ("config", "check", EXAMPLES / "wastewater.toml"),
    ]
    for step in steps:
        out = quantrac(*step, cwd=tmp_path)
        assert out.returncode == 0, (step, out.stdout, out.stderr)
        assert out.stdout.strip(), f"{step}: no answer on stdout"
        assert not LOG_LINE.search(out.stderr), f"{step} wrote log lines:\n{out.stderr}"
    # a refusal is one error on stderr, not an error plus log lines
    out = quantrac("provision", "rotate", "--state-dir", "nowhere", "--out", "r.json",
                   cwd=tmp_path)
    assert out.returncode != 0 and out.stderr.strip()
    assert not LOG_LINE.search(out.stderr), out.stderr


def test_verbose_log_level_and_systemd_bring_the_log_lines_back(tmp_path: Path) -> None:
    init = ("provision", "init", "--station-id", "hn-ww-001", "--out", "request.json")
    shown = [
        quantrac("--verbose", *init, "--state-dir", "a", cwd=tmp_path),
        quantrac("--log-level", "INFO", *init, "--state-dir", "b", cwd=tmp_path),
        quantrac(*init, "--state-dir", "c", cwd=tmp_path, env={"INVOCATION_ID": "x"}),
    ]
    for out in shown:
        assert out.returncode == 0, out.stderr
        assert re.search(r"level=info logger=\S+ event=station_initialised", out.stderr), (
            out.stderr)
    # under journald the journal stamps each line: no ts= of our own
    out = quantrac(*init, "--state-dir", "d", cwd=tmp_path, env={"JOURNAL_STREAM": "8:1"})
    assert re.search(r"^level=info .*event=station_initialised", out.stderr, re.MULTILINE)


def test_a_service_command_logs_without_being_asked(tmp_path: Path) -> None:
    sim = EXAMPLES.parent / "hw_sim" / "examples" / "wastewater.toml"
    out = quantrac("sim", "station", "--config", sim, "--tcp-port", "0", "--duration", "0.5",
                   cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert LOG_LINE.search(out.stderr), out.stderr
