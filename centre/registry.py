"""The centre's registry of stations and their keys (SQLite), and the envelope's key lookup.

A station is ``active`` or ``revoked``. Each of its signing keys is:

- ``active``: accepted;
- ``retiring``: rotated out but still accepted, until a packet signed by its successor has been
  *verified* (``key_seen``); then ``retired`` and refused as REVOKED. Retiring only on a verified
  packet matters: the key id in a header is public, so a forged packet naming the new key must
  not be able to cut the old key off early.

``lookup_station_key`` is exactly the callback ``protocol.envelope.open_packet`` takes, and
``open_packet`` here wraps the two steps so a receiver cannot forget ``key_seen``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.envelope import (
    REVOKED,
    UNKNOWN_KEY,
    UNKNOWN_STATION,
    EnvelopeError,
    Opened,
    open_packet,
)
from protocol.envelope import key_id as key_id_of

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey


log = logging.getLogger("quantrac.centre.registry")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stations (
    station_id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    hardware_serial TEXT,
    enrolled_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS station_keys (
    station_id TEXT NOT NULL REFERENCES stations (station_id),
    key_id TEXT NOT NULL,
    public_key BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'retiring', 'retired')),
    successor TEXT,
    added_at REAL NOT NULL,
    retired_at REAL,
    PRIMARY KEY (station_id, key_id)
);
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    station_id TEXT NOT NULL REFERENCES stations (station_id),
    cert_pem TEXT NOT NULL,
    not_after REAL NOT NULL,
    issued_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS request_nonces (
    nonce BLOB PRIMARY KEY,
    station_id TEXT NOT NULL,
    seen_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class StationRecord:
    """One station as the registry knows it."""

    station_id: str
    status: str
    hardware_serial: str | None
    enrolled_at: float
    revoked_at: float | None
    keys: dict[str, str]  # key id (hex) -> state


class Registry:
    """The station registry; safe to share between threads (one connection, one lock)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        self._centre_key_id: tuple[X25519PrivateKey, bytes] | None = None
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the envelope's lookup -------------------------------------------------------------

    def lookup_station_key(self, station_id: str, key_id: bytes) -> Ed25519PublicKey:
        """The public key a packet names, or EnvelopeError(UNKNOWN_STATION/UNKNOWN_KEY/REVOKED)."""
        with self._lock:
            station = self._db.execute(
                "SELECT status FROM stations WHERE station_id = ?", (station_id,)
            ).fetchone()
            if station is None:
                raise EnvelopeError(UNKNOWN_STATION, f"station {station_id!r} is not enrolled")
            if station[0] == "revoked":
                raise EnvelopeError(REVOKED, f"station {station_id!r} is revoked")
            row = self._db.execute(
                "SELECT public_key, state FROM station_keys WHERE station_id = ? AND key_id = ?",
                (station_id, key_id.hex()),
            ).fetchone()
        if row is None:
            raise EnvelopeError(
                UNKNOWN_KEY, f"station {station_id!r} has no key {key_id.hex()}"
            )
        if row[1] == "retired":
            raise EnvelopeError(
                REVOKED, f"key {key_id.hex()} of station {station_id!r} was rotated out"
            )
        return Ed25519PublicKey.from_public_bytes(row[0])

    def key_seen(self, station_id: str, key_id: bytes) -> None:
        """Call after a packet signed by ``key_id`` verified: its predecessors retire now."""
        args = (station_id, key_id.hex())
        with self._lock:
            # A read first: nearly every packet has nothing to retire and needs no write lock.
            pending = self._db.execute(
                "SELECT 1 FROM station_keys "
                "WHERE station_id = ? AND successor = ? AND state = 'retiring'",
                args,
            ).fetchone()
            if pending is None:
                return
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                retired = self._db.execute(
                    "UPDATE station_keys SET state = 'retired', retired_at = ? "
                    "WHERE station_id = ? AND successor = ? AND state = 'retiring' "
                    "RETURNING key_id",
                    (self.clock(), *args),
                ).fetchall()
        for (old,) in retired:
            log.info(
                "station_key_retired",
                extra={"station_id": station_id, "key_id": old, "successor": key_id.hex()},
            )

    def open_packet(self, packet: bytes, centre_private: X25519PrivateKey) -> Opened:
        """Open and verify a packet with this registry's keys, then record the key as seen."""
        cached = self._centre_key_id
        if cached is None or cached[0] is not centre_private:
            cached = (centre_private, key_id_of(centre_private.public_key()))
            self._centre_key_id = cached
        opened = open_packet(packet, centre_private, self.lookup_station_key,
                             centre_key_id=cached[1])
        self.key_seen(opened.header.station_id, opened.header.key_id)
        return opened

    # -- enrolment, rotation, revocation ---------------------------------------------------

    def station(self, station_id: str) -> StationRecord | None:
        """The station's record with the state of each of its keys, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT station_id, status, hardware_serial, enrolled_at, revoked_at "
                "FROM stations WHERE station_id = ?",
                (station_id,),
            ).fetchone()
            if row is None:
                return None
            keys = dict(
                self._db.execute(
                    "SELECT key_id, state FROM station_keys WHERE station_id = ? "
                    "ORDER BY added_at",
                    (station_id,),
                ).fetchall()
            )
        return StationRecord(row[0], row[1], row[2], row[3], row[4], keys)

    def stations(self) -> list[StationRecord]:
        """Every station, by id."""
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT station_id FROM stations ORDER BY 1")]
        return [s for s in (self.station(i) for i in ids) if s is not None]

    def key(self, station_id: str, key_id: bytes) -> tuple[Ed25519PublicKey, str, bytes | None]:
        """One key of a station: public key, state, successor key id; KeyError if unknown."""
        with self._lock:
            row = self._db.execute(
                "SELECT public_key, state, successor FROM station_keys "
                "WHERE station_id = ? AND key_id = ?",
                (station_id, key_id.hex()),
            ).fetchone()
        if row is None:
            raise KeyError(key_id.hex())
        successor = bytes.fromhex(row[2]) if row[2] else None
        return Ed25519PublicKey.from_public_bytes(row[0]), row[1], successor

    def enrol(
        self,
        station_id: str,
        key_id: bytes,
        public_key: bytes,
        hardware_serial: str | None,
        nonce: bytes,
        cert_serial: int,
        cert_pem: str,
        cert_not_after: float,
    ) -> None:
        """Register a new station, its key and its certificate, in one transaction."""
        now = self.clock()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._use_nonce(nonce, station_id, now)
                self._db.execute(
                    "INSERT INTO stations (station_id, status, hardware_serial, enrolled_at) "
                    "VALUES (?, 'active', ?, ?)",
                    (station_id, hardware_serial, now),
                )
                self._add_key(station_id, key_id, public_key, now)
                self._add_certificate(station_id, cert_serial, cert_pem, cert_not_after, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        log.info("station_enrolled", extra={"station_id": station_id, "key_id": key_id.hex()})

    def rotate(
        self,
        station_id: str,
        old_key_id: bytes,
        new_key_id: bytes,
        public_key: bytes,
        nonce: bytes,
        cert_serial: int,
        cert_pem: str,
        cert_not_after: float,
    ) -> None:
        """Add the new key as active (the old one retiring until the new one is seen) and the
        renewed certificate, in one transaction."""
        now = self.clock()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._use_nonce(nonce, station_id, now)
                changed = self._db.execute(
                    "UPDATE station_keys SET state = 'retiring', successor = ? "
                    "WHERE station_id = ? AND key_id = ? AND state = 'active'",
                    (new_key_id.hex(), station_id, old_key_id.hex()),
                ).rowcount
                if changed != 1:
                    raise ValueError(f"key {old_key_id.hex()} is not the active key")
                self._add_key(station_id, new_key_id, public_key, now)
                self._add_certificate(station_id, cert_serial, cert_pem, cert_not_after, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        log.info(
            "station_key_rotated",
            extra={"station_id": station_id, "key_id": new_key_id.hex(),
                   "retiring_key_id": old_key_id.hex()},
        )

    def rekey(
        self,
        station_id: str,
        key_id: bytes,
        public_key: bytes,
        hardware_serial: str | None,
        nonce: bytes,
        cert_serial: int,
        cert_pem: str,
        cert_not_after: float,
    ) -> list[str]:
        """Replace every key and certificate of an active station by a new one, in one
        transaction; the ids of the keys retired.

        For a station whose device lost its keys (re-initialised, a new SD card): unlike
        ``rotate`` there is no overlap, because the old key is not in the station's hands any
        more and whoever holds a copy of it must not keep signing as the station. The old keys
        are refused as REVOKED from the commit on, and the old certificates go on the CRL.
        """
        now = self.clock()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._use_nonce(nonce, station_id, now)
                changed = self._db.execute(
                    "UPDATE stations SET hardware_serial = ? "
                    "WHERE station_id = ? AND status = 'active'",
                    (hardware_serial, station_id),
                ).rowcount
                if changed != 1:
                    raise ValueError(f"station {station_id!r} is not active")
                retired = [r[0] for r in self._db.execute(
                    "UPDATE station_keys SET state = 'retired', retired_at = ? "
                    "WHERE station_id = ? AND state != 'retired' RETURNING key_id",
                    (now, station_id),
                ).fetchall()]
                self._db.execute(
                    "UPDATE certificates SET revoked_at = ? "
                    "WHERE station_id = ? AND revoked_at IS NULL",
                    (now, station_id),
                )
                self._add_key(station_id, key_id, public_key, now)
                self._add_certificate(station_id, cert_serial, cert_pem, cert_not_after, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        log.warning(
            "station_rekeyed",
            extra={"station_id": station_id, "key_id": key_id.hex(),
                   "retired_key_ids": ",".join(sorted(retired))},
        )
        return retired

    def nonce_station(self, nonce: bytes) -> str | None:
        """The station whose request used ``nonce``, or None if no request used it."""
        with self._lock:
            row = self._db.execute(
                "SELECT station_id FROM request_nonces WHERE nonce = ?", (nonce,)
            ).fetchone()
        return None if row is None else str(row[0])

    def _add_key(self, station_id: str, key_id: bytes, public_key: bytes, now: float) -> None:
        self._db.execute(
            "INSERT INTO station_keys (station_id, key_id, public_key, state, added_at) "
            "VALUES (?, ?, ?, 'active', ?)",
            (station_id, key_id.hex(), public_key, now),
        )

    def _add_certificate(
        self, station_id: str, serial: int, pem: str, not_after: float, now: float
    ) -> None:
        self._db.execute(
            "INSERT INTO certificates (serial, station_id, cert_pem, not_after, issued_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (format(serial, "x"), station_id, pem, not_after, now),
        )

    def _use_nonce(self, nonce: bytes, station_id: str, now: float) -> None:
        try:
            self._db.execute(
                "INSERT INTO request_nonces (nonce, station_id, seen_at) VALUES (?, ?, ?)",
                (nonce, station_id, now),
            )
        except sqlite3.IntegrityError:
            raise ValueError("this request was already used (its nonce is on record)") from None

    def current_certificate(self, station_id: str) -> tuple[str, float] | None:
        """The station's newest unrevoked certificate (PEM, not-after)."""
        with self._lock:
            row = self._db.execute(
                "SELECT cert_pem, not_after FROM certificates "
                "WHERE station_id = ? AND revoked_at IS NULL ORDER BY issued_at DESC, rowid DESC "
                "LIMIT 1",
                (station_id,),
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def revoke(self, station_id: str) -> bool:
        """Mark the station and its certificates revoked; False if it already was."""
        now = self.clock()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                changed = self._db.execute(
                    "UPDATE stations SET status = 'revoked', revoked_at = ? "
                    "WHERE station_id = ? AND status = 'active'",
                    (now, station_id),
                ).rowcount
                self._db.execute(
                    "UPDATE certificates SET revoked_at = ? "
                    "WHERE station_id = ? AND revoked_at IS NULL",
                    (now, station_id),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if changed:
            log.warning("station_revoked", extra={"station_id": station_id})
        return bool(changed)

    def revoked_certificates(self) -> list[tuple[int, float]]:
        """``(serial, revoked_at)`` of every revoked certificate, for the CRL."""
        with self._lock:
            rows = self._db.execute(
                "SELECT serial, revoked_at FROM certificates WHERE revoked_at IS NOT NULL "
                "ORDER BY revoked_at, serial"
            ).fetchall()
        return [(int(serial, 16), at) for serial, at in rows]
