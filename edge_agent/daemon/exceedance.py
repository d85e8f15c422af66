"""The daemon's side of exceedances: count them, start the sampler, say so in the status.

The pipeline flags a record over its limit (``EXCEEDANCE``); the records pass through
:meth:`Exceedances.judge` before they are stored, which

* counts them (``quantrac status``: how many since start, the last one with its limit);
* decides a sampler start with the record (``edge_agent.core.sampler_policy``: cooldown,
  daily cap) and, when it starts, flags that record ``SAMPLER_TRIGGERED``, so the start is
  reported with the record that caused it, at the station and at the centre (the uplink
  sends both flags ahead of its backlog), and logs ``sampler_start`` with the record;
* hands the Modbus part to the sampler's thread (``edge_agent.poll.sampler``), which never
  blocks the loop or the pollers.

``quantrac sampler trigger`` (control op ``sampler_trigger``) goes through the same policy:
a person's start also counts toward the cap and the cooldown, and is refused with the reason
when either says no. It is reported to the centre the way an automatic start is, with a
record: no record caused it, so the first record judged after it whose window ends after the
start, of a channel the sampler is for (its ``channels``, else the limited ones, else any),
is flagged ``SAMPLER_TRIGGERED`` without ``EXCEEDANCE`` (a start on command, not on a limit).
That is the window the start fell in (the shortest one closes first), and the uplink sends it
ahead of the backlog like an exceedance. A start whose record is not made before the agent
stops is only in the log (``sampler_start`` with ``by = command``): the pending flag is not
kept across a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from edge_agent.config.model import StationConfig
from edge_agent.config.sampler import SamplerSettings
from edge_agent.core.sampler_policy import SamplerPolicy
from edge_agent.poll.sampler import SamplerBus, SamplerWorker
from protocol.clock import Clock
from protocol.model import Record, RecordFlag

log = logging.getLogger("quantrac.edge_agent.exceedance")


class Exceedances:
    def __init__(self, cfg: StationConfig, utc_offset_s: int, clock: Clock) -> None:
        self.limits = {(lim.channel, lim.window): lim for lim in cfg.limits}
        self.settings: SamplerSettings | None = cfg.sampler
        self.clock = clock
        self.count = 0
        self.last: dict[str, Any] | None = None
        self.policy = (SamplerPolicy(cfg.sampler.cooldown_s, cfg.sampler.daily_cap,
                                     utc_offset_s) if cfg.sampler else None)
        self.worker: SamplerWorker | None = None
        self.refused = 0  # automatic starts the policy said no to
        self.commanded: list[float] = []  # command starts not yet flagged on a record

    # ---------------------------------------------------------------- the sampler thread

    def start_sampler(self, bus: Callable[[], SamplerBus | None]) -> None:
        """Start the sampler's thread; ``bus`` gives the open transport of its bus."""
        if self.settings is not None and self.worker is None:
            self.worker = SamplerWorker(self.settings, _Late(bus), self.clock)
            self.worker.start_thread()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def reconfigure(self, cfg: StationConfig, utc_offset_s: int) -> None:
        """A reloaded config: its limits from now on; a changed ``[sampler]`` stops the
        sampler's thread (the daemon starts the new one with the poller). The starts made so
        far are kept, so a reload is no way around the cooldown or the daily cap."""
        self.limits = {(lim.channel, lim.window): lim for lim in cfg.limits}
        if cfg.sampler == self.settings:
            return
        self.stop()
        self.worker = None
        starts = self.policy.starts if self.policy else []
        self.settings = cfg.sampler
        self.policy = (SamplerPolicy(cfg.sampler.cooldown_s, cfg.sampler.daily_cap,
                                     utc_offset_s, list(starts)) if cfg.sampler else None)

    # ---------------------------------------------------------------- records

    def judge(self, records: Iterable[Record]) -> list[Record]:
        """``records`` as they are to be stored: an exceedance that starts the sampler is
        flagged ``SAMPLER_TRIGGERED``."""
        out = []
        for rec in records:
            if rec.flags & RecordFlag.EXCEEDANCE:
                rec = self._exceeded(rec)
            if self.commanded and not rec.flags & RecordFlag.SAMPLER_TRIGGERED:
                rec = self._commanded(rec)
            out.append(rec)
        return out

    def _sampler_channels(self) -> set[str] | None:
        """Whose records a command start is reported with; None: any channel's."""
        if self.settings is not None and self.settings.channels:
            return set(self.settings.channels)
        return {channel for channel, _ in self.limits} or None

    def _commanded(self, rec: Record) -> Record:
        channels = self._sampler_channels()
        at = self.commanded[0]
        if rec.end <= at or (channels is not None and rec.channel not in channels):
            return rec
        self.commanded.pop(0)
        log.warning("sampler_start_reported", extra={
            "by": "command", "at": at, "channel": rec.channel, "window_start": rec.start,
            "width": rec.end - rec.start})
        return replace(rec, flags=rec.flags | RecordFlag.SAMPLER_TRIGGERED)

    def _exceeded(self, rec: Record) -> Record:
        limit = self.limits.get((rec.channel, rec.end - rec.start))
        self.count += 1
        self.last = {"channel": rec.channel, "window_start": rec.start,
                     "width": rec.end - rec.start, "mean": rec.mean, "unit": rec.unit,
                     "limit": limit.text() if limit else "?",
                     "source": limit.source if limit else "?"}
        s = self.settings
        if s is None or self.policy is None or (s.channels and rec.channel not in s.channels):
            return rec
        why = {"by": "exceedance", **self.last}
        refusal = self.policy.start(self.clock())
        if refusal is not None:
            self.refused += 1
            log.info("sampler_not_started", extra={**why, "reason": refusal})
            return rec
        log.warning("sampler_start", extra=why)
        if self.worker is not None:
            self.worker.start(why)
        return replace(rec, flags=rec.flags | RecordFlag.SAMPLER_TRIGGERED)

    def command(self) -> dict[str, Any]:
        """``quantrac sampler trigger``: the answer for the control socket."""
        if self.settings is None or self.policy is None or self.worker is None:
            return {"ok": False, "error": "no [sampler] in the station config"}
        refusal = self.policy.start(self.clock())
        if refusal is not None:
            return {"ok": False, "error": f"sampler not started: {refusal}"}
        why = {"by": "command"}
        log.warning("sampler_start", extra=why)
        self.worker.start(why)
        self.commanded.append(self.clock())
        return {"ok": True, "started": True, "starts_today": self.policy.today(self.clock()),
                "daily_cap": self.settings.daily_cap}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.limits:  # a station without [[limit]] has no exceedance line to show
            out["exceedances"] = {"count": self.count, "last": self.last}
        if self.settings is not None and self.policy is not None:
            now = self.clock()
            out["sampler"] = {
                **(self.worker.status() if self.worker else {}),
                "starts_today": self.policy.today(now), "daily_cap": self.settings.daily_cap,
                "refused": self.refused, "next_allowed": self.policy.refusal(now)}
        return out


class _Late:
    """The sampler's bus, looked up at each transaction: a config reload reopens the poller's
    transports, and the sampler must use the one open now, not a closed one."""

    def __init__(self, bus: Callable[[], SamplerBus | None]) -> None:
        self._bus = bus

    def _get(self) -> SamplerBus:
        bus = self._bus()
        if bus is None:
            raise OSError("its bus is not open")
        return bus

    def read_bits(self, unit: int, function: int, address: int, count: int,
                  timeout: float) -> list[bool]:
        return self._get().read_bits(unit, function, address, count, timeout)

    def write_coil(self, unit: int, address: int, on: bool, timeout: float) -> None:
        self._get().write_coil(unit, address, on, timeout)

    def write_register(self, unit: int, address: int, value: int, timeout: float) -> None:
        self._get().write_register(unit, address, value, timeout)
