"""One agent per state dir, decided by a lock that the kernel lets go of when the agent dies.

Two agents on one state dir would both poll, both average and both append to one outbox:
every window twice, under different seqs, sent to the centre as two records. What stopped a
second agent before was the control socket: a socket that did not answer a ping within a
second was taken for one a killed agent had left, removed, and taken over. A busy agent (a
loaded card, a long diag read on its bus, a process stopped by a debugger) answers late, so
a second one started beside it, with its socket and its outbox (seen in a loaded test run).

So the decision is a ``flock`` on ``agent.lock`` in the state dir, taken before anything
else is opened and held for the agent's life. The kernel drops it with the process, however
it ends (SIGKILL, a power cut leaves no process at all), so a lock left behind cannot refuse
a start, and a live agent, however slow, always refuses the second one. The pid in the
file is only for the message. The control socket's ping stays for a socket configured
outside the state dir (``[agent] control_socket``), which this lock does not cover.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "agent.lock"


class AlreadyRunningError(Exception):
    """Another live process holds the state dir's lock; the message names the file and pid."""


class InstanceLock:
    """The held lock; ``release`` (or the process's end) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def take(cls, state_dir: Path) -> InstanceLock:
        """Take the lock of ``state_dir`` (made 0700 if missing), without waiting.
        AlreadyRunningError when a live agent holds it; OSError when the dir is not ours."""
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = state_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise AlreadyRunningError(
                f"{path}: another agent is already running on this state dir{pid}") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return cls(path, fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock
