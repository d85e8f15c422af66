"""The centre receiver: MQTT in, verified records stored once, signed acks and resend requests out.

Several receivers split the load through one MQTT shared subscription
(``$share/<group>/quantrac/v1/+/up``) and one ``CentreStore`` file. Each packet is opened and
verified against the registry (``open``), de-duplicated and stored in one transaction
(``CentreStore.ingest``, whose docstring states the rule), then acknowledged with a command
signed by the centre. Every rejected packet is a security event: logged as
``security_event reason=... station=...`` and kept in the store.

Who sent a packet is first of all the topic: the broker's ACL lets only the holder of station
S's certificate publish on ``quantrac/v1/S/up``. A packet whose signed header names another
station is refused (``station_mismatch``): it is someone else's packet sent on again.

Gaps: a hole below the highest seq held, still open after ``gap_grace_s``, makes the receiver
send a signed ``resend`` for it; again every ``gap_retry_s``; after ``gap_max_requests``
unanswered requests the hole is reported (``gap_abandoned``) and no longer asked for (the
station has pruned or never had those numbers).

One thread: ``step()`` runs paho's loop (callbacks run inside it) and the gap timer; the
store's connection never leaves that thread. Paho keeps the client's session across
``reconnect()``, so acks still in flight when the link dropped are delivered afterwards.

**The store going away** (a full disk, a locked or unreachable database, a server restarted):
the store raises ``StoreUnavailableError`` (the database, not the packet, is at fault), and
the receiver acknowledges nothing it has not committed, so it simply stops acknowledging: the
packet is neither stored nor acked, the station keeps it in its outbox and sends it again
after its ack timeout (by then to whichever receiver of the group the broker picks). No
security event is written (there is nowhere to write it, and the packet did nothing wrong).
It says so once, ``store_unavailable`` with the error, and once more when a store operation
succeeds again, ``store_available`` with how long it was down and how many packets went
unacknowledged meanwhile; nothing per packet in between, because an outage during a
province's reconnect storm is thousands of packets. The gap scan is skipped while the store
is down. Every packet is a probe (the stations' retries are the retry loop, and the
PostgreSQL backend reconnects at the next call), and so is a timer, every
``STORE_PROBE_S``: an empty write transaction (``CentreStore.probe``), so that a store
that went away while no packet came (the backlog drained, the stations quiet) is reported
back without waiting for one. Not for a full disk: reads and an empty transaction succeed
there while every write fails, so the probe would say ``store_available`` and the next
packet ``store_unavailable`` again, over and over; a full store is back when a write works.

What the receiver shares with the station instead of writing again: the paho/TLS client
(``protocol.mqtt_client.tls_client``: the same certificate rules and persistent session as the
uplink), the topic names (``protocol.topics``, the same that the bundle hands a station and the
broker's ACL enforces), and the reconnect delays (``protocol.backoff.Backoff``: equal jitter,
from 0.5 s doubling up to ``reconnect_max_s``, back to the start once connected).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from centre.store import CONFLICT, REPLAYED, CentreStore, StoreUnavailableError
from protocol.backoff import Backoff
from protocol.clock import Clock
from protocol.envelope import (
    Command,
    EnvelopeError,
    Opened,
    ranges_body,
    seq_ranges,
    sign_command,
)
from protocol.mqtt_client import tls_client
from protocol.topics import STATE_FILTER, UP_FILTER, down_topic, shared, station_of

log = logging.getLogger("quantrac.centre.receiver")

Opener = Callable[[bytes], Opened]
MAX_RANGES_PER_REQUEST = 256
#: the outcome of a packet the store could not take (not acknowledged)
STORE_UNAVAILABLE = "store_unavailable"
#: how often a store that went away is tried while it is down (module docstring); a
#: PostgreSQL server that does not answer holds the loop for its connect timeout each time
STORE_PROBE_S = 5.0


@dataclass(frozen=True)
class ReceiverSettings:
    """Broker connection and behaviour of one receiver (``centre.serve_config`` reads TOML)."""

    host: str
    port: int
    ca_cert: Path
    cert: Path
    tls_key: Path
    client_id: str = "quantrac-centre-1"
    group: str = "quantrac-centre"
    keepalive: int = 30
    gap_grace_s: float = 10.0
    gap_retry_s: float = 30.0
    gap_max_requests: int = 5
    gap_scan_every_s: float = 1.0
    reconnect_max_s: float = 30.0
    # Fault injection for tests and drills only: drop the first N acks / treat the first N
    # verified packets as lost in transit (neither stored nor acknowledged).
    drop_acks: int = 0
    lose_packets: int = 0


@dataclass
class _Hole:
    last: int
    first_seen: float
    requests: int = 0
    last_request: float = 0.0


@dataclass
class ReceiverStats:
    packets: int = 0
    stored: int = 0
    records_stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    acks_sent: int = 0
    resend_requests: int = 0
    store_unavailable: int = 0  # packets left unacknowledged because the store was down
    reasons: dict[str, int] = field(default_factory=dict)


def state_of(payload: bytes) -> str:
    """``online``/``offline`` from a station's state message (JSON ``{"state": ...}``, the
    uplink's birth and will); ``unknown`` for anything else (the station wrote it)."""
    try:
        body = json.loads(payload[:4096])
    except ValueError:
        return "unknown"
    state = body.get("state") if isinstance(body, dict) else None
    return state if state in ("online", "offline") else "unknown"


class Receiver:
    """One receiving process; ``handle_packet`` is the MQTT-free core the callbacks call."""

    def __init__(
        self,
        settings: ReceiverSettings,
        store: CentreStore,
        opener: Opener,
        signing_key: Ed25519PrivateKey,
        clock: Clock = time.time,
    ) -> None:
        self.s = settings
        self.store = store
        self.opener = opener
        self.signing_key = signing_key
        self.clock = clock
        self.stats = ReceiverStats()
        self._drop_acks = settings.drop_acks
        self._lose_packets = settings.lose_packets
        self._holes: dict[str, dict[int, _Hole]] = {}
        self._next_scan = 0.0
        self._client: mqtt.Client | None = None
        self._connected = False
        # reconnect_max_s is the longest wait; the config allows 0 ("at once"), Backoff wants
        # 0 < base <= cap, so the cap has a 1 ms floor and the base is never above the cap
        cap = max(settings.reconnect_max_s, 0.001)
        self._backoff = Backoff(min(0.5, cap), cap)
        self._next_attempt = 0.0
        self._dialled = False
        self._store_down_since: float | None = None
        self._store_full = False  # the last failure was a full disk: only a write proves it
        self._next_probe = 0.0
        self._unacked_while_down = 0

    # --- the store's state -----------------------------------------------------------------
    @property
    def store_available(self) -> bool:
        return self._store_down_since is None

    def _store_failed(self, exc: StoreUnavailableError) -> None:
        self._store_full = exc.full
        if self._store_down_since is None:
            self._store_down_since = self.clock()
            self._next_probe = self._store_down_since + STORE_PROBE_S
            self._unacked_while_down = 0
            log.error(
                "store_unavailable",
                extra={"error": f"{type(exc).__name__}: {str(exc)[:300]}",
                       "acking": "stopped"},
            )  # fmt: skip

    def _store_worked(self, proved_by: str = "packet") -> None:
        if self._store_down_since is not None:
            down_s = self.clock() - self._store_down_since
            self._store_down_since = None
            log.warning(
                "store_available",
                extra={"down_s": round(down_s, 3), "unacked_packets": self._unacked_while_down,
                       "proved_by": proved_by, "acking": "resumed"},
            )  # fmt: skip

    def _probe_store(self, now: float) -> None:
        """The timer's probe of a store that is down (module docstring); never a full one."""
        if self.store_available or self._store_full or now < self._next_probe:
            return
        self._next_probe = now + STORE_PROBE_S
        try:
            self.store.probe()
        except StoreUnavailableError as exc:
            self._store_failed(exc)  # still down: said already, nothing more to say
        else:
            self._store_worked("probe")

    # --- the core --------------------------------------------------------------------------
    def security_event(
        self, station: str, reason: str, detail: str, evidence: str | None = None
    ) -> None:
        """Log and store one refusal; ``evidence`` (stored, not logged) follows the detail."""
        self.stats.rejected += 1
        self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1
        log.warning(
            "security_event", extra={"reason": reason, "station": station, "detail": detail}
        )
        self.store.security_event(station, reason, detail if evidence is None else
                                  f"{detail}\n{evidence}")  # fmt: skip

    def _implausible(
        self, station: str, span: str, opened: Opened, refused: list[tuple[int, str]]
    ) -> None:
        """One event per packet for its refused records, each named by seq and field.

        The store keeps every refused record as received (the event's evidence), because the
        ack below lets the station prune it: what the centre refused is still at the centre.
        """
        shown = "; ".join(f"seq {seq}: {why}" for seq, why in refused[:5])
        more = f"; and {len(refused) - 5} more" if len(refused) > 5 else ""
        bad = {seq for seq, _ in refused}
        evidence = "\n".join(repr((seq, rec)) for seq, rec in opened.records if seq in bad)
        self.security_event(
            station, "implausible",
            f"{span}: {len(refused)} of {len(opened.records)} records refused: {shown}{more}",
            evidence,
        )  # fmt: skip

    def handle_packet(self, topic: str, payload: bytes, redelivery: bool = False) -> str:
        """Verify, de-duplicate, store and acknowledge one packet; return the outcome.

        Nothing escapes for one packet. Every refusal is decided explicitly below (the
        envelope's ``EnvelopeError`` reasons, ``bad_topic``, ``station_mismatch``,
        ``seq_conflict``, ``replay``, ``implausible``); an exception anyway is a bug or a
        failing disk, logged as ``packet_failed`` and recorded as an ``internal_error`` event,
        and the receiver goes on with the next packet. Had it escaped, paho would stop the
        process before its PUBACK, the broker would hand the same packet to the restarted
        receiver (persistent session), and one station's packet would stop the province.
        The packet is not acknowledged, so its station sends it again after its ack timeout.
        """
        try:
            return self._handle_packet(topic, payload, redelivery)
        except StoreUnavailableError as exc:  # not the packet's fault: see the module docstring
            self._store_failed(exc)
            self.stats.store_unavailable += 1
            self._unacked_while_down += 1
            return STORE_UNAVAILABLE
        except Exception as exc:  # defence in depth, see the docstring
            station = station_of(topic) or "?"
            detail = f"{type(exc).__name__}: {str(exc)[:300]}"
            log.error(
                "packet_failed",
                extra={"station": station, "error": detail, "bytes": len(payload)},
            )
            try:
                self.security_event(station, "internal_error", detail)
            except Exception as again:  # the store may be what fails
                log.error(
                    "security_event_not_stored",
                    extra={"station": station, "error": f"{type(again).__name__}: {again}"},
                )
            return "internal_error"

    def _handle_packet(self, topic: str, payload: bytes, redelivery: bool) -> str:
        self.stats.packets += 1
        station = station_of(topic)
        if station is None:
            self.security_event("?", "bad_topic", f"packet on topic {topic!r}")
            return "rejected"
        try:
            opened = self.opener(payload)
        except EnvelopeError as exc:
            self.security_event(station, exc.reason, str(exc))
            return exc.reason
        header = opened.header
        if header.station_id != station:
            self.security_event(
                station, "station_mismatch",
                f"packet of station {header.station_id} seq {header.first_seq}.."
                f"{header.last_seq} published on {topic}",
            )  # fmt: skip
            return "station_mismatch"
        if self._lose_packets > 0:
            self._lose_packets -= 1
            log.warning(
                "packet_lost_for_test",
                extra={"station": station, "first": header.first_seq, "last": header.last_seq},
            )
            return "lost"
        digest = hashlib.sha256(payload).digest()
        result = self.store.ingest(station, opened.records, digest, header.created, redelivery)
        self._store_worked()
        span = f"seq {header.first_seq}..{header.last_seq}"
        if result.refused:
            self._implausible(station, span, opened, result.refused)
        if result.outcome == CONFLICT:
            shown = ",".join(str(s) for s in result.conflicts[:10])
            self.security_event(
                station, "seq_conflict", f"{span}: seqs {shown} already stored with other content"
            )
            return CONFLICT
        if result.outcome == REPLAYED:
            self.security_event(
                station, "replay", f"{span}: byte-identical to a packet already stored"
            )
            return REPLAYED
        if result.known:
            self.stats.duplicates += 1
            log.info(
                "duplicate_records",
                extra={
                    "station": station,
                    "first": header.first_seq,
                    "last": header.last_seq,
                    "known": result.known,
                    "new": result.new,
                    "outcome": result.outcome,
                },
            )
        if result.new:
            self.stats.stored += 1
            self.stats.records_stored += result.new
        self._send(
            station, "ack", result.counter, ranges_body(seq_ranges(s for s, _ in opened.records))
        )
        return result.outcome

    def _send(self, station: str, kind: str, counter: int, body: bytes) -> None:
        if kind == "ack" and self._drop_acks > 0:
            self._drop_acks -= 1
            log.warning("ack_dropped_for_test", extra={"station": station, "counter": counter})
            return
        cmd = Command(kind, station, counter, int(self.clock() * 1000), body)
        data = sign_command(cmd, self.signing_key)
        if self._client is not None:
            self._client.publish(down_topic(station), data, qos=1)
        if kind == "ack":
            self.stats.acks_sent += 1
        else:
            self.stats.resend_requests += 1

    # --- gaps ------------------------------------------------------------------------------
    def check_gaps(self) -> None:
        """Ask stations for holes that stayed open past the grace period."""
        now = self.clock()
        behind = set(self.store.stations_behind())
        for station in list(self._holes):
            if station not in behind:
                del self._holes[station]
        for station in behind:
            known = self._holes.setdefault(station, {})
            current = self.store.holes(station)
            fresh: dict[int, _Hole] = {}
            for first, last in current:
                hole = known.get(first) or _Hole(last, now)
                hole.last = last
                fresh[first] = hole
            self._holes[station] = fresh
            due: list[tuple[int, int]] = []
            for first, hole in sorted(fresh.items()):
                if now - hole.first_seen < self.s.gap_grace_s:
                    continue
                if hole.requests and now - hole.last_request < self.s.gap_retry_s:
                    continue
                if hole.requests >= self.s.gap_max_requests:
                    log.warning(
                        "gap_abandoned",
                        extra={
                            "station": station,
                            "first": first,
                            "last": hole.last,
                            "requests": hole.requests,
                        },
                    )
                    self.store.give_up_gap(station, hole.last)
                    continue
                hole.requests += 1
                hole.last_request = now
                due.append((first, hole.last))
            if due and self._connected:
                due = due[:MAX_RANGES_PER_REQUEST]
                log.info(
                    "resend_request",
                    extra={"station": station, "ranges": ",".join(f"{a}-{b}" for a, b in due)},
                )
                self._send(station, "resend", self.store.next_counter(station), ranges_body(due))

    # --- MQTT ------------------------------------------------------------------------------
    def _new_client(self) -> mqtt.Client:
        s = self.s
        # No limit on acks in flight (0). Paho holds a QoS 1 publish back while its window of
        # unconfirmed ones is full, and the broker's PUBACKs for our acks reach us only behind
        # the packets it has already queued on this connection (we read it in order). In a
        # storm that queue is the whole backlog: with a window of 100, measured, the broker's
        # PUBACKs came one per 100 packets stored, so every ack after the 100th left at the
        # end of the drain (p50 commit-to-ack 1.6 s of a 4.5 s drain; 11 ms with no limit).
        # What it costs: paho keeps each ack (~200 bytes) until its PUBACK, at most one per
        # packet stored meanwhile, and sends them all again after a reconnect, as it would.
        client = tls_client(
            s.client_id, ca_cert=s.ca_cert, cert=s.cert, key=s.tls_key, max_inflight=0
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.error("receiver_refused", extra={"reason": str(reason)})
            return
        client.subscribe([(shared(self.s.group, UP_FILTER), 1), (STATE_FILTER, 1)])
        self._connected = True
        self._backoff.reset()
        log.info(
            "receiver_connected",
            extra={
                "broker": f"{self.s.host}:{self.s.port}",
                "group": self.s.group,
                "client_id": self.s.client_id,
            },
        )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if self._connected:
            log.warning("receiver_disconnected", extra={"reason": str(reason)})
        self._connected = False
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        self._next_attempt = self.clock() + self._backoff.next_delay()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/state"):
            log.info(
                "station_state",
                extra={
                    "topic": msg.topic,
                    "state": bytes(msg.payload[:200]).decode("utf-8", "replace"),
                },
            )
            station = station_of(msg.topic)
            if station is not None:  # the dashboard's online/offline
                try:
                    self.store.station_state(station, state_of(bytes(msg.payload)))
                except StoreUnavailableError as exc:  # a dashboard detail: not worth dying
                    self._store_failed(exc)
                else:
                    self._store_worked("state")
            return
        self.handle_packet(msg.topic, bytes(msg.payload), redelivery=bool(msg.dup))

    @property
    def connected(self) -> bool:
        return self._connected

    def step(self, timeout: float = 0.05) -> None:
        """One turn: try a store that is down when due, (re)connect when due, run the
        network loop, scan for gaps. The store first: its state does not depend on the
        broker's, and a receiver cut off from both says when its store is back."""
        self._probe_store(self.clock())
        if self._client is None:
            self._client = self._new_client()
            self._next_attempt = 0.0
        client = self._client
        if client.socket() is None:
            if self.clock() < self._next_attempt:
                time.sleep(timeout)
                return
            try:
                if self._dialled:
                    client.reconnect()  # same client: its unfinished acks go out again
                else:
                    self._dialled = True
                    client.connect(self.s.host, self.s.port, keepalive=self.s.keepalive)
            except (OSError, ValueError) as exc:
                log.warning("receiver_connect_failed", extra={"error": str(exc)})
                self._schedule_retry()
                return
        rc = client.loop(timeout)
        if rc != mqtt.MQTT_ERR_SUCCESS and self._connected:
            self._connected = False
            self._schedule_retry()
        now = self.clock()
        if now >= self._next_scan:
            self._next_scan = now + self.s.gap_scan_every_s
            if self.store_available:  # a packet is the probe; the scan would only fail too
                try:
                    self.check_gaps()
                except StoreUnavailableError as exc:
                    self._store_failed(exc)

    def run(self, should_stop: Callable[[], bool]) -> None:
        try:
            while not should_stop():
                self.step()
        finally:
            self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        self._connected = False
        if client is not None:
            client.disconnect()
        st = self.stats
        log.info("receiver_stopped", extra={
            "client_id": self.s.client_id, "packets": st.packets, "stored": st.stored,
            "records_stored": st.records_stored, "duplicates": st.duplicates,
            "rejected": st.rejected, "acks_sent": st.acks_sent,
            "resend_requests": st.resend_requests,
            "store_unavailable": st.store_unavailable})  # fmt: skip
