"""The centre's record store: every station's records exactly once, and what is missing.

The rules are here, once; the database is a backend (``centre.store_backends``): one SQLite
file by default (``store_backends.sqlite``: what one receiver needs, and what the tests and the
demo run on), or PostgreSQL for a province's centre with several receivers
(``store_backends.postgresql``), selected by giving ``CentreStore`` a ``postgresql://`` URL
instead of a path. Both hold the record columns of ``buffer.rows``, so the centre stores a
record exactly as the station's outbox does, and both take their schema from one list of
migrations (``centre.migrations``). Every write is one transaction that excludes every other
writer of the same station (SQLite's write lock; PostgreSQL's per-station advisory lock), so
a de-duplication decision and its insert are atomic even when two receivers hold the same
packet, and ``(station, seq)`` is the records' primary key in both.

De-duplication rule (what ``ingest`` decides for a verified packet, on ``(station, seq)``):

* **stored**: some of its seqs are new: they are stored; seqs already held must carry the
  very same record (a resend after a lost ack, possibly batched differently).
* **resent**: every seq already held with identical content, but the packet's bytes are new:
  the station sealed the records again (each seal is randomised by HPKE) because our ack was
  lost or late. Normal at-least-once delivery: acknowledge again, nothing else.
* **redelivered**: byte-identical to a packet already accepted and the broker flags it as a
  redelivery (MQTT DUP): we crashed or lost the link before our PUBACK. Acknowledge again.
* **replay**: byte-identical to an accepted packet, *not* a broker redelivery. The station
  never publishes the same bytes twice (it re-seals, and uses a fresh MQTT client per
  connection so paho never retransmits), so these bytes were captured and sent again.
  Security event, no ack.
* **conflict**: a seq already held with different content: a station that reuses sequence
  numbers (restored from an old backup) or a forgery with a stolen key. Security event,
  nothing of the packet is stored, no ack.

Before that rule, each record is checked by ``record_problem`` (min <= mean <= max, n_valid
<= n_expected, finite values when valid, std >= 0, a window of at most 31 days between 2000
and 2100). A record that fails is refused, not stored, and listed in ``Ingest.refused``; the
rest of its packet goes on through the rule, and a packet with nothing plausible left is
**implausible**. The receiver records each refusal as a security event and still acknowledges
the refused seqs: sending the same record again can only be refused again, and an unacked
record would come back every ack timeout, forever (docs/protocol.md, "Refusals and acks").

Besides the records: per station the command counter (one sequence shared by all receivers,
so the station's anti-replay window sees one increasing series), the contiguous high-water
mark (every seq at or below it is held) for gap detection, the newest "current value" per
channel (a backfilled record never overwrites a newer one), and the security event log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buffer.record_select import ORDER, where
from buffer.rows import RECORD_COLUMNS, record_row, row_record
from centre import migrations
from centre.store_backends import Backend, NotACentreStoreError, StoreUnavailableError, is_dsn
from protocol.clock import Clock
from protocol.model import Record, RecordFlag
from protocol.payload import same_record
from protocol.record_filter import RecordFilter

__all__ = ["CentreStore", "NotACentreStoreError", "StoreUnavailableError", "record_problem"]

_COLS = ", ".join(RECORD_COLUMNS)
_RECORD_ROW = ("station", "seq", *RECORD_COLUMNS, "received", "packet_created")

@dataclass(frozen=True, slots=True)
class StationSummary:
    """Records held, highest seq, seqs all held up to, last arrival, security events."""

    station: str
    records: int
    last_seq: int
    contiguous: int
    last_received: float | None
    security_events: int
    exceedances: int = 0  # records flagged EXCEEDANCE (over their limit at the station)


STORED = "stored"
RESENT = "resent"
REDELIVERED = "redelivered"
REPLAYED = "replay"
CONFLICT = "conflict"
IMPLAUSIBLE = "implausible"

#: Record windows the centre accepts: from 2000-01-01 to 2100-01-01 UTC. No station streamed
#: data before 2000, and 2100 is far inside what every consumer handles (``datetime`` ends at
#: year 9999: a year-10000 record, once stored, made ``centre query`` fail for the station).
WINDOW_MIN = 946_684_800
WINDOW_MAX = 4_102_444_800
#: The longest window: the agent's longest aggregate is a (local) day; 31 days leaves room for
#: a monthly roll-up. A 4e9-second "window" is a corrupt length, not an average.
MAX_WINDOW_S = 31 * 86_400
#: How far a mean may stray outside [min, max] by float rounding (sum / n of equal values
#: can land one ulp past them); relative to the larger of |min| and |max|.
_MEAN_SLACK = 1e-9


def record_problem(rec: Record) -> str | None:
    """Why ``rec`` cannot be a true average of measurements (naming the field), or None.

    The payload decoder checks syntax and what the store can represent; this checks what the
    numbers say. A record that fails is refused, not stored: it cannot be right, and a wrong
    value in the centre's store is worse than a missing one (it is the legal record). NaN is
    "no value" and allowed in an invalid record (an offline window is all NaN); a valid record
    has finite values. Infinity is never a mean, extreme or deviation of real samples.
    """
    if not WINDOW_MIN <= rec.start < WINDOW_MAX:
        return f"start {rec.start} outside 2000-01-01..2100-01-01 UTC ({WINDOW_MIN}..{WINDOW_MAX})"
    length = rec.end - rec.start
    if not 0 < length <= MAX_WINDOW_S:
        return f"window length {length} s not in 1..{MAX_WINDOW_S}"
    if rec.end > WINDOW_MAX:
        return f"end {rec.end} after 2100-01-01 UTC ({WINDOW_MAX})"
    # A poller keeps its cadence but a late poll is not dropped, so a window can honestly hold
    # one or two samples more than width/period (a poll delayed into the next window, then the
    # next one on time). Twice the expected count plus one cannot come from jitter; it can only
    # come from a station that counts wrong or lies.
    if rec.n_valid > 2 * rec.n_expected + 1:
        return f"n_valid {rec.n_valid} above 2 x n_expected {rec.n_expected} + 1"
    values = (("mean", rec.mean), ("min", rec.min), ("max", rec.max), ("std", rec.std))
    for name, value in values:
        if math.isinf(value):
            return f"{name} {value} is infinite"
        if rec.valid and math.isnan(value):
            return f"valid record with {name} NaN"
    if rec.valid and rec.n_valid == 0:
        return "valid record with n_valid 0"
    if rec.n_valid == 0 and not math.isnan(rec.mean):
        return f"mean {rec.mean} of no valid sample (n_valid 0)"
    if rec.std < 0:
        return f"std {rec.std} negative"
    if "\x00" in rec.unit:
        # the wire allows any UTF-8 in a unit, but no station's unit holds a NUL (the uplink
        # escapes control characters) and PostgreSQL's text cannot: refused on every backend
        return "unit holds a NUL character (0x00)"
    lo, mean, hi = rec.min, rec.mean, rec.max
    if lo > hi:
        return f"min {lo} above max {hi}"
    slack = _MEAN_SLACK * max(abs(lo), abs(hi)) if not (math.isnan(lo) or math.isnan(hi)) else 0
    if mean < lo - slack:
        return f"mean {mean} below min {lo}"
    if mean > hi + slack:
        return f"mean {mean} above max {hi}"
    return None


@dataclass(frozen=True)
class Ingest:
    """What ``ingest`` decided; ``counter`` is the ack's command counter (0: send no ack)."""

    outcome: str
    new: int = 0
    known: int = 0
    counter: int = 0
    conflicts: list[int] = field(default_factory=list)
    #: ``(seq, problem)`` of each record refused by ``record_problem`` (not stored)
    refused: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class StoredRecord:
    """A record as the centre holds it."""

    station: str
    seq: int
    record: Record
    received: float
    packet_created_ms: int


#: What makes a file a centre record store (``read_only`` checks for all of them).
_TABLES = ("records", "current_values", "packets", "stations", "security_events")

#: Command counters of a station's first row in a store start at the centre's clock in
#: microseconds since the epoch. Why: the counter lives in this store, and when the store is
#: reset (moved aside as corrupt, or lost) its ``stations`` rows go with it. Counting again
#: from 1 would give acks the station has already seen numbers for, and its anti-replay
#: window refuses them (``command_rejected reason=replay``) until the new count passes the
#: old one: the outbox stops draining. Starting from the clock instead, a reset store issues
#: counters above everything issued before, as long as the old store issued fewer than one
#: command per microsecond since its own first row (acks come per packet: thousands of
#: times fewer) and the centre's clock has not gone back (it runs NTP). Only the first row
#: takes the floor; after it the counter goes up by one per command, so commands of several
#: receivers that reach the station a little out of order stay inside its window (a floor
#: taken at every command would jump by the microseconds in between and push them out).
#: The station still refuses any counter it has seen or that is below its window: a replay
#: stays a replay. u64 holds microseconds for 580 000 years.
COUNTER_FLOOR_PER_S = 1_000_000


def open_backend(location: Path | str, clock: Clock, *, read_only: bool) -> Backend:
    """The database at ``location``: a ``postgresql://`` URL, or a SQLite file's path."""
    if is_dsn(location):
        from centre.store_backends.postgresql import PostgresBackend  # psycopg only if asked

        return PostgresBackend(str(location), read_only=read_only)
    from centre.store_backends.sqlite import SqliteBackend

    return SqliteBackend(Path(location), clock, read_only=read_only)


class CentreStore:
    """The record store at ``path``: a SQLite file, or a ``postgresql://`` URL (a DSN).

    One connection, used from one thread. ``read_only``: open an existing store for reading
    only (never created, migrated or moved aside); raises ``NotACentreStoreError`` naming it
    if it is not one. Otherwise a SQLite file is checked, moved aside if corrupt, and every
    store is created or migrated to the latest schema (``centre.migrations``). A database that
    cannot be reached now raises ``StoreUnavailableError``, here and from any method.
    """

    def __init__(
        self, path: Path | str, clock: Clock = time.time, *, read_only: bool = False
    ) -> None:
        self.clock = clock
        self.db = open_backend(path, clock, read_only=read_only)
        #: the SQLite file (None for PostgreSQL); ``name`` is how messages call either
        self.path: Path | None = None if is_dsn(path) else Path(path)
        self.name = self.db.name
        self.moved_aside = self.db.moved_aside
        try:
            if read_only:
                missing = [t for t in _TABLES if t not in self.db.tables()]
                if missing:
                    raise NotACentreStoreError(
                        f"{self.name}: not a centre record store (no table {', '.join(missing)})")
            else:
                migrations.migrate(self.db, clock)
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> CentreStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- ingest ----------------------------------------------------------------------------
    def ingest(
        self,
        station: str,
        records: Sequence[tuple[int, Record]],
        digest: bytes,
        created_ms: int,
        redelivery: bool = False,
    ) -> Ingest:
        """Apply the de-duplication rule (module docstring) to one verified packet, atomically."""
        if not records:
            raise ValueError("a packet carries at least one record")
        first, last = records[0][0], records[-1][0]
        refused: list[tuple[int, str]] = []
        plausible: list[tuple[int, Record]] = []
        for seq, rec in records:
            problem = record_problem(rec)
            if problem is None:
                plausible.append((seq, rec))
            else:
                refused.append((seq, problem))
        if refused:
            # One record that cannot be true does not take its packet-mates with it: they are
            # stored, it is refused (IMPLAUSIBLE when nothing is left). Its seq still counts
            # as dealt with for the contiguous mark below and is acknowledged by the receiver.
            records = plausible
        now = self.clock()
        db, greatest = self.db, self.db.greatest
        with db.transaction(lock=_station_lock(station)):
            held = {
                int(row[0]): row_record(row[1:])
                for row in db.execute(
                    f"SELECT seq, {_COLS} FROM records WHERE station = ? AND seq BETWEEN ? AND ?",
                    (station, first, last),
                )
            }
            conflicts = [
                seq for seq, rec in records if seq in held and not same_record(held[seq], rec)
            ]
            if conflicts:
                return Ingest(CONFLICT, known=len(held), conflicts=conflicts, refused=refused)
            fresh = [(seq, rec) for seq, rec in records if seq not in held]
            if not fresh:
                seen = db.execute("SELECT 1 FROM packets WHERE digest = ?", (digest,))
                if seen and not redelivery:
                    return Ingest(REPLAYED, known=len(held), refused=refused)
                outcome = REDELIVERED if seen else RESENT if records else IMPLAUSIBLE
            else:
                outcome = STORED
                db.insert("records", _RECORD_ROW, [
                    (station, seq, *record_row(rec), now, created_ms) for seq, rec in fresh])
                self._update_current(station, fresh)
            db.execute(
                "INSERT INTO packets (digest, station, first_seq, last_seq, received) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (digest, station, first, last, now),
            )
            # A station's outbox numbers from 1, so for a station new to us everything below
            # its first packet is a gap too (its first packet may be the one that got lost).
            # One upsert (one round trip to a database server): a new station's row as if
            # made at 0 and then advanced, or the existing row advanced. Seqs reach 2**63-1,
            # so the SQL subtracts from the packet's seq (>= 0) instead of adding to a
            # stored one: PostgreSQL's BIGINT raises on overflow (SQLite turns it into REAL).
            [(counter,)] = db.execute(
                "INSERT INTO stations AS s (station, counter, contiguous, top) "
                "VALUES (?, ?, CASE WHEN ? <= 1 THEN ? ELSE 0 END, ?) "
                "ON CONFLICT (station) DO UPDATE SET counter = s.counter + 1, "
                f"top = {greatest}(s.top, excluded.top), contiguous = CASE WHEN ? - 1 <= "
                f"s.contiguous THEN {greatest}(s.contiguous, ?) ELSE s.contiguous END "
                "RETURNING counter",
                (station, self._counter_floor() + 1, first, last, last, first, last),
            )
        return Ingest(
            outcome, new=len(fresh), known=len(held), counter=int(counter), refused=refused
        )

    def _update_current(self, station: str, fresh: Sequence[tuple[int, Record]]) -> None:
        newest: dict[str, tuple[int, Record]] = {}
        for seq, rec in fresh:
            best = newest.get(rec.channel)
            if best is None or rec.start >= best[1].start:
                newest[rec.channel] = (seq, rec)
        self.db.executemany(
            'INSERT INTO current_values (station, channel, seq, start, "end", mean, valid, '
            "status, unit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            'ON CONFLICT (station, channel) DO UPDATE SET seq = excluded.seq, start = '
            'excluded.start, "end" = excluded."end", mean = excluded.mean, valid = '
            "excluded.valid, status = excluded.status, unit = excluded.unit "
            "WHERE excluded.start > current_values.start",
            [
                (station, ch, seq, rec.start, rec.end,
                 None if math.isnan(rec.mean) else rec.mean,
                 1 if rec.valid else 0, int(rec.status), rec.unit)
                for ch, (seq, rec) in newest.items()
            ],
        )  # fmt: skip

    def next_counter(self, station: str) -> int:
        """A fresh command counter for ``station`` (for commands other than acks)."""
        with self.db.transaction(lock=_station_lock(station)):
            rows = self.db.execute(
                "UPDATE stations SET counter = counter + 1 WHERE station = ? RETURNING counter",
                (station,),
            )
            if not rows:
                first = self._counter_floor() + 1
                self.db.execute(
                    "INSERT INTO stations (station, counter, contiguous, top) VALUES (?, ?, 0, 0)",
                    (station, first),
                )
                return first
        return int(rows[0][0])

    def _counter_floor(self) -> int:
        """Where a station's command counter starts in this store (``COUNTER_FLOOR_PER_S``)."""
        return int(self.clock() * COUNTER_FLOOR_PER_S)

    def probe(self) -> None:
        """Open a write transaction and end it, storing nothing.

        How a receiver whose store went away while no packet came learns that it is back: it
        proves the database is reachable (PostgreSQL reconnects here) and its write lock can
        be taken (SQLite's ``BEGIN IMMEDIATE``). It does not prove that a full disk has room
        again; only a write does, so the receiver never probes a store that failed full.
        Raises ``StoreUnavailableError``.
        """
        with self.db.transaction():
            self.db.execute("SELECT 1")

    # --- gaps ------------------------------------------------------------------------------
    def stations_behind(self) -> list[str]:
        """Stations holding records above a missing seq."""
        return [str(r[0]) for r in self.db.execute(
            "SELECT station FROM stations WHERE top > contiguous ORDER BY station")]

    def _gaps(self, station: str) -> tuple[list[tuple[int, int]], int, int]:
        """``(missing seq ranges above the contiguous mark, contiguous, top)``."""
        db = self.db
        rows = db.execute("SELECT contiguous, top FROM stations WHERE station = ?", (station,))
        if not rows or rows[0][1] <= rows[0][0]:
            return [], 0, 0
        contiguous, top = int(rows[0][0]), int(rows[0][1])
        [(lowest,)] = db.execute(
            "SELECT min(seq) FROM records WHERE station = ? AND seq > ?",
            (station, contiguous),
        )
        holes: list[tuple[int, int]] = []
        if lowest is None:
            return [], 0, 0
        if lowest > contiguous + 1:
            holes.append((contiguous + 1, int(lowest) - 1))
        holes += [
            (int(seq) + 1, int(nxt) - 1)
            for seq, nxt in db.execute(
                "SELECT seq, nxt FROM (SELECT seq, lead(seq) OVER (ORDER BY seq) AS nxt "
                "FROM records WHERE station = ? AND seq > ?) AS gaps "
                "WHERE nxt IS NOT NULL AND nxt - 1 > seq ORDER BY seq",
                (station, contiguous),
            )
        ]
        return holes, contiguous, top

    def gaps(self, station: str) -> list[tuple[int, int]]:
        """The missing seq ranges, read only (``holes`` without moving the mark): for the
        dashboard and ``centre stations``, which may hold the store read-only."""
        return self._gaps(station)[0]

    def holes(self, station: str) -> list[tuple[int, int]]:
        """The missing seq ranges above the contiguous mark; advances the mark past filled ones."""
        with self.db.transaction(lock=_station_lock(station)):
            holes, contiguous, top = self._gaps(station)
            if top <= contiguous:
                return []
            if not holes:
                mark = top
            elif holes[0][0] == contiguous + 1:
                mark = contiguous
            else:
                mark = holes[0][0] - 1
            if mark != contiguous:
                self.db.execute("UPDATE stations SET contiguous = ? WHERE station = ?",
                                (mark, station))
        return holes

    def give_up_gap(self, station: str, upto: int) -> None:
        """Stop asking for seqs up to ``upto`` (the station no longer holds them)."""
        with self.db.transaction(lock=_station_lock(station)):
            self.db.execute(
                f"UPDATE stations SET contiguous = {self.db.greatest}(contiguous, ?) "
                "WHERE station = ?",
                (upto, station),
            )

    # --- security events -------------------------------------------------------------------
    def security_event(self, station: str, reason: str, detail: str) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO security_events (t, station, reason, detail) VALUES (?, ?, ?, ?)",
                (self.clock(), station, reason, detail),
            )

    def security_events(self, station: str | None = None, last: int | None = None
                        ) -> list[tuple[float, str, str, str]]:
        """``(t, station, reason, detail)`` oldest first; only ``station``'s when given, only
        the newest ``last`` when given. Chosen in the database: a station that sends bad
        packets all day makes an event for each, and a page that shows its 50 newest must
        not read every event of every station to find them."""
        sql = "SELECT t, station, reason, detail FROM security_events"
        params: list[Any] = []
        if station is not None:
            sql += " WHERE station = ?"
            params.append(station)
        sql += " ORDER BY id DESC"
        if last is not None:
            sql += " LIMIT ?"
            params.append(last)
        return [(float(t), str(s), str(r), str(d))
                for t, s, r, d in reversed(self.db.execute(sql, params))]

    # --- reading ---------------------------------------------------------------------------
    def records(
        self, station: str, t0: float | None = None, t1: float | None = None
    ) -> list[StoredRecord]:
        """Records of ``station`` whose window starts in ``[t0, t1)``, by start."""
        return self.select(RecordFilter(station=station, t0=t0, t1=t1))

    def select(self, f: RecordFilter) -> list[StoredRecord]:
        """The records ``f`` asks for (``f.station`` required), in ``record_select.ORDER``."""
        return [
            StoredRecord(str(r[0]), int(r[1]), row_record(r[2:-2]), float(r[-2]), int(r[-1]))
            for r in self._select(f)
        ]

    def select_rows(self, f: RecordFilter) -> list[tuple[Any, ...]]:
        """``select``'s records as raw rows (``station, seq``, the ``buffer.rows`` columns,
        ``received, packet_created``): the same query, for a reader of tens of thousands that
        converts only some of them (``row_record(row[2:-2])``). A dashboard page of 30 channels
        x 7 days reads 60,000 and needs a ``Record`` only for the invalid ones."""
        return self._select(f)

    def _select(self, f: RecordFilter) -> list[tuple[Any, ...]]:
        clause, params = where(f, by_station=True)
        return self.db.execute(
            f"SELECT station, seq, {_COLS}, received, packet_created FROM records "
            f"WHERE {clause} {ORDER}", params,
        )

    def window_widths(self, station: str, t0: float, t1: float) -> list[int]:
        """The window widths (s) of ``station``'s records starting in ``[t0, t1)``, narrowest
        first: a page picks one before it selects (``select`` with ``window_s``) instead of
        reading every roll-up to throw them away."""
        clause, params = where(RecordFilter(station=station, t0=t0, t1=t1), by_station=True)
        return [int(w) for (w,) in self.db.execute(
            f'SELECT DISTINCT "end" - start AS w FROM records WHERE {clause} ORDER BY w',
            params)]

    def exceedance_counts(self, station: str, t0: float | None = None,
                          t1: float | None = None) -> dict[str, int]:
        """Per channel, the records of ``station`` starting in ``[t0, t1)`` that the station
        flagged over their limit (``RecordFlag.EXCEEDANCE``; ``summaries`` counts them over
        all time and channels). Counted in the database: a day of 10 s windows is 8,640
        records a channel, too many to read back for one number."""
        clause, params = where(RecordFilter(station=station, t0=t0, t1=t1), by_station=True)
        return {str(ch): int(n) for ch, n in self.db.execute(
            f"SELECT channel, count(*) FROM records WHERE {clause} AND (flags & ?) <> 0 "
            "GROUP BY channel", [*params, int(RecordFlag.EXCEEDANCE)])}

    def exceedances(self, station: str, channels: Sequence[str], t0: float,
                    limit: int) -> list[StoredRecord]:
        """The newest ``limit`` records of ``station``'s ``channels`` starting at or after
        ``t0`` that the station flagged over their limit, newest first: which ones
        ``exceedance_counts`` counted (the open-data feed names them; a plant over its limit
        all day at 10 s windows has thousands, hence the limit)."""
        if not channels:
            return []
        clause, params = where(RecordFilter(station=station, t0=t0), by_station=True)
        marks = ", ".join("?" for _ in channels)
        rows = self.db.execute(
            f"SELECT station, seq, {_COLS}, received, packet_created FROM records "
            f"WHERE {clause} AND (flags & ?) <> 0 AND channel IN ({marks}) "
            "ORDER BY start DESC, channel, seq LIMIT ?",
            [*params, int(RecordFlag.EXCEEDANCE), *channels, limit],
        )
        return [
            StoredRecord(str(r[0]), int(r[1]), row_record(r[2:-2]), float(r[-2]), int(r[-1]))
            for r in rows
        ]

    def station_ids(self) -> list[str]:
        """Every station this store has heard from (a row in ``stations`` per first packet)."""
        return [str(r[0]) for r in self.db.execute(
            "SELECT station FROM stations ORDER BY station")]

    def channels(self, station: str) -> list[str]:
        """Every channel ``station`` sent (``current_values`` keeps a row per channel)."""
        return [str(r[0]) for r in self.db.execute(
            "SELECT channel FROM current_values WHERE station = ? ORDER BY channel", (station,))]

    def by_seq(self, station: str) -> list[tuple[int, Record]]:
        """Every record of ``station`` in sequence order."""
        return [
            (int(r[0]), row_record(r[1:]))
            for r in self.db.execute(
                f"SELECT seq, {_COLS} FROM records WHERE station = ? ORDER BY seq", (station,)
            )
        ]

    def count(self, station: str | None = None) -> int:
        if station is None:
            return int(self.db.execute("SELECT count(*) FROM records")[0][0])
        return int(self.db.execute(
            "SELECT count(*) FROM records WHERE station = ?", (station,))[0][0])

    def summaries(self) -> list[StationSummary]:
        """One line per station the centre has heard from: what a centre operator checks first."""
        rows = self.db.execute(
            "SELECT s.station, s.contiguous, s.top, "
            "(SELECT count(*) FROM records r WHERE r.station = s.station), "
            "(SELECT max(received) FROM records r WHERE r.station = s.station), "
            "(SELECT count(*) FROM security_events e WHERE e.station = s.station), "
            "(SELECT count(*) FROM records r WHERE r.station = s.station AND (r.flags & ?) <> 0) "
            "FROM stations s ORDER BY s.station", (int(RecordFlag.EXCEEDANCE),)
        )
        return [
            StationSummary(str(st), int(n), int(top), int(contiguous),
                           None if last is None else float(last), int(events), int(over))
            for st, contiguous, top, n, last, events, over in rows
        ]

    # --- birth/will state ------------------------------------------------------------------
    def station_state(self, station: str, state: str) -> None:
        """Record the station's retained ``online``/``offline`` message (its MQTT birth and
        will), as the broker gave it to a receiver. ``since`` is when it last changed: the
        broker hands the retained message again at every (re)connect of a receiver, which
        refreshes ``seen`` but is no change of state."""
        now = self.clock()
        with self.db.transaction(lock=_station_lock(station)):
            self.db.execute(
                "INSERT INTO station_state (station, state, since, seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (station) DO UPDATE SET seen = excluded.seen, "
                "since = CASE WHEN station_state.state = excluded.state "
                "THEN station_state.since ELSE excluded.since END, state = excluded.state",
                (station, state, now, now),
            )

    def station_states(self) -> dict[str, tuple[str, float]]:
        """Per station its last birth/will state and since when; ``{}`` from a store of
        schema version 1 opened read-only (not migrated, so it has no such table)."""
        if "station_state" not in self.db.tables():
            return {}
        return {str(st): (str(state), float(since)) for st, state, since in self.db.execute(
            "SELECT station, state, since FROM station_state")}

    def latest_valid(self, station: str, t0: float | None = None) -> list[StoredRecord]:
        """Per channel and window width the newest *valid* record of ``station`` starting at
        or after ``t0`` (what the open-data feed publishes as "latest validated averages"),
        by channel then width. ``t0`` keeps a public request to a recent slice of the
        index instead of every record the station ever sent."""
        clause, params = where(RecordFilter(station=station, t0=t0), by_station=True)
        rows = self.db.execute(
            f"SELECT station, seq, {_COLS}, received, packet_created FROM ("
            f'SELECT *, row_number() OVER (PARTITION BY channel, "end" - start '
            f"ORDER BY start DESC) AS k FROM records WHERE {clause} AND valid = 1) AS v "
            f'WHERE k = 1 ORDER BY channel, "end" - start', params,
        )
        return [
            StoredRecord(str(r[0]), int(r[1]), row_record(r[2:-2]), float(r[-2]), int(r[-1]))
            for r in rows
        ]

    def current_values(self, station: str) -> dict[str, tuple[int, int, float]]:
        """Per channel the newest record's ``(seq, start, mean)``."""
        return {
            str(ch): (int(seq), int(start), math.nan if mean is None else float(mean))
            for ch, seq, start, mean in self.db.execute(
                "SELECT channel, seq, start, mean FROM current_values WHERE station = ?",
                (station,),
            )
        }


def _station_lock(station: str) -> str:
    """The transaction lock key of one station's rows (see ``Backend.transaction``)."""
    return f"station:{station}"
