"""`quantrac centre serve | query`: run a receiver; print a station's stored records."""

from __future__ import annotations

import argparse
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from protocol import record_filter
from protocol.cli_error import CommandError

if TYPE_CHECKING:
    from centre.store import CentreStore, StationSummary, StoredRecord

T = TypeVar("T")


def register(actions: argparse._SubParsersAction[Any]) -> None:
    """Add ``serve`` and ``query`` to ``quantrac centre``."""
    p = actions.add_parser("serve", help="receive, verify, store and acknowledge packets")
    p.add_argument("--config", type=Path, required=True, help="receiver TOML file")
    p.set_defaults(func=_serve, logs_always=True)  # a service: its log is its output

    p = actions.add_parser("query", help="print a station's stored records (text or CSV)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="receiver TOML file (for its store and zone)")
    where.add_argument("--store", type=store_location,
                       help="the centre's record store (SQLite file or postgresql:// URL)")
    p.add_argument("--station", required=True, help="station id")
    record_filter.add_arguments(p)
    p.set_defaults(func=_query)

    p = actions.add_parser("stations", help="per station: records held, gaps, last arrival, "
                           "security events")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="receiver TOML file (for its store and zone)")
    where.add_argument("--store", type=store_location,
                       help="the centre's record store (SQLite file or postgresql:// URL)")
    p.add_argument("--events", type=int, default=10, metavar="N",
                   help="also list the N latest security events (default 10, 0 for none)")
    p.add_argument("--wide", action="store_true",
                   help="every column (the last arrival's time too), lines unwrapped; the "
                        "default fits 80 columns")
    p.set_defaults(func=_stations)


def store_location(text: str) -> Path | str:
    """``--store``: a ``postgresql://`` URL as given, anything else a SQLite file's path."""
    from centre.store_backends import is_dsn

    return text if is_dsn(text) else Path(text)


def _given_store(location: Path | str) -> Path | str:
    """``--store`` as given, with a warning on stderr when its URL holds a password: a
    command line is world-readable (``ps``, ``/proc/PID/cmdline``) for as long as the command
    runs, and it stays in the shell's history. libpq reads ``~/.pgpass`` (or the file
    ``PGPASSFILE`` names), so the URL need not carry one. The password itself is not shown."""
    from centre.store_backends import is_dsn

    if not is_dsn(location):
        return location
    from centre.store_backends.postgresql import redact

    if redact(str(location)) != location:
        print(f"--store {redact(str(location))}: warning: a password on the command line is "
              "visible to every user of this machine (ps) and stays in the shell's history; "
              "put it in ~/.pgpass (or $PGPASSFILE) and leave it out of the URL",
              file=sys.stderr)
    return location


def _read_store(store_path: Path | str, read: Callable[[CentreStore], T]) -> T:
    """``read`` on the record store at ``store_path``, opened read-only: a read command never
    creates, migrates or moves aside the file. SQLite's own error gets the file's name."""
    from centre.serve_config import ConfigError
    from centre.store import CentreStore

    if isinstance(store_path, Path) and not store_path.exists():
        raise ConfigError.one(store_path, "<file>", str(store_path),
                              "a record store (no such record store)")
    try:
        with CentreStore(store_path, read_only=True) as store:
            return read(store)
    except sqlite3.Error as exc:
        raise CommandError(f"{store_path}: cannot read the record store: {exc}") from exc


def _serve(args: argparse.Namespace) -> int:
    from centre import authority
    from centre.receiver import Receiver
    from centre.serve_config import ConfigError, load
    from protocol.config_file import MISSING

    cfg = load(args.config)
    if cfg.receiver is None:
        raise ConfigError.one(args.config, "broker", MISSING, "a [broker] table (`serve` "
                              "needs a broker)")
    centre = authority.load(cfg.centre_dir)
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    store = _open_store(cfg.store, lambda: bool(stopping))
    if store is None:
        return 0
    registry = centre.registry()
    packet_key = centre.packet_private
    receiver = Receiver(
        cfg.receiver, store, lambda data: registry.open_packet(data, packet_key),
        centre.signing_private,
    )  # fmt: skip
    try:
        receiver.run(lambda: bool(stopping))
    finally:
        store.close()
        registry.close()
    return 0


def _open_store(location: Path | str, should_stop: Callable[[], bool]) -> CentreStore | None:
    """The store, once the database takes connections; None if told to stop before.

    A database not up yet (the receiver started before PostgreSQL after a power cut) or
    refusing us (a wrong password in the DSN, fixed by the operator while we wait) is the
    same state as a database gone mid-run: nothing can be acknowledged, so nothing is read
    from the broker either. It is said once, ``store_unavailable`` with the reason (never the
    password: the store's message has none), and once more, ``store_available``, when the
    store opens; attempts back off from 0.5 s up to 30 s. A store that is not a centre store
    (another program's file, a station outbox) is an operator's mistake and raises at once.
    """
    import logging
    import time

    from centre.store import CentreStore, StoreUnavailableError
    from protocol.backoff import Backoff

    log = logging.getLogger("quantrac.centre.receiver")
    backoff = Backoff(0.5, 30.0)
    down_since: float | None = None
    while not should_stop():
        try:
            store = CentreStore(location)
        except StoreUnavailableError as exc:
            if down_since is None:
                down_since = time.monotonic()
                log.error("store_unavailable", extra={"error": str(exc)[:300],
                                                      "acking": "not started"})  # fmt: skip
            deadline = time.monotonic() + backoff.next_delay()
            while time.monotonic() < deadline and not should_stop():
                time.sleep(0.05)
            continue
        if down_since is not None:
            log.warning("store_available", extra={
                "down_s": round(time.monotonic() - down_since, 3), "acking": "starting"})
        return store
    return None


def _query(args: argparse.Namespace) -> int:
    import time

    from centre import query
    from centre.serve_config import DEFAULT_ZONE, load

    zone_name = args.zone
    if args.config is not None:
        cfg = load(args.config)
        store_path = cfg.store
        zone_name = zone_name or cfg.zone
    else:
        store_path = _given_store(args.store)
    tz = record_filter.zone(zone_name or DEFAULT_ZONE)
    wanted = record_filter.from_args(args, tz, time.time(), station=args.station)

    def read(store: CentreStore) -> list[StoredRecord]:
        found = store.select(wanted)
        if not found:  # a typo more often than an empty period: say which
            record_filter.require_known("station", args.station, store.station_ids(),
                                        store.name)
            if wanted.channel is not None:
                record_filter.require_known("channel", wanted.channel,
                                            store.channels(args.station), args.station)
        return found

    records = _read_store(store_path, read)
    if args.format == "csv":
        sys.stdout.write(query.render_csv(records, tz))
    else:
        sys.stdout.write(query.render_text(records, tz, wide=args.wide))
    return 0


def _stations(args: argparse.Namespace) -> int:
    import time

    from centre import query
    from centre.serve_config import DEFAULT_ZONE, load

    zone_name = DEFAULT_ZONE
    if args.config is not None:
        cfg = load(args.config)
        store_path, zone_name = cfg.store, cfg.zone
    else:
        store_path = _given_store(args.store)
    tz = record_filter.zone(zone_name)
    def read(store: CentreStore) -> tuple[list[StationSummary], dict[str, int],
                                          list[tuple[float, str, str, str]]]:
        summaries = store.summaries()
        missing = {s.station: sum(b - a + 1 for a, b in store.gaps(s.station))
                   for s in summaries if s.last_seq > s.contiguous}  # the dashboard's count
        return (summaries, missing,
                store.security_events()[-args.events:] if args.events > 0 else [])

    summaries, missing, events = _read_store(store_path, read)
    sys.stdout.write(query.render_stations(summaries, time.time(), tz, wide=args.wide,
                                           missing=missing))
    sys.stdout.write(query.render_events(events, tz, wide=args.wide))
    return 0
