"""Where the console's data comes from, on background threads so keys never wait on a bus.

When the agent runs, everything goes through its control socket
(:func:`edge_agent.console.control_client.request`): ``status`` every refresh, and every
register read (the read form, the word-order check, the scan) as op ``read``, which the
agent does on its own open bus between its polls. The console never opens a port the agent
holds: two masters on one RS-485 line garble each other, and the agent's port lock would
refuse it anyway. When the agent does not answer, the console says so (a banner) and opens
the ports itself, one round at a time, closing them after each round so an agent that comes
back can take its port; the status document is then built from the console's own polls
(:class:`edge_agent.poll.poller.DevicePoller`, the agent's per-device logic), so the pages
look the same. Every refresh asks the agent again: a restarted agent is found within one.

A scan is the agent's own (op ``scan``, with ``scan_progress`` for the progress line) when it
runs, else :func:`edge_agent.console.diag.scan` on the port; either way it is compared with
the config by :func:`edge_agent.console.diag.compare_with_config`, as ``diag scan`` is. A
read is op ``read`` through :class:`AgentBus`, or on the port. The sparklines' hour is
two parts: the outbox's records of the last hour (op ``recent`` when the agent runs, else
:func:`edge_agent.console.recent.recent` on the file if this account may read it; asked again
every ``RECENT_S``, as records close) and what the console has seen since it started (the
status carries each channel's last value only), which covers the minutes since the last
record closed.

Two worker threads: one refreshes (status, events, word-order checks), one runs what a key
asked for (scan, read, network tests), so a 10-second scan does not freeze the values.
:meth:`Source.snapshot` hands the UI a copy under the lock.
"""

from __future__ import annotations

import copy
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from buffer import OUTBOX_NAME
from drivers.modbus import FrameError, ModbusError, ModbusExceptionResponse
from drivers.profile import builtin_profile, builtin_profile_names
from drivers.transport import LinkError, TransportTimeout
from edge_agent.config.model import BusConfig, Device, StationConfig
from edge_agent.console.control_client import ControlError, request
from edge_agent.console.diag import (
    Configured,
    ScanHit,
    channel_table,
    compare_with_config,
    exception_hint,
    hit_from_dict,
    pair_table,
    scan,
    scan_report,
)
from edge_agent.console.recent import recent
from edge_agent.console.screen.diagnose import word_order_verdict
from edge_agent.console.screen.events import read_events
from edge_agent.console.screen.keys import Form
from edge_agent.console.screen.network import run_checks
from edge_agent.console.screen.text import clean, unwrap
from edge_agent.console.screen.view import Buses, View
from edge_agent.poll.build import open_transport
from edge_agent.poll.poller import DevicePoller

log = logging.getLogger("quantrac.edge_agent.console")

REFRESH_S = 1.0  # a status request is cheap for the agent; the screen follows within a second
STATUS_TIMEOUT_S = 5.0
EVENTS_S = 5.0
WORD_ORDER_S = 10.0
HOUR = 3600.0
RECENT_S = 60.0  # the shortest windows stored are a minute or more: nothing new sooner
SCAN_UNITS = range(1, 33)  # the addresses analysers ship with and technicians set
SCAN_TIMEOUT = 0.1  # an RTU answer of ~20 registers takes 25 ms at 9600 baud
READ_TIMEOUT = 1.0
# how long past a read's own timeout the agent may take to answer: its event loop can be busy
# for seconds (the first window's averaging kernels compile), and a read that gave up early
# would be taken for a silent unit
AGENT_SLACK_S = 30.0
_EXCEPTION = re.compile(r"exception (\d+)")


def where(bus: BusConfig) -> str:
    """A bus as the technician knows it: its serial port and speed, or host:port."""
    if bus.serial is not None:
        s = bus.serial
        return f"{s.port} {s.baud} {s.parity}{s.stopbits}"
    return f"{bus.host}:{bus.tcp_port}"


class AgentBus:
    """A :class:`drivers.transport.Transport` whose reads the running agent does (op
    ``read``), so the console's reads go one way whoever owns the port. The agent answers a
    failed read with its message; the kind is recovered from it (a timeout, a Modbus
    exception and its code, a bus it does not poll, anything else a bad frame: someone
    answered)."""

    def __init__(self, socket: Path, bus: str) -> None:
        self.socket = socket
        self.bus = bus

    @property
    def name(self) -> str:
        return f"{self.bus} (through the agent)"

    def read_registers(self, unit: int, function: int, address: int, count: int,
                       timeout: float) -> list[int]:
        try:
            answer = request(self.socket, {"op": "read", "bus": self.bus, "unit": unit,
                                           "function": function, "address": address,
                                           "count": count, "timeout": timeout},
                             timeout=timeout + AGENT_SLACK_S)
        except ControlError as exc:
            raise LinkError(f"the agent stopped answering: {exc}") from None
        if answer.get("ok"):
            return [int(w) for w in answer["words"]]
        error = str(answer.get("error"))
        if "no answer" in error:
            raise TransportTimeout(error)
        if m := _EXCEPTION.search(error):
            raise ModbusExceptionResponse(unit, function, int(m.group(1)))
        if answer.get("not_polled") or ("bus" in error and "answer" not in error):
            raise LinkError(error)  # refused: no such bus, or the agent has it closed
        raise FrameError(error)

    def close(self) -> None:
        pass


class Source:
    """The data behind the screen; :meth:`start` it, :meth:`snapshot` it, :meth:`ask` it."""

    def __init__(self, cfg: StationConfig, socket: Path, log_file: Path | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.socket = socket
        self.log_file = log_file
        self.clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._actions: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._pollers: dict[str, DevicePoller] = {}
        self._samples: dict[str, dict[str, Any]] = {}
        self._symbols = {(c.device, c.channel): c.symbol for c in cfg.channels}
        self._last_events = 0.0
        self._last_recent = -math.inf
        self._last_word_order = 0.0
        self._faults: set[tuple[Any, Any]] = set()  # (device, symbol) of the fault channels
        self.devices: dict[str, tuple[str, Device]] = {d.name: (b, d)
                                                       for b, d in cfg.poll.devices}
        buses = []
        for bus in cfg.poll.buses:
            expected = tuple(Configured(d.name, d.unit, d.profile.name)
                             for b, d in cfg.poll.devices if b == bus.name)
            buses.append(Buses(bus.name, where(bus), expected))
        self.view = View(now=clock(), station=(cfg.station.id if cfg.station else "") or "?",
                         config=str(cfg.source), buses=tuple(buses))

    # ------------------------------------------------------------------ the UI's side

    def start(self) -> None:
        for target in (self._refresh_loop, self._action_loop):
            t = threading.Thread(target=target, name=f"console-{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._actions.put(("stop", None))

    def snapshot(self) -> View:
        with self._lock:
            view = copy.copy(self.view)
            view.history = {k: list(v) for k, v in self.view.history.items()}
            view.recent = dict(self.view.recent)
            view.findings = dict(self.view.findings)
            view.scan_lines = list(self.view.scan_lines)
            view.read_lines = list(self.view.read_lines)
            view.events = list(self.view.events)
            view.network = list(self.view.network)
        view.now = self.clock()
        return view

    def ask(self, action: str, form: Form | None = None) -> None:
        """Queue what a key asked for: ``scan`` (the form's bus), ``read`` (the form),
        ``network``."""
        if action == "scan":
            with self._lock:
                name = self.view.buses[form.bus % len(self.view.buses)].name \
                    if form is not None and self.view.buses else None
                self.view.scan_bus, self.view.scan_progress = name, "queued"
                self.view.scan_lines = []
        elif action == "read":
            with self._lock:
                self.view.read_lines = ["reading..."]
        self._actions.put((action, copy.copy(form)))

    # ------------------------------------------------------------------ refreshing

    def _refresh_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # the screen says it; the next round tries again
                log.debug("console_refresh_failed", exc_info=True)
                with self._lock:
                    self.view.agent_problem = f"refresh failed: {exc}"
            self._stop.wait(REFRESH_S)

    def refresh(self) -> None:
        """One round: status (agent or own polls), history, events, word-order checks."""
        now = self.clock()
        try:
            answer = request(self.socket, {"op": "status"}, timeout=STATUS_TIMEOUT_S)
            if not answer.get("ok"):
                raise ControlError(f"the agent answered: {answer.get('error')}")
            status: dict[str, Any] = answer["status"]
            agent, problem = True, None
        except ControlError as exc:
            agent, problem = False, str(exc)
            # a socket that accepts but does not answer in time is an agent that is busy or
            # starting, one this user may not use is an agent all the same: both hold their
            # ports. Only an absent or refused socket frees them
            held = "timed out" in problem or "permission denied" in problem
            status = {} if held else self._poll_directly(now)
        with self._lock:
            self.view.agent, self.view.agent_problem, self.view.status = agent, problem, status
            if agent and status.get("station"):
                self.view.station = str(status["station"])
            for c in status.get("channels") or []:
                points = self.view.history.setdefault(str(c.get("symbol")), [])
                value = c.get("value")
                t = float(c.get("t") or now)
                if not points or points[-1][0] != t:
                    points.append((t, float(value) if isinstance(value, int | float)
                                   else math.nan))
                while points and points[0][0] < now - HOUR:
                    points.pop(0)
        if now - self._last_recent >= RECENT_S:
            self._last_recent = now
            self._recent(agent, now)
        if now - self._last_events >= EVENTS_S:
            self._last_events = now
            lines, origin = read_events(self.log_file)
            with self._lock:
                self.view.events, self.view.events_from = lines, origin
        faults = {(c.get("device"), c.get("symbol")) for c in status.get("channels") or []
                  if c.get("status") == "fault"}
        if faults != self._faults or (faults and now - self._last_word_order >= WORD_ORDER_S):
            self._faults, self._last_word_order = faults, now
            self._check_word_order(status)

    def _recent(self, agent: bool, now: float) -> None:
        """The outbox's records of the last hour: from the agent, or from the file when no
        agent runs. An agent that does not know the op (older), or a file this account may
        not read, leaves the sparklines to what the console sees."""
        try:
            if agent:
                answer = request(self.socket, {"op": "recent", "seconds": HOUR},
                                 timeout=STATUS_TIMEOUT_S)
            else:
                answer = recent(self.cfg.agent.state_dir / OUTBOX_NAME, now, HOUR)
        except (ControlError, OSError, ValueError) as exc:
            log.debug("console_recent_failed", extra={"reason": str(exc)})
            return
        if not answer.get("ok"):
            return
        spans: dict[str, list[tuple[float, float, float]]] = {}
        for symbol, series in (answer.get("channels") or {}).items():
            spans[str(symbol)] = [  # the records, then the raw samples since (the agent's)
                (float(t), float(t) + float(part.get("window_s") or 0), float(v))
                for part in (series, series.get("live") or {})
                for t, v in part.get("points") or [] if isinstance(v, int | float)]
        with self._lock:
            self.view.recent = spans

    def _poll_directly(self, now: float) -> dict[str, Any]:
        """The agent's status document, from one round of the console's own polls."""
        for bus in self.cfg.poll.buses:
            devices = [d for b, d in self.cfg.poll.devices if b == bus.name]
            if not devices:
                continue
            try:
                transport = open_transport(bus)
            except (ModbusError, OSError) as exc:
                for d in devices:
                    self._samples.pop(d.name, None)
                log.debug("console_open_failed", extra={"bus": bus.name, "reason": str(exc)})
                continue
            try:
                for d in devices:
                    poller = self._pollers.setdefault(
                        d.name, DevicePoller(d, transport.name, self.clock, self.cfg.poll.policy))
                    for s in poller.poll(transport):
                        self._samples.setdefault(d.name, {})[s.channel] = {
                            "symbol": self._symbols.get((d.name, s.channel), s.channel),
                            "device": d.name, "value": s.value,
                            "unit": d.profile.channel(s.channel).unit,
                            "status": s.status.name.lower(), "t": s.t}
            finally:
                transport.close()
        return {"station": self.view.station,
                "devices": [asdict(p.health) for p in self._pollers.values()],
                "channels": sorted((c for chans in self._samples.values()
                                    for c in chans.values()), key=lambda c: c["symbol"])}

    def _check_word_order(self, status: dict[str, Any]) -> None:
        """For every float channel the poller rejected (status fault), read its words and
        see whether the other word order would give a plausible value."""
        by_symbol = {(dev, sym): ch for (dev, ch), sym in self._symbols.items()}
        findings: dict[str, str] = {}
        for c in status.get("channels") or []:
            if c.get("status") != "fault":
                continue
            dev, sym = str(c.get("device")), str(c.get("symbol"))
            if dev not in self.devices:
                continue
            bus, device = self.devices[dev]
            name = by_symbol.get((dev, sym), sym)
            try:
                spec = device.profile.channel(name)
                words = self.read(bus, device.unit, spec.function, spec.address, spec.words)
            except (KeyError, ModbusError, OSError):
                continue
            verdict = word_order_verdict(spec, words)
            if verdict:
                findings[f"{dev}/{sym}"] = verdict
        with self._lock:
            self.view.findings = findings

    # ------------------------------------------------------------------ actions

    def read(self, bus: str, unit: int, function: int, address: int, count: int,
             timeout: float = READ_TIMEOUT) -> list[int]:
        """Registers of ``unit`` on ``bus``: by the agent when it runs, else on the port."""
        with self._lock:
            agent = self.view.agent
        if agent:
            return AgentBus(self.socket, bus).read_registers(unit, function, address, count,
                                                             timeout)
        config = next(b for b in self.cfg.poll.buses if b.name == bus)
        transport = open_transport(config)
        try:
            return transport.read_registers(unit, function, address, count, timeout)
        finally:
            transport.close()

    def _action_loop(self) -> None:
        while not self._stop.is_set():
            action, form = self._actions.get()
            try:
                if action == "scan" and form is not None:
                    self._scan(form)
                elif action == "read" and form is not None:
                    self._read_form(form)
                elif action == "network":
                    self._network()
            except Exception as exc:  # shown on the page that asked; never a traceback
                log.debug("console_action_failed", exc_info=True)
                with self._lock:
                    if action == "scan":
                        self.view.scan_progress = f"failed: {exc}"
                    elif action == "read":
                        self.view.read_lines = [f"failed: {exc}"]

    def _scan(self, form: Form) -> None:
        """Scan the form's bus: by the agent (op ``scan``, its progress asked meanwhile with
        ``scan_progress``) when it runs, else on the port; then compared with the config
        (:func:`edge_agent.console.diag.compare_with_config`, as ``diag scan`` does)."""
        if not self.cfg.poll.buses:
            return
        bus = self.cfg.poll.buses[form.bus % len(self.cfg.poll.buses)]
        with self._lock:
            agent = self.view.agent
            configured = next(b.expected for b in self.view.buses if b.name == bus.name)
        units = sorted(set(SCAN_UNITS) | {c.unit for c in configured})
        via = "through the agent" if agent else "on the port (no agent)"

        def progress(done: int, total: int, found: int) -> None:
            with self._lock:
                self.view.scan_progress = f"{done}/{total} unit ids {via}, {found} answered"

        try:
            if agent:
                hits, complete = self._scan_by_agent(bus.name, units, progress)
            else:
                transport = open_transport(bus)
                try:
                    profiles = [builtin_profile(n) for n in builtin_profile_names()]
                    hits, complete = scan(transport, units, profiles, SCAN_TIMEOUT, progress)
                finally:
                    transport.close()
        except (LinkError, ControlError) as exc:
            with self._lock:
                self.view.scan_progress = f"stopped: {exc}"
            return
        lines = compare_with_config(hits, configured, units) + scan_report(hits, complete)
        with self._lock:
            self.view.scan_progress = f"done, units {units[0]}-{units[-1]} {via}"
            self.view.scan_lines = [clean(x) for x in unwrap(lines)]

    def _scan_by_agent(self, bus: str, units: list[int],
                       progress: Callable[[int, int, int], None]) -> tuple[list[ScanHit], bool]:
        """The agent's ``scan`` (it blocks until done) on a thread of its own, while this one
        asks ``scan_progress`` on other connections."""
        answer: dict[str, Any] = {}
        failed: list[ControlError] = []

        def ask() -> None:
            try:
                answer.update(request(self.socket, {"op": "scan", "bus": bus, "units": units,
                                                    "timeout": SCAN_TIMEOUT},
                                      timeout=len(units) * (SCAN_TIMEOUT + 1) + AGENT_SLACK_S))
            except ControlError as exc:
                failed.append(exc)

        worker = threading.Thread(target=ask, name="console-scan", daemon=True)
        worker.start()
        while worker.is_alive() and not self._stop.is_set():
            worker.join(0.5)
            try:
                p = request(self.socket, {"op": "scan_progress"}, timeout=5).get("scans") or {}
            except ControlError:
                continue
            if bus in p:
                progress(int(p[bus]["done"]), int(p[bus]["total"]), int(p[bus]["found"]))
        if failed:
            raise failed[0]
        if not answer.get("ok"):
            raise ControlError(f"the agent refused the scan: {answer.get('error')}")
        return [hit_from_dict(h) for h in answer["hits"]], bool(answer.get("complete"))

    def _read_form(self, form: Form) -> None:
        numbers = form.numbers()
        if isinstance(numbers, str):
            with self._lock:
                self.view.read_lines = [numbers]
            return
        if not self.cfg.poll.buses:
            return
        unit, function, register, count = numbers
        bus = self.cfg.poll.buses[form.bus % len(self.cfg.poll.buses)].name
        head = f"unit {unit} function {function:02d} registers {register}..{register + count - 1}"
        try:
            words = self.read(bus, unit, function, register, count)
        except ModbusError as exc:
            hint = exception_hint(exc.code, function) if isinstance(
                exc, ModbusExceptionResponse) else ""
            lines = [f"{head}: {exc}{hint.replace('--function', 'function')}"]
            with self._lock:
                self.view.read_lines = [clean(x) for x in lines]
            return
        # named with the channels of the device configured at that unit, decoded its way
        channels = [spec for b, d in self.cfg.poll.devices if b == bus and d.unit == unit
                    for spec in d.profile.channels if spec.function == function]
        lines = [head, *channel_table(register, words, channels)]
        if not channels:
            lines += pair_table(register, words)
        with self._lock:
            self.view.read_lines = [clean(x) for x in lines]

    def _network(self) -> None:
        with self._lock:
            status = dict(self.view.status)
        c10 = self.cfg.circular10
        checks = run_checks(status, self.cfg.agent.state_dir,
                            (c10.host, c10.port) if c10 is not None else None)
        with self._lock:
            self.view.network = checks

