"""The automatic sampler's own thread: starts it, reads whether it is busy, never blocks polling.

The daemon decides *whether* to start (``edge_agent.core.sampler_policy``: cooldown, daily
cap) and flags the record that caused it; this thread does the Modbus part (``[sampler]``,
``edge_agent.config.sampler``):

* start: FC05 coil on, ``pulse_s`` later off (a relay contact the sampler sees as a pulse),
  or FC06 the register value and ``pulse_s`` later 0 (``pulse_s = 0``: the value stays):
  the field node's relay is its holding register 2 (``firmware/regmap.py`` HR_RELAY, 1
  closed, 0 open), so ``trigger_register = 2`` pulses the relay that closes the sampler's
  start contact;
* state: FC02 discrete input (or FC01 coil) read every ``STATE_EVERY_S``: busy or idle, so
  ``quantrac status`` shows whether the sample is being taken and when it is done.

Why a thread of its own, and what "never blocks polling" means here. A sampler that does not
answer costs one transaction timeout (``timeout_s``) per attempt and nothing more: nothing is
retried (the start still counts against the cap: whether the pump ran is unknown), and the
state read backs off to ``STATE_BACKOFF_S`` while it stays silent. It runs on this thread,
so the daemon's loop and the poller threads never wait for it; on a bus shared with analysers
it uses the bus's transport, whose lock serialises transactions (two masters on one RS-485
line garble both), so a poll on that bus waits at most for one sampler transaction. The
failure is logged once per change and shown by ``quantrac status`` (``problem``).
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from drivers.modbus import ModbusError
from edge_agent.config.sampler import SamplerSettings
from edge_agent.runtime.thread import StepThread
from protocol.clock import Clock

log = logging.getLogger("quantrac.edge_agent.sampler")

STATE_EVERY_S = 5.0  # busy/idle read while it answers
STATE_BACKOFF_S = 60.0  # ... and while it does not


@runtime_checkable
class SamplerBus(Protocol):
    """What the sampler needs of a transport (every one in ``drivers.transport`` has it)."""

    def read_bits(self, unit: int, function: int, address: int, count: int,
                  timeout: float) -> list[bool]: ...

    def write_coil(self, unit: int, address: int, on: bool, timeout: float) -> None: ...

    def write_register(self, unit: int, address: int, value: int, timeout: float) -> None: ...


@dataclass
class SamplerState:
    """What ``quantrac status`` shows; wall-clock times."""

    starts: int = 0  # starts written and acknowledged
    failed: int = 0  # starts the sampler did not acknowledge
    busy: bool | None = None  # None: not read (not configured, or not answering)
    state_at: float | None = None
    last_start: dict[str, Any] | None = None  # when, why (record or command), ok, error
    problem: str | None = None  # e.g. the sampler does not answer


class SamplerWorker:
    """One sampler; ``start(why)`` queues a start (never blocks), ``status()`` is a snapshot."""

    def __init__(self, settings: SamplerSettings, bus: SamplerBus, clock: Clock = time.time,
                 monotonic: Clock = time.monotonic) -> None:
        self.s = settings
        self.bus = bus
        self.clock = clock
        self.monotonic = monotonic
        self.state = SamplerState()
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next_read = 0.0
        self._thread = StepThread("sampler", self._step, log=log,
                                  error_event="sampler_thread_error")

    def start_thread(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._thread.stop(timeout)

    def start(self, why: Mapping[str, Any]) -> None:
        """Queue a start; the policy has allowed it already."""
        self._queue.put(dict(why))

    def status(self) -> dict[str, Any]:
        st = self.state
        return {"bus": self.s.bus, "unit": self.s.unit, "starts": st.starts, "failed": st.failed,
                "busy": st.busy, "state_at": st.state_at, "last_start": st.last_start,
                "problem": st.problem, "queued": self._queue.qsize()}

    # ---------------------------------------------------------------- the thread

    def _step(self) -> None:
        wait = max(0.0, self._next_read - self.monotonic())
        try:
            why = self._queue.get(timeout=min(wait, 0.5) if self.s.busy else 0.5)
        except queue.Empty:
            if self.s.busy is not None and self.monotonic() >= self._next_read:
                self._read_state()
            return
        self._fire(why)

    def _fire(self, why: dict[str, Any]) -> None:
        s = self.s
        at = self.clock()
        try:
            if s.trigger == "coil":
                self.bus.write_coil(s.unit, s.address, True, s.timeout_s)
                if s.pulse_s > 0:
                    self._thread.wait(s.pulse_s)
                self.bus.write_coil(s.unit, s.address, False, s.timeout_s)
            else:
                self.bus.write_register(s.unit, s.address, s.value, s.timeout_s)
                if s.pulse_s > 0:  # a relay register (the field node's): closed, then open
                    self._thread.wait(s.pulse_s)
                    self.bus.write_register(s.unit, s.address, 0, s.timeout_s)
        except (ModbusError, OSError) as exc:
            # the counters last: ``status`` is read from other threads, and whoever sees the
            # count go up must see the problem and last start that go with it (a test read
            # the state read's older problem between the two)
            self.state.last_start = {**why, "at": at, "ok": False, "error": str(exc)}
            self._trouble(f"sampler (bus {s.bus} unit {s.unit}) did not take the start: {exc}")
            self.state.failed += 1
            log.error("sampler_start_failed", extra={**why, "bus": s.bus, "unit": s.unit,
                                                     "error": str(exc)})
            return
        self.state.last_start = {**why, "at": at, "ok": True, "error": None}
        self._recovered()
        self.state.starts += 1
        log.warning("sampler_started", extra={**why, "bus": s.bus, "unit": s.unit,
                                              "trigger": f"{s.trigger} {s.address}"})
        if s.busy is not None:
            self._read_state()

    def _read_state(self) -> None:
        s = self.s
        function = 2 if s.busy == "input" else 1
        try:
            [bit] = self.bus.read_bits(s.unit, function, s.busy_address, 1, s.timeout_s)
        except (ModbusError, OSError) as exc:
            self.state.busy = None
            self._next_read = self.monotonic() + STATE_BACKOFF_S
            self._trouble(f"sampler (bus {s.bus} unit {s.unit}) does not answer: {exc}")
            return
        self._next_read = self.monotonic() + STATE_EVERY_S
        if self.state.busy is not bit:
            log.info("sampler_state", extra={"busy": bit, "bus": s.bus, "unit": s.unit})
        self.state.busy, self.state.state_at = bit, self.clock()
        self._recovered()

    def _trouble(self, what: str) -> None:
        if self.state.problem != what:
            log.error("sampler_not_answering", extra={"problem": what})
        self.state.problem = what

    def _recovered(self) -> None:
        if self.state.problem is not None:
            log.info("sampler_answering_again", extra={"was": self.state.problem})
            self.state.problem = None
