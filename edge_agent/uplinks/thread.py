"""The one ``Uplink`` protocol and the thread every uplink runs on.

An uplink is a loop of small turns that own their link: connect when due, send what waits,
back off when the link is down. The daemon does not care which uplink it runs, only that it
can be driven and asked how it is, so every uplink offers the same three methods
(:class:`Uplink`): ``step()`` (one turn; may block briefly, e.g. in a network loop),
``stop()`` (once, on the uplink's thread, after the last step: say goodbye, persist) and
``status()`` (the document ``quantrac status`` shows: ``state``, ``detail``, ``stats``).

:class:`UplinkThread` runs one on a :class:`~edge_agent.runtime.thread.StepThread`, so an
exception in a step is logged and the uplink goes on: a dead uplink thread would stop the
drain with nothing in the status to say so. ``status()`` is read from the daemon's loop while
the thread steps; an uplink keeps what it reports in plain attributes, so a read sees either
the old or the new value, never a torn one.
"""

from __future__ import annotations

import logging
from typing import Any, Generic, Protocol, TypeVar

from edge_agent.runtime.thread import StepThread


class Uplink(Protocol):
    """What the daemon needs of an uplink (the MQTT one, the Circular 10 one)."""

    def step(self) -> None:
        """One turn of work."""

    def stop(self) -> None:
        """After the last step, on the same thread: close the link, persist what must be."""

    def status(self) -> dict[str, Any]:
        """``{"state": ..., "detail": ..., "stats": {...}}`` for ``quantrac status``."""


U = TypeVar("U", bound=Uplink)


class UplinkThread(Generic[U]):
    """``uplink`` on a thread of its own; never lets an exception end the thread.

    ``error_event`` is logged (with the traceback) when a step raises, then the thread pauses
    ``error_pause_s``; after every step it pauses ``idle_s`` (0 for an uplink whose step
    waits on its own link). ``stop_error_event`` is logged if ``uplink.stop()`` raises.
    """

    def __init__(self, uplink: U, *, name: str, log: logging.Logger, error_event: str,
                 error_pause_s: float = 1.0, idle_s: float = 0.0,
                 stop_error_event: str = "uplink_stop_failed") -> None:
        self.uplink = uplink
        self._thread = StepThread(name, uplink.step, log=log, error_event=error_event,
                                  error_pause_s=error_pause_s, idle_s=idle_s,
                                  finish=uplink.stop,
                                  finish_error_event=stop_error_event)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._thread.stop(timeout)

    def status(self) -> dict[str, Any]:
        return self.uplink.status()
