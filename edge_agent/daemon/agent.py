"""The edge agent daemon: pollers -> averaging -> outbox -> uplink, on one asyncio loop.

Threads move bytes (one per bus, see :mod:`edge_agent.poll.poller`; one per uplink, each an
:class:`~edge_agent.uplinks.thread.UplinkThread`: the MQTT uplink and, when configured, the
Circular 10 one); the event loop owns the pipeline, the store writes, the clock checks, the
control socket and the systemd notifications. A watchdog ping is sent from the loop itself,
so a loop that hangs stops pinging and systemd restarts the service.

Never crashes on a fault of the field: a silent device yields OFFLINE samples (the poller), a
dead link only delays the drain (the uplink), a full disk keeps closed records in memory and
retries (``StoreFullError``), a clock jump closes the windows and flags them. Each is logged
once when it starts and once when it ends, and shown by ``quantrac status``.

Signals: SIGTERM/SIGINT stop polling, close the open windows as PARTIAL records, flush, close
the database and exit 0. Closed records the disk has no room for at that moment are written
into the outbox's preallocated reserve file (``Store.spill``: no new block is needed, so a full
disk cannot refuse it), logged at error level (``records_spilled_at_stop``), and committed, in
order and before anything new, at the next start (``spilled_records_committed``); only what
does not fit the reserve is lost, and ``records_lost_at_stop`` says how many. A database at the
outbox path that is not an outbox is refused (``agent_refused`` naming the file, exit 1).
SIGHUP reloads the config, or keeps the old one and logs why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from buffer import OUTBOX_NAME, Store, chain
from buffer.chain import Signer
from buffer.db import StoreFullError
from buffer.store import ForeignDatabaseError
from drivers.transport import Transport
from edge_agent.averaging import configure_cache, utc_offset_for
from edge_agent.config.model import StationConfig
from edge_agent.config.reader import ConfigError, load_config
from edge_agent.console.agent_read import (
    AgentScans,
    read_on_agent_bus,
    remember,
    scan_on_agent_bus,
    watch_answer,
)
from edge_agent.console.control_client import ControlError
from edge_agent.console.recent import recent
from edge_agent.core.backfill import CURSOR_PREFIX, BackfillState
from edge_agent.core.clock import ClockWatch
from edge_agent.core.pipeline import Pipeline
from edge_agent.daemon.clock_sync import kernel_clock_synchronised
from edge_agent.daemon.control import ControlServer
from edge_agent.daemon.exceedance import Exceedances
from edge_agent.daemon.instance_lock import AlreadyRunningError, InstanceLock
from edge_agent.daemon.sdnotify import Notifier
from edge_agent.poll.build import build_buses, open_transport
from edge_agent.poll.poller import Poller, queue_sink
from edge_agent.poll.sampler import SamplerBus
from protocol.clock import Clock
from protocol.model import Record, Sample

if TYPE_CHECKING:  # the uplinks import paho and ftplib: only when configured, at start
    from edge_agent.uplinks.circular10.uplink import Circular10Uplink
    from edge_agent.uplinks.mqtt.uplink import MqttUplink
    from edge_agent.uplinks.thread import UplinkThread

log = logging.getLogger("quantrac.edge_agent.agent")

TICK_S = 1.0
MAX_HELD_RECORDS = 500_000  # records kept in memory while the disk is full (~ weeks)
#: the outbox's reserve for a stop on a full disk: ~16 000 spilled records (JSON lines)
RESERVE_BYTES = 2 * 1024 * 1024


def stored_after(store: Store, widths: Iterable[int], t: float) -> list[Record]:
    """The stored records, of the pipeline's widths, whose window ends after ``t``: the windows
    a clock set back to ``t`` reaches again (Pipeline.jump must not make them twice)."""
    out: list[Record] = []
    for width in widths:
        out += [r for _, r in store.windows(width, start_from=math.floor(t) - width + 1)
                if r.end > t]
    return out


def resume_from_store(store: Store, pipeline: Pipeline, now: float) -> None:
    """Re-feed what a crash left unfinished: raw samples and child records since the last
    emitted window of each width and channel (see Pipeline.resume).

    Only windows that started by ``now`` fence off time. A stored window starting after ``now``
    was made by a clock that ran ahead (set back since, or an RTC that was fast): fencing up to
    its end would make the agent drop every record until the clock got there, a hole the centre
    cannot see. Such windows go to the pipeline as ``ahead`` instead: the time up to them is
    measured as usual and only they are never made a second valid time."""
    emitted: dict[tuple[int, str], int] = {}
    ahead: list[Record] = []
    for width in pipeline.widths:
        for channel, end in store.last_window_ends(width, started_by=now).items():
            emitted[(width, channel)] = end
        ahead += [r for _, r in store.windows(width, start_from=math.floor(now) + 1)
                  if r.start > now]
    horizon = now - max(pipeline.widths) - 3600
    first = min(emitted.values(), default=None)
    since = horizon if first is None else max(float(first), horizon)
    samples = store.samples_between(since, now + 1) if first is not None else []
    # [[totaliser]] days and months: fenced like windows, and their readings read back to
    # the day's boundary reading (only the volumes get those: Pipeline.resume's readings)
    for width in pipeline.volume_widths:
        for channel, end in store.last_window_ends(width, started_by=now).items():
            emitted.setdefault((width, channel), end)
    lead = pipeline.volume_since(now)
    readings = store.samples_between(lead, since) \
        if lead is not None and first is not None and lead < since else []
    children: list[Record] = []
    if first is not None:
        for child in sorted({r.child_width_s for _, r in pipeline.rollups}):
            children += [rec for _, rec in store.windows(child, start_from=since - 86400)]
    if first is None and not ahead:
        return
    pipeline.resume(emitted, samples, children, ahead=ahead, now=now, readings=readings)
    log.info("resumed", extra={"samples": len(samples), "child_records": len(children),
                               "since": since, "windows_ahead": len(ahead)})


class Agent:
    """One station's daemon. ``await agent.run()`` returns the exit code."""

    def __init__(self, cfg: StationConfig, *, clock: Clock = time.time,
                 monotonic: Clock = time.monotonic, notifier: Notifier | None = None,
                 synced: Callable[[], bool | None] = kernel_clock_synchronised) -> None:
        self.cfg = cfg
        self.clock = clock
        self.monotonic = monotonic
        self.notifier = notifier or Notifier()
        self.synced_fn = synced
        self.started = clock()
        self.store: Store | None = None
        self.poller: Poller | None = None
        self.uplink: UplinkThread[MqttUplink] | None = None  # [uplink.mqtt], if configured
        self.uplink_unavailable: str | None = None  # why the MQTT uplink could not start
        self.circular10: UplinkThread[Circular10Uplink] | None = None  # [uplink.circular10]
        self.control: ControlServer | None = None
        self.queue: asyncio.Queue[tuple[str, list[Sample]]] = asyncio.Queue()
        self.watch = ClockWatch(cfg.agent.clock_jump_tolerance_s)
        self.synced: bool | None = None
        self.held: list[Record] = []  # closed records the disk had no room for yet
        self.spill_pending = False  # held starts with records of the reserve, not yet stored
        self.raw: list[Sample] = []
        # each (device, channel)'s newest sample, and the running scans: diag through the agent
        self.latest: dict[tuple[str, str], Sample] = {}
        self.scans = AgentScans()
        # field-node history cursors and the hold on closing windows (edge_agent.poll.backfill)
        self.backfill = BackfillState(cfg.averaging.grace_s, cfg.agent.backfill_horizon_s)
        self.store_problem: str | None = None
        self.reported: set[str] = set()
        self._sampler_transport: Transport | None = None  # a sampler alone on its bus
        self.ready = False
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self.pipeline = self._new_pipeline(cfg)
        # [[limit]] exceedances and the [sampler] (edge_agent.daemon.exceedance)
        self.exceedances = Exceedances(cfg, self.pipeline.utc_offset_s, clock)

    # ------------------------------------------------------------------ setup

    def _new_pipeline(self, cfg: StationConfig) -> Pipeline:
        offset = utc_offset_for(cfg.station.timezone, self.clock())
        return Pipeline(cfg, offset, cfg.agent.clock_jump_tolerance_s)

    def _open_store(self) -> Store:
        a = self.cfg.agent
        a.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        configure_cache(a.state_dir)
        store = Store(a.state_dir / OUTBOX_NAME, self.clock,
                      retention_s=a.record_retention_days * 86400.0,
                      sample_retention_s=a.sample_retention_days * 86400.0,
                      signer=self._checkpoint_signer())
        if store.moved_aside is not None:
            log.error("outbox_corrupt_moved_aside", extra={"moved_to": str(store.moved_aside)})
        store.ensure_reserve(RESERVE_BYTES)
        self._restore_spill(store)
        return store

    def _checkpoint_signer(self) -> Signer | None:
        """The station key that signs the outbox's chain checkpoints (buffer.chain); a
        station not provisioned yet stores them unsigned, and says so once."""
        from provisioning import identity
        from provisioning.errors import ProvisioningError

        try:
            ident = identity.load(self.cfg.agent.state_dir)
        except (ProvisioningError, OSError) as exc:
            log.warning("checkpoints_unsigned", extra={"reason": str(exc)})
            return None
        return Signer(ident.station_id, ident.signing_key)

    def _restore_spill(self, store: Store) -> None:
        """Commit what the last stop spilled into the reserve, before anything new (and before
        the resume reads which windows exist). A crash between that commit and the clearing
        of the reserve is why windows already stored are skipped, not stored twice."""
        everything = store.spilled()
        if not everything:
            return
        spilled = [r for r in everything if not store.query(
            'SELECT 1 FROM records WHERE channel=? AND start=? AND "end"=?',
            (r.channel, r.start, r.end))]
        try:
            seqs = store.append(spilled)
            store.clear_spill()
        except (StoreFullError, sqlite3.Error) as exc:  # still full: held, flushed later
            self.held = spilled + self.held
            self.spill_pending = True
            log.error("spilled_records_not_committed", extra={
                "records": len(spilled), "file": str(store.reserve_path), "reason": str(exc)})
            return
        log.warning("spilled_records_committed", extra={
            "records": len(spilled), "file": str(store.reserve_path),
            "seqs": f"{seqs[0]}-{seqs[-1]}" if seqs else "-"})

    def _spill_held(self) -> int:
        """At stop: what the disk would not take goes into the reserve; how many fit."""
        if not self.held or self.store is None:
            return 0
        held = self.held
        try:
            n = self.store.spill(held)
        except OSError as exc:
            n = 0
            log.error("spill_failed", extra={"file": str(self.store.reserve_path),
                                             "reason": str(exc)})
        if n:
            log.error("records_spilled_at_stop", extra={
                "records": n, "file": str(self.store.reserve_path),
                "windows": f"{held[0].start}..{held[n - 1].end}",
                "reason": self.store_problem or "not stored",
                "next": "committed in order at the next start"})
        if n < len(held):
            log.error("records_lost_at_stop", extra={
                "records": len(held) - n, "windows": f"{held[n].start}..{held[-1].end}",
                "reason": "the disk is full and the reserve holds no more"})
        return n

    def _resume(self, store: Store, pipeline: Pipeline) -> None:
        resume_from_store(store, pipeline, self.clock())

    def _start_poller(self, loop: asyncio.AbstractEventLoop) -> None:
        self.poller = Poller(build_buses(self.cfg.poll), queue_sink(loop, self.queue), self.clock,
                             self.cfg.poll.policy, self.monotonic)
        from edge_agent.poll.backfill import attach

        def deliver(device: str, samples: list[Sample], cursor: int, covered: float) -> None:
            loop.call_soon_threadsafe(self._backfilled, device, samples, cursor, covered)

        if self.store is not None and not self.backfill.cursors:
            self.backfill.restore(self.store.meta_with_prefix(CURSOR_PREFIX))
        nodes = attach(self.poller, self.backfill.cursors, deliver, self.clock,
                       self.cfg.poll.policy.timeout)
        self.backfill.watch(nodes, self.clock())
        self.backfill.grace_s = self.cfg.averaging.grace_s
        self.backfill.horizon_s = self.cfg.agent.backfill_horizon_s
        self.poller.start()
        self.reported = set()
        self.exceedances.start_sampler(self._sampler_bus)

    def _sampler_bus(self) -> SamplerBus | None:
        """The open transport of the [sampler]'s bus: the poller's when it polls that bus
        (one master per line), else one of the sampler's own, opened once."""
        s = self.cfg.sampler
        if s is None:
            return None
        bus = next((b for b in self.cfg.poll.buses if b.name == s.bus), None)
        if bus is None:
            return None
        name = bus.serial.port if bus.serial else f"{bus.host}:{bus.tcp_port}"
        transport = self.poller.transport(name) if self.poller else None
        if transport is None:
            if self._sampler_transport is None:
                self._sampler_transport = open_transport(bus)
            transport = self._sampler_transport
        return transport if isinstance(transport, SamplerBus) else None

    # ------------------------------------------------------------------ run

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        # The signals first. Starting takes seconds on a loaded card (the outbox checked and
        # migrated, what the last stop spilled committed, the open windows read back), and a
        # SIGTERM in that time (systemd stopping a service that is starting) must be the
        # orderly stop once started, not death by the default action (exit -15) with the
        # start half done: seen under load, a SIGTERM just after the spill was committed.
        for sig, fn in ((signal.SIGTERM, self._stop.set), (signal.SIGINT, self._stop.set),
                        (signal.SIGHUP, self._reload.set)):
            loop.add_signal_handler(sig, fn)
        try:  # one agent per state dir, before anything in it is opened (instance_lock)
            instance = InstanceLock.take(cfg.agent.state_dir)
        except (AlreadyRunningError, OSError) as exc:
            log.error("agent_refused", extra={"reason": str(exc)})
            return 1
        try:
            return await self._run(loop)
        finally:
            instance.release()

    async def _run(self, loop: asyncio.AbstractEventLoop) -> int:
        cfg = self.cfg
        try:
            self.store = self._open_store()
        except (ForeignDatabaseError, sqlite3.Error, RuntimeError) as exc:
            reason = str(exc) if str(cfg.agent.state_dir) in str(exc) else \
                f"{cfg.agent.state_dir / OUTBOX_NAME}: {exc}"
            log.error("agent_refused", extra={"reason": reason})
            return 1
        self.control = ControlServer(cfg.agent.control_socket, self._handle)
        try:
            await self.control.start()
        except (ControlError, OSError) as exc:
            log.error("agent_refused", extra={"reason": str(exc)})
            self.store.close()
            return 1
        self._resume(self.store, self.pipeline)
        self._start_poller(loop)
        self._start_mqtt(cfg)
        self._start_circular10(cfg)
        log.info("agent_started", extra={
            "station": cfg.station.id, "config": str(cfg.source), "pid": os.getpid(),
            "devices": len(cfg.poll.devices), "channels": len(cfg.channels),
            "windows": ",".join(map(str, self.pipeline.widths)),
            "uplink": "mqtt" if cfg.mqtt else "none"})
        self.watch.observe(self.monotonic(), self.clock())
        consumer = asyncio.create_task(self._consume(), name="consume")
        ticker = asyncio.create_task(self._tick_loop(), name="tick")
        try:
            while not self._stop.is_set():
                reload = asyncio.create_task(self._reload.wait())
                stop = asyncio.create_task(self._stop.wait())
                await asyncio.wait({reload, stop}, return_when=asyncio.FIRST_COMPLETED)
                reload.cancel()
                stop.cancel()
                if self._reload.is_set() and not self._stop.is_set():
                    self._reload.clear()
                    await self._do_reload()
        finally:
            await self._shutdown(consumer, ticker)
        return 0

    async def _shutdown(self, consumer: asyncio.Task[None], ticker: asyncio.Task[None]) -> None:
        self.notifier.stopping()
        log.info("agent_stopping", extra={"station": self.cfg.station.id})
        ticker.cancel()
        if self.poller is not None:
            await asyncio.to_thread(self.poller.stop, 5.0)
        await asyncio.sleep(0)  # let the poller's last call_soon_threadsafe land
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        self._drain_queue()
        now = self.clock()
        closed = self.pipeline.close(now)
        self.held += self.exceedances.judge(closed)
        self._flush_records()
        spilled = self._spill_held()
        self._flush_samples()
        if self.uplink is not None:
            await asyncio.to_thread(self.uplink.stop)
        await self._stop_circular10()
        await asyncio.to_thread(self.exceedances.stop)
        if self._sampler_transport is not None:
            self._sampler_transport.close()
        if self.control is not None:
            await self.control.close()
        assert self.store is not None
        self._checkpoint(chain.STOP)
        status = self.store.status()
        self.store.close()
        (log.error if self.held else log.info)("agent_stopped", extra={
            "partial_records": len(closed), "records_not_stored": len(self.held),
            "records_spilled": spilled, "records_lost": len(self.held) - spilled,
            "unacked": status.unacked, "last_seq": status.last_seq})

    # ------------------------------------------------------------------ samples

    def _drain_queue(self) -> None:
        while not self.queue.empty():
            device, samples = self.queue.get_nowait()
            self._feed(device, samples)

    def _backfilled(self, device: str, samples: list[Sample], cursor: int,
                    covered: float) -> None:
        """A field node's logged samples at their own times (edge_agent.poll.backfill)."""
        self._feed(device, samples)
        self.backfill.delivered(device, cursor, covered)

    def _feed(self, device: str, samples: list[Sample]) -> None:
        self._check_clock()
        self.raw += self.pipeline.feed(device, samples, self.clock())
        remember(self.latest, device, samples)
        self.reported.add(device)

    async def _consume(self) -> None:
        while True:
            device, samples = await self.queue.get()
            try:
                self._feed(device, samples)
                self._drain_queue()
            except Exception:
                log.exception("pipeline_error", extra={"device": device})

    def _check_clock(self) -> None:
        jump = self.watch.observe(self.monotonic(), self.clock())
        if jump is not None:
            self._flush_samples()  # samples of the old time line go to the store first
            stored = [*self.held, *stored_after(self.store, self.pipeline.widths, jump.at_wall)] \
                if self.store is not None else list(self.held)
            self.held += self.exceedances.judge(self.pipeline.jump(jump, stored))
            self._flush_records()

    # ------------------------------------------------------------------ ticks

    async def _tick_loop(self) -> None:
        next_sync = next_flush = next_prune = next_status = 0.0
        next_ping = 0.0
        last_status = ""
        while True:
            mono = self.monotonic()
            try:
                self._check_clock()
                now = self.clock()
                if mono >= next_sync:
                    synced = self.synced_fn()
                    if synced != self.synced:
                        (log.info if synced else log.warning)(
                            "clock_sync_state", extra={"synchronised": synced})
                    self.synced = synced
                    self.pipeline.clock_state(now, synced)
                    next_sync = mono + 10.0
                self.held += self.exceedances.judge(
                    self.pipeline.tick(self.backfill.tick_now(now)))
                self._flush_records()
                if mono >= next_flush:
                    self._flush_samples()
                    next_flush = mono + self.cfg.agent.sample_flush_s
                if mono >= next_prune:
                    self._prune()
                    self.pipeline.forget_before(now - 2 * max(self.pipeline.widths) - 3600)
                    next_prune = mono + 3600.0
                if not self.ready and self._first_cycle_done():
                    self.ready = True
                    self.notifier.ready(self.summary())
                    log.info("agent_ready", extra={"devices": len(self.reported)})
                interval = self.notifier.watchdog_interval
                if interval is not None and mono >= next_ping:
                    self.notifier.watchdog()
                    next_ping = mono + interval / 3
                if mono >= next_status:
                    text = self.summary()
                    if text != last_status:
                        self.notifier.status(text)
                        last_status = text
                    next_status = mono + 5.0
            except Exception:  # never let one bad tick end the agent
                log.exception("tick_error")
            await asyncio.sleep(max(0.05, TICK_S - (self.monotonic() - mono)))

    def _first_cycle_done(self) -> bool:
        return all(d.name in self.reported for _, d in self.cfg.poll.devices)

    def _flush_records(self) -> None:
        if not self.held or self.store is None:
            return
        try:
            self.store.append(self.held)
        except StoreFullError as exc:
            self._store_trouble(f"disk full: {exc}")
            if len(self.held) > MAX_HELD_RECORDS:
                lost = len(self.held) - MAX_HELD_RECORDS
                del self.held[:lost]
                log.error("records_lost_disk_full", extra={"records": lost})
            return
        except sqlite3.Error as exc:
            self._store_trouble(f"database error: {exc}")
            return
        self.held = []
        if self.spill_pending:  # the records of the reserve are in the outbox now
            self.spill_pending = False
            try:
                self.store.clear_spill()
            except OSError as exc:
                log.error("spill_not_cleared", extra={"reason": str(exc)})
        if self.store_problem is not None:
            log.info("store_recovered", extra={"was": self.store_problem})
            self.store_problem = None

    def _store_trouble(self, what: str) -> None:
        if self.store_problem != what:
            log.error("store_write_failed", extra={"reason": what, "held": len(self.held)})
        self.store_problem = what

    def _flush_samples(self) -> None:
        meta = self.backfill.meta()
        if not (self.raw or meta) or self.store is None:
            return
        try:
            self.store.append_samples(self.raw, meta)
        except (StoreFullError, sqlite3.Error) as exc:
            # raw samples are the first thing given up: the records carry the averages
            log.warning("raw_samples_not_stored", extra={"samples": len(self.raw),
                                                         "reason": str(exc)})
        else:
            self.backfill.stored(meta)
        self.raw = []

    def _prune(self) -> None:
        assert self.store is not None
        try:
            self.store.prune()
        except sqlite3.Error as exc:
            log.warning("prune_failed", extra={"reason": str(exc)})
        self._checkpoint(chain.PERIODIC)

    def _checkpoint(self, kind: str) -> None:
        """Sign the outbox's chain head (hourly with the prune, and at stop)."""
        assert self.store is not None
        try:
            self.store.checkpoint(kind)
        except (sqlite3.Error, StoreFullError) as exc:
            log.warning("checkpoint_failed", extra={"reason": str(exc)})

    # ------------------------------------------------------------------ reload

    async def _do_reload(self) -> None:
        old = self.cfg
        try:
            new = load_config(old.source)
        except ConfigError as exc:
            log.error("config_reload_rejected", extra={
                "config": str(old.source), "problems": len(exc.problems),
                "first": str(exc.problems[0]), "keeping": "the running config"})
            for p in exc.problems:
                log.error("config_problem", extra={"problem": str(p)})
            return
        for attr in ("state_dir", "control_socket"):
            if getattr(new.agent, attr) != getattr(old.agent, attr):
                log.error("config_reload_rejected", extra={
                    "config": str(old.source), "reason": f"agent.{attr} cannot change while "
                    "running; restart the service", "keeping": "the running config"})
                return
        loop = asyncio.get_running_loop()
        if self.poller is not None:
            await asyncio.to_thread(self.poller.stop, 5.0)
        self._drain_queue()
        rebuilt = (new.channels, new.averaging, new.normalise, new.station.timezone) != \
            (old.channels, old.averaging, old.normalise, old.station.timezone)
        self.cfg = new
        if rebuilt:
            self.held += self.exceedances.judge(self.pipeline.close(self.clock()))
            self._flush_records()
            self._flush_samples()
            self.pipeline = self._new_pipeline(new)
            assert self.store is not None
            self._resume(self.store, self.pipeline)
        elif new.limits != old.limits:
            self.pipeline.set_limits(new.limits)
        if not rebuilt and new.totalisers != old.totalisers and self.store is not None:
            # today's volumes counted again under the new [[totaliser]] (a declared meter
            # replacement applies to the day it happened), from the readings stored
            self._flush_samples()
            now = self.clock()
            since = self.pipeline.volume_since(now, new.totalisers)
            self.pipeline.recount_volumes(
                new.totalisers, [] if since is None else
                self.store.samples_between(since, now + 1), now)
        await asyncio.to_thread(self.exceedances.reconfigure, new, self.pipeline.utc_offset_s)
        self._start_poller(loop)
        if new.mqtt != old.mqtt or new.station.id != old.station.id:
            if self.uplink is not None:
                await asyncio.to_thread(self.uplink.stop)
                self.uplink = None
            self._start_mqtt(new)
        if (new.circular10, new.station) != (old.circular10, old.station) \
                or new.averaging.grace_s != old.averaging.grace_s:
            await self._stop_circular10()
            self._start_circular10(new)
        log.info("config_reloaded", extra={"config": str(new.source),
                                           "windows_restarted": rebuilt,
                                           "devices": len(new.poll.devices)})

    # ------------------------------------------------------------------ uplinks

    def _start_mqtt(self, cfg: StationConfig) -> None:
        """The MQTT uplink on its own thread ([uplink.mqtt]), with the provisioned identity.

        A station not provisioned, or provisioned as another station, runs on without it:
        the records wait in the outbox and the status says why (``uplink_unavailable``)."""
        self.uplink_unavailable = None
        if cfg.mqtt is None:
            return
        from edge_agent.uplinks.mqtt.uplink import MqttUplink, UplinkSettings, mqtt_thread
        from provisioning import identity
        from provisioning.errors import ProvisioningError

        m = cfg.mqtt
        try:
            ident = identity.load(cfg.agent.state_dir)
        except (ProvisioningError, OSError) as exc:
            self.uplink_unavailable = f"not provisioned: {exc}"
        else:
            if cfg.station.id and ident.station_id != cfg.station.id:
                self.uplink_unavailable = (
                    f"{cfg.source}: station.id = {cfg.station.id!r} but the state dir is "
                    f"provisioned as {ident.station_id!r}")
        if self.uplink_unavailable is not None:
            log.error("uplink_unavailable", extra={"reason": self.uplink_unavailable})
            return
        settings = replace(UplinkSettings.from_identity(ident), window=m.window,
                           ack_timeout=m.ack_timeout_s, max_packets_per_s=m.max_packets_per_s,
                           backoff_cap=m.backoff_cap_s)
        assert self.store is not None
        gate = cfg.agent.state_dir / (OUTBOX_NAME + ".uplink")
        self.uplink = mqtt_thread(MqttUplink(settings, self.store, gate, self.clock,
                                             clock_trusted=self._clock_trusted))
        self.uplink.start()

    def _start_circular10(self, cfg: StationConfig) -> None:
        """The Circular 10 files (FTP, FTPS, SFTP), on a thread of their own."""
        if cfg.circular10 is None:
            return
        from edge_agent.uplinks.circular10.settings import Circular10Settings
        from edge_agent.uplinks.circular10.uplink import (
            SPOOL_NAME,
            Circular10Uplink,
            circular10_thread,
        )

        assert self.store is not None
        try:
            uplink = Circular10Uplink(Circular10Settings.from_config(cfg), self.store,
                                      cfg.agent.state_dir / SPOOL_NAME, self.clock)
        except OSError as exc:  # the spool cannot be made: the rest of the agent runs on
            log.error("uplink_circular10_unavailable", extra={"reason": str(exc)})
            return
        self.circular10 = circular10_thread(uplink)
        self.circular10.start()

    async def _stop_circular10(self) -> None:
        if self.circular10 is not None:
            await asyncio.to_thread(self.circular10.stop)
            self.circular10 = None

    def _uplink_status(self) -> dict[str, Any]:
        if self.uplink is not None:
            return self.uplink.status()
        if self.uplink_unavailable is not None:
            return {"state": "unavailable", "detail": self.uplink_unavailable}
        return {"state": "none", "detail": "no uplink"}

    # ------------------------------------------------------------------ status

    def summary(self) -> str:
        """The one-line STATUS= for systemd."""
        health = self.poller.health() if self.poller else []
        failing = sum(1 for h in health if h.consecutive_failures)
        backlog = self.store.status().unacked if self.store else 0
        up = self._uplink_status()["state"] if self.cfg.mqtt is not None else "no uplink"
        text = (f"{len(health) - failing}/{len(health)} devices ok, backlog {backlog}, "
                f"uplink {up}")
        if self.store_problem:
            text += f", STORE: {self.store_problem[:40]}"
        return text

    def _clock_trusted(self) -> bool:
        """Whether command age may be checked against this clock (the uplink thread asks)."""
        return self.synced is True

    def status(self) -> dict[str, Any]:
        assert self.store is not None
        out = self.store.status()
        health = self.poller.health() if self.poller else []
        jumps = self.watch.jumps
        return {
            "station": self.cfg.station.id,
            "config": str(self.cfg.source),
            "pid": os.getpid(),
            "now": self.clock(),
            "started": self.started,
            "ready": self.ready,
            "devices": [asdict(h) for h in health],
            "channels": [asdict(s) for s in sorted(self.pipeline.last.values(),
                                                   key=lambda s: s.symbol)],
            "outbox": {**asdict(out), "held_in_memory": len(self.held),
                       "problem": "; ".join(
                           [p for p in (self.store_problem, *self.store.problems()) if p])
                       or None},
            "uplink": self._uplink_status(),
            **({"uplink_circular10": self.circular10.status()} if self.circular10 else {}),
            "clock": {"synchronised": self.synced, "jumps": len(jumps),
                      "last_jump": asdict(jumps[-1]) if jumps else None},
            **self.exceedances.status(),
        }

    async def _handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        if op == "ping":
            return {"ok": True}
        if op == "status":
            return {"ok": True, "status": self.status()}
        if op == "read":  # a technician's raw read, on the agent's own bus (edge_agent.console)
            assert self.poller is not None
            return await asyncio.to_thread(read_on_agent_bus, self.cfg.poll.buses, self.poller,
                                           msg)
        if op == "scan":  # diag scan on the agent's own bus, between its polls
            assert self.poller is not None
            return await asyncio.to_thread(scan_on_agent_bus, self.cfg.poll, self.poller,
                                           self.scans, msg)
        if op == "scan_progress":
            return {"ok": True, "scans": self.scans.snapshot()}
        if op == "watch":  # the agent's own view of its devices (diag watch, the console)
            return watch_answer(self.cfg.poll, self.poller, self.latest)
        if op == "sampler_trigger":  # quantrac sampler trigger
            return self.exceedances.command()
        if op == "recent":  # the console's sparklines: the outbox's records of the last hour
            return await asyncio.to_thread(
                recent, self.cfg.agent.state_dir / OUTBOX_NAME, self.clock(),
                float(msg.get("seconds", 3600)),
                self.store.samples_between if self.store is not None else None)
        raise ValueError(f"unknown op {op!r}; expected status, read, scan, scan_progress, "
                         "watch, sampler_trigger, recent or ping")


def run(cfg: StationConfig, notifier: Notifier | None = None) -> int:
    """Run the agent until SIGTERM; the exit code."""

    async def main() -> int:
        return await Agent(cfg, notifier=notifier).run()

    return asyncio.run(main())
