"""The poller: reads every device on every bus, decodes, and hands samples to a sink.

Threads, not asyncio tasks, move the bytes. One worker thread per bus (a serial line, or one
TCP endpoint) owns that bus and runs its transactions one at a time, with blocking pyserial
and sockets. That keeps the inter-frame timing (the turnaround pause, the silence that ends a
frame) in the hands of the kernel's ``select`` rather than of an event loop that may be busy
averaging or sealing packets, and it isolates buses completely: a dead line blocks only its
own thread. The asyncio daemon receives samples through :func:`queue_sink`, which hops them
onto the loop with ``call_soon_threadsafe``.

Rules (the poll step of docs/architecture.md, "Theory of operation"):

* A sample's ``t`` is the wall clock (``clock``, passed in) read when the response that
  carried it arrived; a channel spread over several blocks takes the latest of them.
* A block that fails yields ``Sample.offline`` for the channels that need it, never a value.
* A device that keeps failing is backed off: its interval doubles per consecutive failed
  poll up to ``backoff_max``; one good poll restores it. Retries are spent only on a device
  that was healthy, so a dead unit costs one timeout per (backed-off) poll and no more.
* A failing device is also *probed* in the bus's idle time, at most once per its interval,
  and only when a whole probe (its timeout) fits before the next poll due on that bus: a unit
  that comes back is seen within about one interval when the bus has slack, and the units
  that answer never wait for it (see :class:`BusWorker`).
* ``poll_failed`` is logged (warning) when a device's failure reason changes, not on every
  poll; ``device_recovered`` (info) when it answers again.
* A float that no analyser of that channel would send (far outside the channel's usual range,
  or a denormal-looking speck like 2.4e-41, the signature of swapped words) becomes a FAULT
  sample with no value and an ``implausible_value`` log line. The rule, and why it is only a
  guard, is :mod:`edge_agent.core.plausibility`; the bounds are worked out once per channel.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from drivers.decode import decode_samples
from drivers.modbus import FrameError, ModbusError, ModbusExceptionResponse
from drivers.planner import ReadBlock, plan_reads
from drivers.profile import profile_registers
from drivers.transport import LinkError, Transport, TransportTimeout
from edge_agent.config.model import Device, PollPolicy
from edge_agent.core.plausibility import bounds as plausible_bounds
from edge_agent.core.plausibility import judged, outside
from edge_agent.runtime.thread import StepThread
from protocol.clock import Clock
from protocol.model import Sample, Status

log = logging.getLogger("quantrac.edge_agent.poller")

Sink = Callable[[str, list[Sample]], None]



@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """What ``quantrac status`` shows about a device (a snapshot; times are wall clock)."""

    device: str
    bus: str
    unit: int
    last_good: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    consecutive_failures: int = 0
    polls_ok: int = 0
    polls_failed: int = 0


def _kind(exc: ModbusError) -> str:
    if isinstance(exc, TransportTimeout):
        return "timeout"
    if isinstance(exc, ModbusExceptionResponse):
        return f"exception_{exc.code:02d}"
    if isinstance(exc, LinkError):
        return "link"
    if isinstance(exc, FrameError):
        return "bad_frame"
    return "error"


class DevicePoller:
    """Polls one device: its planned blocks, decoding, health and state-change logging.

    Not thread-safe by itself: one bus worker (or one ``diag`` command) drives it.
    """

    def __init__(self, device: Device, bus: str, clock: Clock,
                 policy: PollPolicy = PollPolicy()) -> None:
        self.device = device
        self.bus = bus
        self.clock = clock
        self.policy = policy
        profile = device.profile
        names = device.channel_names
        self.blocks: list[ReadBlock] = plan_reads(profile_registers(profile, names),
                                                  max_count=profile.max_read)
        # which blocks each channel needs (value words, its status, the device status)
        self._needs: dict[str, tuple[int, ...]] = {}
        for name in names:
            regs = profile_registers(profile, [name])
            self._needs[name] = tuple(
                i for i, b in enumerate(self.blocks)
                if any(fn == b.function and addr in b.registers() for fn, addr in regs)
            )
        self._names = names
        self._keys = [[(b.function, a) for a in b.registers()] for b in self.blocks]
        # only floats are judged by the implausible-value guard
        self._floats = {ch.name: ch for ch in (profile.channel(n) for n in names)
                        if judged(ch)}
        self._bounds = {name: plausible_bounds(ch) for name, ch in self._floats.items()}
        # health, kept as plain attributes (cheap to update per poll), snapshotted on demand
        self._last_good: float | None = None
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._failures = 0
        self._polls_ok = 0
        self._polls_failed = 0
        self._failing: str | None = None  # kind of the current failure, None when healthy
        # Every kind seen since the device last answered in full. A late answer makes the
        # failures of one episode alternate (timeout, then the stale bytes as a bad frame,
        # then timeout again); warning on each alternation would flood the journal, so a
        # kind is warned about once per episode and repeats go to debug.
        self._episode_kinds: set[str] = set()
        self._failing_since = 0.0
        self._implausible: set[str] = set()  # channels whose last value was implausible

    @property
    def health(self) -> DeviceHealth:
        return DeviceHealth(self.device.name, self.bus, self.device.unit, self._last_good,
                            self._last_error, self._last_error_at, self._failures,
                            self._polls_ok, self._polls_failed)

    @property
    def failing(self) -> bool:
        """True from a failed poll until the next good one."""
        return self._failing is not None

    def next_delay(self) -> float:
        """Seconds until the next poll: the interval, stretched while the device fails."""
        n = self._failures
        interval = self.device.interval
        if n == 0:
            return interval
        return min(interval * self.policy.backoff_factor ** n,
                   max(self.policy.backoff_max, interval))

    def poll(self, transport: Transport) -> list[Sample]:
        """Read every block once; one Sample per channel, OFFLINE where a block failed."""
        dev = self.device
        image: dict[tuple[int, int], int] = {}
        arrived: dict[int, float] = {}
        failure: tuple[ReadBlock, ModbusError] | None = None
        failed_at = 0.0
        tries = 1 + (self.policy.retries if self._failing is None else 0)
        for i, block in enumerate(self.blocks):
            for attempt in range(tries):
                try:
                    words = transport.read_registers(dev.unit, block.function, block.address,
                                                     block.count, self.policy.timeout)
                except (TransportTimeout, FrameError) as exc:
                    if attempt + 1 < tries:
                        continue
                    failure, failed_at = (block, exc), self.clock()
                except ModbusError as exc:  # an exception answer or a dead link: no retry
                    failure, failed_at = (block, exc), self.clock()
                else:
                    arrived[i] = self.clock()
                    image.update(zip(self._keys[i], words, strict=True))
                break
            if failure and isinstance(failure[1], TransportTimeout | LinkError):
                break  # a silent unit or a dead line: do not spend a timeout per block
        samples = self._decode(image, arrived, failed_at)
        self._account(failure, failed_at, arrived)
        return samples

    def _decode(self, image: dict[tuple[int, int], int], arrived: dict[int, float],
                failed_at: float) -> list[Sample]:
        profile = self.device.profile
        if len(self.blocks) == 1 and arrived:  # the common case: one read, one instant
            return self._guard(decode_samples(profile, image, arrived[0], self._names))
        by_time: dict[float, list[str]] = {}
        for name, needs in self._needs.items():
            if all(i in arrived for i in needs):
                t = max((arrived[i] for i in needs), default=failed_at)
            else:
                t = failed_at
            by_time.setdefault(t, []).append(name)
        samples: dict[str, Sample] = {}
        for t, names in by_time.items():
            for s in decode_samples(profile, image, t, names):
                samples[s.channel] = s
        return self._guard([samples[name] for name in self._names])

    def _guard(self, samples: list[Sample]) -> list[Sample]:
        if not self._floats:
            return samples
        out = []
        for s in samples:
            bounds = self._bounds.get(s.channel)
            if bounds is None or s.status in (Status.OFFLINE, Status.FAULT) or not outside(
                    bounds, s.value):
                if self._implausible:
                    self._implausible.discard(s.channel)
                out.append(s)
                continue
            ch = self._floats[s.channel]
            if s.channel not in self._implausible:
                self._implausible.add(s.channel)
                log.warning("implausible_value", extra={
                    "device": self.device.name, "bus": self.bus, "unit": self.device.unit,
                    "channel": s.channel, "register": ch.address, "value": s.value,
                    "range": f"{ch.lo}..{ch.hi}", "reason": "far outside the usual range; "
                    "check the word order"})
            out.append(Sample(s.channel, s.t, math.nan, Status.FAULT))
        return out

    def _account(self, failure: tuple[ReadBlock, ModbusError] | None, failed_at: float,
                 arrived: dict[int, float]) -> None:
        dev = self.device
        if arrived:
            self._last_good = max(arrived.values())
        if failure is None:
            if self._failing is not None:
                log.info("device_recovered", extra={
                    "device": dev.name, "bus": self.bus, "unit": dev.unit,
                    "failures": self._failures,
                    "down_for": round(max(arrived.values()) - self._failing_since, 3),
                })
                self._failing = None
                self._episode_kinds.clear()
            self._failures = 0
            self._polls_ok += 1
            return
        block, exc = failure
        kind = _kind(exc)
        level = logging.DEBUG if kind in self._episode_kinds else logging.WARNING
        self._episode_kinds.add(kind)
        log.log(level, "poll_failed", extra={
            "device": dev.name, "bus": self.bus, "unit": dev.unit, "function": block.function,
            "register": block.address, "count": block.count, "kind": kind, "reason": str(exc),
            "failures": self._failures + 1,
        })
        if self._failing is None:
            self._failing_since = failed_at
        self._failing = kind
        self._last_error = f"{kind}: {exc}"
        self._last_error_at = failed_at
        self._failures += 1
        self._polls_failed += 1


@dataclass(frozen=True, slots=True)
class Bus:
    """A transport and the devices on it; one worker thread serves it."""

    transport: Transport
    devices: tuple[Device, ...]


class BusWorker:
    """Polls the devices of one bus in due-time order, one transaction at a time.

    Two schedules share the bus. The *due* schedule is every device's interval, stretched by
    the back-off while it fails (:meth:`DevicePoller.next_delay`); it bounds what a dead unit
    costs a busy bus: one timeout per backed-off poll. Alone, though, it makes recovery as
    slow as the back-off is long: with ``backoff_max`` at 60 s an analyser that answers again
    waited up to a minute to be asked, and that minute of its data was lost per fault,
    where peer gateways poll it again within a second or so.

    So a failing device is also *probed* when the bus is idle: no poll is due, the device's
    probe slot has come (one interval after its last attempt, so never more often than its
    interval asks), and the whole probe fits before the earliest poll due on the bus. What a
    probe costs is the longer of the timeout and the device's last poll as measured here (a
    silent unit's poll is its timeout plus the turnaround pause), so a probe that gets no
    answer still ends before an answering unit is due: it takes only time nobody wanted. A
    probe is an ordinary poll (samples, health, logs); if it fails, the device keeps its
    backed-off due time; if it answers, the device is back on its interval. On a bus without
    slack (the answering units' polls leave no gap as long as a timeout) nothing is probed,
    and the back-off alone decides, as before. A bus with one device (a TCP endpoint of its
    own) always has slack, so its failing device is tried once per interval: that costs no
    other device anything. Right after a healthy device's first failure its measured poll
    includes the retry (two timeouts), so probing starts once a backed-off poll has shown
    what one failed attempt costs.
    """

    def __init__(self, bus: Bus, sink: Sink, clock: Clock, policy: PollPolicy = PollPolicy(),
                 monotonic: Clock = time.monotonic) -> None:
        self.transport = bus.transport
        self.sink = sink
        self.policy = policy
        self.monotonic = monotonic
        self.pollers = [DevicePoller(d, bus.transport.name, clock, policy) for d in bus.devices]
        # the schedule (index into pollers -> monotonic time), set afresh by start()
        self._due: dict[int, float] = {}
        self._probe_at: dict[int, float] = {}  # a failing device's earliest next probe
        self._cost: dict[int, float] = {}  # how long each device's last poll took
        self._thread = StepThread(f"bus {self.transport.name}", self._step, log=log,
                                  error_event="bus_worker_error", finish=self.transport.close,
                                  finish_error_event="bus_close_failed")
        # run on this thread after each poll of a device (edge_agent.poll.backfill)
        self.after_poll: Callable[[DevicePoller, Transport], None] | None = None

    def start(self) -> None:
        start = self.monotonic()
        self._due = dict.fromkeys(range(len(self.pollers)), start)
        self._probe_at = dict.fromkeys(self._due, start)
        self._cost = dict.fromkeys(self._due, 0.0)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the worker to stop after its current transaction; does not wait."""
        self._thread.request_stop()

    def stop(self, join_timeout: float | None = None) -> None:
        self._thread.stop(join_timeout)

    def _step(self) -> None:
        """One turn: the poll that is due, or a probe that fits the idle time, or a wait."""
        due, probe_at, cost = self._due, self._probe_at, self._cost
        if not due:  # a bus without devices: nothing to do but wait for the stop
            self._thread.wait(3600.0)
            return
        i = min(due, key=due.__getitem__)
        now = self.monotonic()
        probe = False
        if due[i] > now:
            j = self._probe_candidate(now, due, probe_at, cost)
            if j is None:
                later = [probe_at[k] for k, p in enumerate(self.pollers)
                         if p.failing and now < probe_at[k] < due[i]]
                self._thread.wait(min(later, default=due[i]) - now)
                return
            i, probe = j, True
        poller = self.pollers[i]
        began = now
        try:
            samples = poller.poll(self.transport)
            self.sink(poller.device.name, samples)
            if self.after_poll is not None:
                self.after_poll(poller, self.transport)
        except Exception:  # a bug must not silently kill the bus: log, keep polling
            log.exception("poller_error", extra={"device": poller.device.name})
        now = self.monotonic()
        cost[i] = now - began
        probe_at[i] = began + poller.device.interval
        if not probe:
            # keep the cadence, but never burst to catch up after a stall
            due[i] = max(due[i] + poller.next_delay(), now)
        elif not poller.failing:  # the probe found it back: its interval again
            due[i] = max(began + poller.device.interval, now)

    def _probe_candidate(self, now: float, due: dict[int, float], probe_at: dict[int, float],
                         cost: dict[int, float]) -> int | None:
        """The failing device to probe now, if its probe fits the bus's idle time."""
        best: int | None = None
        for j, p in enumerate(self.pollers):
            if not p.failing or probe_at[j] > now:
                continue
            need = max(cost[j], self.policy.timeout)
            if now + need > min((t for k, t in due.items() if k != j), default=math.inf):
                continue
            if best is None or probe_at[j] < probe_at[best]:
                best = j
        return best


class Poller:
    """Every bus of a station, each polled by its own worker thread."""

    def __init__(self, buses: Sequence[Bus], sink: Sink, clock: Clock,
                 policy: PollPolicy = PollPolicy(), monotonic: Clock = time.monotonic) -> None:
        self.workers = [BusWorker(b, sink, clock, policy, monotonic) for b in buses]

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def stop(self, join_timeout: float | None = None) -> None:
        for w in self.workers:  # ask all first: the wait is the slowest bus's, not the sum
            w.request_stop()
        for w in self.workers:
            w.stop(join_timeout)

    def transport(self, name: str) -> Transport | None:
        """The open transport of the bus called ``name`` (its port, or host:port), if polled."""
        return next((w.transport for w in self.workers if w.transport.name == name), None)

    def health(self) -> list[DeviceHealth]:
        return [p.health for w in self.workers for p in w.pollers]

    def __enter__(self) -> Poller:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def queue_sink(loop: asyncio.AbstractEventLoop,
               queue: asyncio.Queue[tuple[str, list[Sample]]]) -> Sink:
    """A sink for the asyncio daemon: each device's samples land on ``queue`` in the loop."""

    def sink(device: str, samples: list[Sample]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (device, samples))

    return sink
