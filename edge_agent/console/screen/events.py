"""The agent's log lines for the events page: where they are, and each as one short line.

The agent logs logfmt to stderr (:mod:`edge_agent.daemon.logs`); under systemd that is the
journal, elsewhere wherever its stderr was sent (a file). So the console reads, in order:
the file given by ``--log`` (or ``$QUANTRAC_AGENT_LOG``), else ``journalctl -u
quantrac-agent`` when there is a journal, else nothing (the overview still shows the last
error of every device, from the status). Reading the journal needs no privilege beyond the
``systemd-journal`` group the technician account is given (docs/technician.md).

:func:`short` is pure: a logfmt line becomes ``W 13:05:02 poll_failed device=hach ...``, its
first letter the level (the page keeps W and E unless asked for all).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from edge_agent.console.screen.text import clean

PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
TAIL_BYTES = 64 * 1024
KEEP = 200
UNIT = "quantrac-agent"


def short(line: str) -> str:
    """One log line as ``L HH:MM:SS event key=value ...`` (L: D, I, W or E)."""
    fields = dict(PAIR.findall(line))
    level = fields.pop("level", "")
    if not level or "event" not in fields:
        return "I " + clean(line.strip())
    letter = {"warning": "W", "error": "E", "critical": "E", "debug": "D"}.get(level, "I")
    # under journald the agent writes no ts= (the journal stamps); -o short-iso puts the
    # journal's stamp first: 2026-12-01T13:05:02+0000 host quantrac[1]: level=...
    ts = fields.pop("ts", "") or line[:19]
    clock = ts[11:19] if len(ts) >= 19 and ts[10:11] == "T" else ""
    fields.pop("logger", None)
    event = fields.pop("event").strip('"')
    rest = " ".join(f"{k}={v}" for k, v in fields.items())
    return clean(" ".join(p for p in (letter, clock, event, rest) if p))


def tail_file(path: Path) -> list[str]:
    """The last lines of ``path`` (at most its last 64 KiB)."""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        data = f.read()
    lines = data.decode("utf-8", "replace").splitlines()
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first one is cut
    return lines[-KEEP:]


def read_events(log_file: Path | None) -> tuple[list[str], str]:
    """(short lines, oldest first; where they came from, or why there are none)."""
    if log_file is not None:
        try:
            return [short(x) for x in tail_file(log_file)], str(log_file)
        except OSError as exc:
            return [], f"{log_file}: {exc.strerror or exc}"
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        return [], "no journal here and no --log FILE; the overview shows the last errors"
    try:
        done = subprocess.run([journalctl, "-u", UNIT, "-n", str(KEEP), "-o", "short-iso",
                               "--no-pager"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"journalctl: {exc}"
    if done.returncode != 0:
        return [], f"journalctl: {clean(done.stderr.decode('utf-8', 'replace').strip())}"
    return [short(x) for x in done.stdout.decode("utf-8", "replace").splitlines()], \
        f"the journal of {UNIT}"
