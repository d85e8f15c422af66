"""The centre's record store (SQLite): every station's records exactly once, and what is missing.

Opened with ``buffer.db.open_checked`` (WAL, synchronous=FULL, integrity check, move-aside)
and the record columns of ``buffer.rows``, so the centre stores a record exactly as the
station's outbox does. Several receivers may share one file: every write is one
``BEGIN IMMEDIATE`` transaction, so the de-duplication decision and the insert are atomic.

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
import sqlite3
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from buffer.db import open_checked, transaction
from buffer.record_select import ORDER, where
from buffer.rows import RECORD_COLUMNS, RECORD_COLUMNS_SQL, record_row, row_record
from buffer.store import APPLICATION_ID as OUTBOX_APPLICATION_ID
from protocol.cli_error import UserError
from protocol.clock import Clock
from protocol.model import Record, RecordFlag
from protocol.payload import same_record
from protocol.record_filter import RecordFilter

_COLS = ", ".join(RECORD_COLUMNS)
_INSERT = (
    f"INSERT INTO records (station, seq, {_COLS}, received, packet_created) "
    f"VALUES ({', '.join('?' * (len(RECORD_COLUMNS) + 4))})"
)

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


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records (
    station TEXT NOT NULL,
    seq INTEGER NOT NULL,
    {RECORD_COLUMNS_SQL},
    received REAL NOT NULL,
    packet_created INTEGER NOT NULL,
    PRIMARY KEY (station, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_time ON records (station, start);
CREATE TABLE IF NOT EXISTS current_values (
    station TEXT NOT NULL,
    channel TEXT NOT NULL,
    seq INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    mean REAL,
    valid INTEGER NOT NULL,
    status INTEGER NOT NULL,
    unit TEXT NOT NULL,
    PRIMARY KEY (station, channel)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packets (
    digest BLOB PRIMARY KEY,
    station TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    received REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stations (
    station TEXT PRIMARY KEY,
    counter INTEGER NOT NULL,
    contiguous INTEGER NOT NULL,
    top INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS security_events (
    id INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    station TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS station_state (
    station TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    since REAL NOT NULL,
    seen REAL NOT NULL
) WITHOUT ROWID;
"""

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


class NotACentreStoreError(UserError):
    """The file given as the record store is not one, or cannot be read (names the file)."""


def _open_read_only(path: Path) -> sqlite3.Connection:
    """``path`` opened with SQLite's ``mode=ro``: for the read commands (``centre query``,
    ``centre stations``), which must never create, migrate or move aside a file that an
    operator merely pointed them at (a typo, another tool's database, a store in use)."""
    if not path.is_file():
        raise NotACentreStoreError(f"{path}: no such record store")
    uri = "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10.0)
    except sqlite3.Error as exc:
        raise NotACentreStoreError(f"{path}: cannot open the record store: {exc}") from None
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        found = {
            str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    except sqlite3.Error as exc:
        conn.close()
        raise NotACentreStoreError(
            f"{path}: not a centre record store (SQLite says: {exc})"
        ) from None
    if app_id == OUTBOX_APPLICATION_ID:  # the mistake the two file names invite
        conn.close()
        raise NotACentreStoreError(
            f"{path}: that file is a station outbox, not a centre record store; a station's "
            f"own records are read with `quantrac history --store {path}`"
        )
    missing = [t for t in _TABLES if t not in found]
    if missing:
        conn.close()
        raise NotACentreStoreError(
            f"{path}: not a centre record store (no table {', '.join(missing)})"
        )
    return conn


class CentreStore:
    """One SQLite file of records; one connection, used from one thread.

    ``read_only``: open an existing store for reading only (``_open_read_only``); raises
    ``NotACentreStoreError`` naming the file if it is not one. Otherwise the file is checked,
    moved aside if corrupt and created or completed (``open_checked`` and the schema).
    """

    def __init__(
        self, path: Path | str, clock: Clock = time.time, *, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.conn: sqlite3.Connection
        self.moved_aside: Path | None = None
        if read_only:
            self.conn = _open_read_only(self.path)
            return
        opened = open_checked(self.path, clock)
        self.conn = opened.conn
        self.moved_aside = opened.moved_aside
        with transaction(self.conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)

    def close(self) -> None:
        self.conn.close()

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
        with transaction(self.conn):
            held = {
                int(row[0]): row_record(row[1:])
                for row in self.conn.execute(
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
                seen = self.conn.execute(
                    "SELECT 1 FROM packets WHERE digest = ?", (digest,)
                ).fetchone()
                if seen is not None and not redelivery:
                    return Ingest(REPLAYED, known=len(held), refused=refused)
                outcome = (
                    REDELIVERED if seen is not None else RESENT if records else IMPLAUSIBLE
                )
            else:
                outcome = STORED
                self.conn.executemany(
                    _INSERT,
                    [(station, seq, *record_row(rec), now, created_ms) for seq, rec in fresh],
                )
                self._update_current(station, fresh)
            self.conn.execute(
                "INSERT OR IGNORE INTO packets (digest, station, first_seq, last_seq, received) "
                "VALUES (?, ?, ?, ?, ?)",
                (digest, station, first, last, now),
            )
            # A station's outbox numbers from 1, so for a station new to us everything below
            # its first packet is a gap too (its first packet may be the one that got lost).
            self.conn.execute(
                "INSERT OR IGNORE INTO stations (station, counter, contiguous, top) "
                "VALUES (?, ?, 0, 0)",
                (station, self._counter_floor()),
            )
            counter = int(
                self.conn.execute(
                    "UPDATE stations SET counter = counter + 1, top = max(top, ?), "
                    "contiguous = CASE WHEN ? <= contiguous + 1 THEN max(contiguous, ?) "
                    "ELSE contiguous END WHERE station = ? RETURNING counter",
                    (last, first, last, station),
                ).fetchone()[0]
            )
        return Ingest(
            outcome, new=len(fresh), known=len(held), counter=counter, refused=refused
        )

    def _update_current(self, station: str, fresh: Sequence[tuple[int, Record]]) -> None:
        newest: dict[str, tuple[int, Record]] = {}
        for seq, rec in fresh:
            best = newest.get(rec.channel)
            if best is None or rec.start >= best[1].start:
                newest[rec.channel] = (seq, rec)
        self.conn.executemany(
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
        with transaction(self.conn):
            row = self.conn.execute(
                "UPDATE stations SET counter = counter + 1 WHERE station = ? RETURNING counter",
                (station,),
            ).fetchone()
            if row is None:
                first = self._counter_floor() + 1
                self.conn.execute(
                    "INSERT INTO stations (station, counter, contiguous, top) VALUES (?, ?, 0, 0)",
                    (station, first),
                )
                return first
        return int(row[0])

    def _counter_floor(self) -> int:
        """Where a station's command counter starts in this store (``COUNTER_FLOOR_PER_S``)."""
        return int(self.clock() * COUNTER_FLOOR_PER_S)

    # --- gaps ------------------------------------------------------------------------------
    def stations_behind(self) -> list[str]:
        """Stations holding records above a missing seq."""
        return [
            str(r[0])
            for r in self.conn.execute("SELECT station FROM stations WHERE top > contiguous")
        ]

    def holes(self, station: str) -> list[tuple[int, int]]:
        """The missing seq ranges above the contiguous mark; advances the mark past filled ones."""
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT contiguous, top FROM stations WHERE station = ?", (station,)
            ).fetchone()
            if row is None or row[1] <= row[0]:
                return []
            contiguous = int(row[0])
            lowest = self.conn.execute(
                "SELECT min(seq) FROM records WHERE station = ? AND seq > ?",
                (station, contiguous),
            ).fetchone()[0]
            holes: list[tuple[int, int]] = []
            if lowest is None:
                return []
            if lowest > contiguous + 1:
                holes.append((contiguous + 1, int(lowest) - 1))
            holes += [
                (int(seq) + 1, int(nxt) - 1)
                for seq, nxt in self.conn.execute(
                    "SELECT seq, nxt FROM (SELECT seq, lead(seq) OVER (ORDER BY seq) AS nxt "
                    "FROM records WHERE station = ? AND seq > ?) "
                    "WHERE nxt IS NOT NULL AND nxt > seq + 1",
                    (station, contiguous),
                )
            ]
            if not holes:
                mark = int(row[1])
            elif holes[0][0] == contiguous + 1:
                mark = contiguous
            else:
                mark = holes[0][0] - 1
            if mark != contiguous:
                self.conn.execute(
                    "UPDATE stations SET contiguous = ? WHERE station = ?", (mark, station)
                )
        return holes

    def give_up_gap(self, station: str, upto: int) -> None:
        """Stop asking for seqs up to ``upto`` (the station no longer holds them)."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE stations SET contiguous = max(contiguous, ?) WHERE station = ?",
                (upto, station),
            )

    # --- security events -------------------------------------------------------------------
    def security_event(self, station: str, reason: str, detail: str) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO security_events (t, station, reason, detail) VALUES (?, ?, ?, ?)",
                (self.clock(), station, reason, detail),
            )

    def security_events(self) -> list[tuple[float, str, str, str]]:
        return [
            (float(t), str(s), str(r), str(d))
            for t, s, r, d in self.conn.execute(
                "SELECT t, station, reason, detail FROM security_events ORDER BY id"
            )
        ]

    # --- reading ---------------------------------------------------------------------------
    def records(
        self, station: str, t0: float | None = None, t1: float | None = None
    ) -> list[StoredRecord]:
        """Records of ``station`` whose window starts in ``[t0, t1)``, by start."""
        return self.select(RecordFilter(station=station, t0=t0, t1=t1))

    def select(self, f: RecordFilter) -> list[StoredRecord]:
        """The records ``f`` asks for (``f.station`` required), in ``record_select.ORDER``."""
        clause, params = where(f, by_station=True)
        rows = self.conn.execute(
            f"SELECT station, seq, {_COLS}, received, packet_created FROM records "
            f"WHERE {clause} {ORDER}", params,
        ).fetchall()
        return [
            StoredRecord(str(r[0]), int(r[1]), row_record(r[2:-2]), float(r[-2]), int(r[-1]))
            for r in rows
        ]

    def station_ids(self) -> list[str]:
        """Every station this store has heard from (a row in ``stations`` per first packet)."""
        return [str(r[0]) for r in self.conn.execute(
            "SELECT station FROM stations ORDER BY station")]

    def channels(self, station: str) -> list[str]:
        """Every channel ``station`` sent (``current_values`` keeps a row per channel)."""
        return [str(r[0]) for r in self.conn.execute(
            "SELECT channel FROM current_values WHERE station = ? ORDER BY channel", (station,))]

    def by_seq(self, station: str) -> list[tuple[int, Record]]:
        """Every record of ``station`` in sequence order."""
        return [
            (int(r[0]), row_record(r[1:]))
            for r in self.conn.execute(
                f"SELECT seq, {_COLS} FROM records WHERE station = ? ORDER BY seq", (station,)
            )
        ]

    def count(self, station: str | None = None) -> int:
        if station is None:
            return int(self.conn.execute("SELECT count(*) FROM records").fetchone()[0])
        return int(
            self.conn.execute(
                "SELECT count(*) FROM records WHERE station = ?", (station,)
            ).fetchone()[0]
        )

    def summaries(self) -> list[StationSummary]:
        """One line per station the centre has heard from: what a centre operator checks first."""
        rows = self.conn.execute(
            "SELECT s.station, s.contiguous, s.top, "
            "(SELECT count(*) FROM records r WHERE r.station = s.station), "
            "(SELECT max(received) FROM records r WHERE r.station = s.station), "
            "(SELECT count(*) FROM security_events e WHERE e.station = s.station), "
            "(SELECT count(*) FROM records r WHERE r.station = s.station AND r.flags & ?) "
            "FROM stations s ORDER BY s.station", (int(RecordFlag.EXCEEDANCE),)
        ).fetchall()
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
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO station_state (station, state, since, seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (station) DO UPDATE SET seen = excluded.seen, "
                "since = CASE WHEN station_state.state = excluded.state "
                "THEN station_state.since ELSE excluded.since END, state = excluded.state",
                (station, state, now, now),
            )

    def station_states(self) -> dict[str, tuple[str, float]]:
        """Per station its last birth/will state and since when; ``{}`` from a store made
        before the table existed (opened read-only, so it was not added)."""
        try:
            rows = self.conn.execute("SELECT station, state, since FROM station_state")
        except sqlite3.OperationalError:
            return {}
        return {str(st): (str(state), float(since)) for st, state, since in rows}

    def latest_valid(self, station: str) -> list[StoredRecord]:
        """Per channel and window width the newest *valid* record of ``station`` (what the
        open-data feed publishes as "latest validated averages"), by channel then width."""
        rows = self.conn.execute(
            f"SELECT station, seq, {_COLS}, received, packet_created FROM ("
            f"SELECT *, row_number() OVER (PARTITION BY channel, \"end\" - start "
            f"ORDER BY start DESC) AS k FROM records WHERE station = ? AND valid = 1) "
            f'WHERE k = 1 ORDER BY channel, "end" - start', (station,),
        ).fetchall()
        return [
            StoredRecord(str(r[0]), int(r[1]), row_record(r[2:-2]), float(r[-2]), int(r[-1]))
            for r in rows
        ]

    def current_values(self, station: str) -> dict[str, tuple[int, int, float]]:
        """Per channel the newest record's ``(seq, start, mean)``."""
        return {
            str(ch): (int(seq), int(start), math.nan if mean is None else float(mean))
            for ch, seq, start, mean in self.conn.execute(
                "SELECT channel, seq, start, mean FROM current_values WHERE station = ?",
                (station,),
            )
        }
