"""Who holds a serial port: the process named when ``diag`` cannot open it.

pyserial opens a port with ``exclusive=True`` as a ``flock`` on the device node, so the
agent (and any other pyserial master) shows in ``/proc/locks`` as a FLOCK on the node's inode.
Naming the holder (pid and command line) tells a technician whether it is the agent, whose
control socket ``diag`` should go through, or a forgotten terminal program to close. A
program that holds the port without a lock (a plain ``cat``) is found by its open file
descriptors instead. Linux only; elsewhere nothing is found and the plain error is shown.
"""

from __future__ import annotations

import os
from pathlib import Path

from protocol.safe_text import escape_controls

#: longest command line shown; the rest is cut with "..."
COMMAND_LIMIT = 72


def command_line(raw: bytes) -> str:
    """A ``/proc/PID/cmdline`` as a technician reads it: the program by its name, not its
    path (``python -m edge_agent.daemon.cli run ...``, wherever the venv lives: a long
    install path would otherwise push what tells the agent apart out of the cut), every
    control character escaped (any process can put anything in its argv), cut at
    :data:`COMMAND_LIMIT` characters."""
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    if not words:
        return "?"
    words[0] = words[0].rsplit("/", 1)[-1] or words[0]
    text = escape_controls(" ".join(words))
    return text if len(text) <= COMMAND_LIMIT else text[:COMMAND_LIMIT - 3] + "..."


def _command(pid: int) -> str:
    try:
        return command_line(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return "?"


def _lockers(st: os.stat_result) -> list[int]:
    """Pids with a lock on the inode of ``st`` (``/proc/locks``: "1: FLOCK ADVISORY WRITE
    <pid> <major>:<minor>:<inode> 0 EOF")."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return []
    pids = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] == "->":
            continue
        try:
            pid, inode = int(parts[4]), int(parts[5].rsplit(":", 1)[1])
        except (ValueError, IndexError):
            continue
        if inode == st.st_ino:
            pids.append(pid)
    return pids


def _openers(path: Path, me: int) -> list[int]:
    """Pids (other than ``me``) with ``path`` open, from their fd links (readable ones)."""
    target = str(path.resolve())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            if any(os.readlink(fd) == target for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def holder_of(port: str) -> str | None:
    """``"pid 1234 (quantrac run --config ...)"`` for the process holding ``port``, or None."""
    path = Path(port)
    try:
        st = path.stat()
    except OSError:
        return None
    pids = _lockers(st) or _openers(path, os.getpid())
    if not pids:
        return None
    return ", ".join(f"pid {pid} ({_command(pid)})" for pid in dict.fromkeys(pids))
