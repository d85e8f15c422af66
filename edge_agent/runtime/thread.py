"""One thread runner: call ``step()`` until stopped; never let an exception end the thread.

Every long-lived thread of the agent (one per bus, one per uplink) is the same loop: do one
turn of work, and if the turn raised (a bug, an unforeseen library error, a full disk) log it
with its traceback, breathe, and go on, because a thread that dies silently stops a bus or an
uplink with nothing in ``quantrac status`` to say so. At the end, once, a ``finish`` (close the
port, say goodbye to the broker) whose own failure is logged too.

The stop is an :class:`threading.Event`, never a flag polled after a sleep: :meth:`wait` is
how a step waits for its next due time, so a stop ends the wait at once. :meth:`request_stop`
only sets it, so a caller with many threads can ask them all first and then :meth:`join` each:
the total wait is the slowest thread's, not their sum.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class StepThread:
    """Runs ``step`` in a loop on a thread named ``name`` (a daemon thread).

    After a step that raised: ``error_event`` logged with the traceback on ``log``, then a
    pause of ``error_pause_s``. After every step: a pause of ``idle_s`` (0: none; a step that
    blocks on its own, like a network loop, needs none). ``finish`` runs once on the thread
    when the loop ends; if it raises, ``finish_error_event`` is logged.
    """

    def __init__(self, name: str, step: Callable[[], None], *, log: logging.Logger,
                 error_event: str, error_pause_s: float = 1.0, idle_s: float = 0.0,
                 finish: Callable[[], None] | None = None,
                 finish_error_event: str = "thread_finish_failed") -> None:
        self.name = name
        self._step = step
        self._log = log
        self._error_event = error_event
        self._error_pause_s = error_pause_s
        self._idle_s = idle_s
        self._finish = finish
        self._finish_error_event = finish_error_event
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for."""
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` or until a stop is asked; True if stopping."""
        return self._stop.wait(max(0.0, seconds))

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the loop to end after the current step; does not wait."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to end and wait up to ``timeout`` for the thread."""
        self.request_stop()
        self.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # a bug or an unforeseen error: log, breathe, go on
                self._log.exception(self._error_event)
                self._stop.wait(self._error_pause_s)
            if self._idle_s > 0:
                self._stop.wait(self._idle_s)
        if self._finish is not None:
            try:
                self._finish()
            except Exception:
                self._log.exception(self._finish_error_event)
