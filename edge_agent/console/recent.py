"""The last hour of every channel for the console's sparklines, from the outbox's records.

The agent's status carries each channel's last value only, and a console started a minute ago
has seen a minute; a technician who opens it wants the hour before. The records the agent has
already averaged and stored *are* that hour, and they survive an agent restart, so the answer
is built from them with the read ``quantrac history`` makes (:class:`buffer.outbox_read.
OutboxReader`: read-only, each record checked against its checksum, quarantined ones left
out), never with SQL of its own. Per channel the shortest window width stored: the most points
(an hour of 5-minute records is 12, of hourly ones 1). The answer is bounded
(``MAX_POINTS`` a channel, means of consecutive records beyond that) so a station with 1-s
windows cannot make the control socket send megabytes.

The minutes since a channel's last record closed (a 5-minute window still open, or a station
with hourly windows only) are in no record yet; the agent also has its raw samples (the
store's, flushed every second or so), so it passes ``samples`` and each channel gets ``live``:
means of those samples after its last record, in steps of the sparkline's resolution, at most
the last ``LIVE_S`` (an hour of 1-s samples of 30 channels is 100 000 rows, too many to read
for a console once a minute). The console reading the file itself gets the records only (the
read-only reader has no samples query), and adds what it sees live.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from buffer.outbox_read import NotAnOutboxError, OutboxReader
from protocol.model import Sample, Status
from protocol.record_filter import RecordFilter

#: the longest span asked for: the sparkline's hour, with room to spare, never "all records"
MAX_SECONDS = 24 * 3600.0
#: points a channel at most: more than a sparkline has cells at any terminal width
MAX_POINTS = 120
#: the raw samples read at most: the last quarter of an hour
LIVE_S = 900.0


def recent(outbox: Path, now: float, seconds: float,
           samples: Callable[[float, float], Sequence[Sample]] | None = None
           ) -> dict[str, Any]:
    """The op ``recent`` answer for the ``seconds`` before ``now``: ``{"ok": true, "seconds",
    "channels": {symbol: {"window_s", "points": [[start, mean or None], ...], "live"?}},
    "left_out"}`` (``left_out``: records whose checksum fails or that were quarantined). An
    invalid window's mean is None: it is not a value to draw. With ``samples`` (``t0, t1 ->``
    the raw samples in ``[t0, t1)``: ``buffer.Store.samples_between``), ``live`` is
    ``{"window_s", "points"}`` of the samples after the channel's last record. No outbox file
    yet: no channels. A ValueError for a span that is not a positive number of seconds up to
    ``MAX_SECONDS``."""
    if not (isinstance(seconds, int | float) and 0 < seconds <= MAX_SECONDS):
        raise ValueError(f"seconds: a span of 1..{MAX_SECONDS:.0f} s, not {seconds!r}")
    if not outbox.is_file():
        return {"ok": True, "seconds": seconds, "channels": {}, "left_out": 0}
    try:
        with OutboxReader(outbox) as reader:
            selected = reader.select(RecordFilter(t0=now - seconds))
    except NotAnOutboxError as exc:
        return {"ok": False, "error": str(exc)}
    shortest: dict[str, int] = {}
    for r in selected.records:
        width = r.record.end - r.record.start
        shortest[r.record.channel] = min(width, shortest.get(r.record.channel, width))
    series: dict[str, list[tuple[float, float | None]]] = {}
    for r in selected.records:  # by start, as the reader returns them
        rec = r.record
        if rec.end - rec.start == shortest[rec.channel]:
            mean = rec.mean if rec.valid and math.isfinite(rec.mean) else None
            series.setdefault(rec.channel, []).append((float(rec.start), mean))
    channels: dict[str, dict[str, Any]] = {}
    for channel, points in series.items():
        width = shortest[channel]
        step = max(width, seconds / MAX_POINTS)
        if step > width:  # more points than a sparkline needs: means of consecutive ones
            points = _thinned(points, now - seconds, step)
        channels[channel] = {"window_s": step,
                             "points": [[t, v] for t, v in points]}
    if samples is not None:
        ends: dict[str, float] = {}
        for r in selected.records:
            ends[r.record.channel] = max(float(r.record.end), ends.get(r.record.channel, 0.0))
        step = seconds / MAX_POINTS
        live: dict[str, list[tuple[float, float | None]]] = {}
        for s in samples(now - min(seconds, LIVE_S), now + 1):
            if s.t >= ends.get(s.channel, -math.inf):
                ok = s.status is Status.MEASURING and math.isfinite(s.value)
                live.setdefault(s.channel, []).append((s.t, s.value if ok else None))
        for channel, points in live.items():
            entry = channels.setdefault(channel, {"window_s": step, "points": []})
            entry["live"] = {"window_s": step, "points": [
                [t, v] for t, v in _thinned(points, now - seconds, step)]}
    return {"ok": True, "seconds": seconds, "channels": channels,
            "left_out": len(selected.unsound)}


def _thinned(points: list[tuple[float, float | None]], start: float, step: float
             ) -> list[tuple[float, float | None]]:
    """``points`` as one per ``step`` seconds from ``start``: the mean of the values in it
    (None where every one was None)."""
    buckets: dict[int, list[float]] = {}
    for t, v in points:
        cell = buckets.setdefault(int((t - start) // step), [])
        if v is not None:
            cell.append(v)
    return [(start + i * step, math.fsum(vs) / len(vs) if vs else None)
            for i, vs in sorted(buckets.items())]
