"""The MQTT uplink: drains the outbox to the centre as sealed packets over TLS.

One thread owns everything (the outbox is single-owner): ``step()`` runs paho's network loop
once, obeys the commands that arrived, tops up the window of packets in flight and requeues
what waited too long. Paho callbacks run inside ``step()``, on that same thread.

* TLS with the provisioned station certificate; the broker is checked against the centre's CA
  (hostname included). Persistent session (clean_session false, client id = station id), QoS 1.
  The client is ``protocol.mqtt_client.tls_client``, the one the centre's receiver uses too.
* Topics ``quantrac/v1/<id>/up`` (packets), ``.../down`` (signed commands), ``.../state``
  (retained ``online`` birth message with versions; the retained last will says ``offline``),
  as the enrolment bundle names them (``protocol.topics``, the centre's and the ACL's too).
* A record leaves the outbox only on the centre's signed ack; a broker PUBACK means nothing
  here. Unacked records go back to pending after ``ack_timeout`` and on every reconnect;
  a resend request makes the named records pending again. Oldest first, always.
* A fresh paho client per connection: paho would otherwise re-publish the very same bytes
  after a reconnect, and the centre treats a byte-identical packet that is not a broker
  redelivery as a replay. What was in flight is requeued and sealed anew instead.
* Nothing stored may be undeliverable. A record whose unit label breaks the label rule
  (``protocol.payload.unit_problem``: a control character, more than 32 characters; stored
  before ``config check`` refused such labels, or by a profile) would make the encoder refuse
  its whole batch, and with it every record behind it, for ever, oldest first. Such a record
  is sent with the label in the form ``safe_unit`` gives (controls escaped, cut to 32
  characters) and flagged ``UNIT_ESCAPED``, so the centre stores it and knows; the uplink
  logs it and says so in ``stats.problem`` (shown by ``quantrac status``).
* An exceedance reaches the centre at once. Oldest first would put a record over its limit
  behind whatever backlog a link cut left (a day of records, minutes to drain on a metered
  link), so each turn first sends the pending records flagged ``EXCEEDANCE`` (or
  ``SAMPLER_TRIGGERED``) in a packet of their own, then the oldest-first drain goes on. It is
  the same sealed packet on the same topic, acknowledged the same way, so nothing new is
  needed at the centre or in the broker's ACL; the centre sees a hole below it for a while
  (it may ask for it: those records are pending anyway, and arrive in order behind it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from buffer import Store
from edge_agent.uplinks.mqtt.command_gate import CommandGate
from edge_agent.uplinks.mqtt.inflight import InFlight
from edge_agent.uplinks.thread import UplinkThread
from protocol.backoff import Backoff
from protocol.clock import Clock
from protocol.envelope import (
    MAX_PACKET,
    SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305,
    VERSION,
    EnvelopeError,
    Header,
    batch_records,
    encode_records,
    parse_ranges,
    seal,
)
from protocol.model import Record, RecordFlag
from protocol.mqtt_client import tls_client
from protocol.payload import RECORD_SIZE, safe_unit, unit_problem
from provisioning.identity import StationIdentity

log = logging.getLogger("quantrac.edge_agent.uplink_mqtt")

#: records that jump the queue: an exceedance (and the sampler it triggered) is news now
URGENT_FLAGS = RecordFlag.EXCEEDANCE | RecordFlag.SAMPLER_TRIGGERED



def _package_version() -> str:
    try:
        return version("quantrac-edge")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class UplinkSettings:
    """Everything the uplink needs; ``from_identity`` builds it from a provisioned station.

    The tunables (window, ack timeout, pacing, back-off) come from ``[uplink.mqtt]`` or the
    command line; callers set them with :func:`dataclasses.replace`, which mypy checks."""

    station_id: str
    key_id: bytes
    signing_key: Ed25519PrivateKey = field(repr=False)
    centre_packet_public: X25519PublicKey = field(repr=False)
    centre_packet_key_id: bytes
    centre_signing_public: Ed25519PublicKey = field(repr=False)
    host: str
    port: int
    ca_cert: Path
    cert: Path
    tls_key: Path
    topic_up: str
    topic_down: str
    topic_state: str
    window: int = 8  # packets in flight
    max_packet: int = MAX_PACKET
    ack_timeout: float = 60.0  # seconds a packet may wait for the centre's ack
    keepalive: int = 30
    connect_timeout: float = 10.0
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    max_packets_per_s: float = 0.0  # 0: as fast as the link allows; else pace (metered links)

    @classmethod
    def from_identity(cls, ident: StationIdentity) -> UplinkSettings:
        """From ``provisioning.identity.load(state_dir)``; the tunables at their defaults."""
        return cls(
            station_id=ident.station_id,
            key_id=ident.key_id,
            signing_key=ident.signing_key,
            centre_packet_public=ident.centre_packet_public,
            centre_packet_key_id=ident.centre_packet_key_id,
            centre_signing_public=ident.centre_signing_public,
            host=ident.broker_host,
            port=ident.broker_port,
            ca_cert=ident.ca_cert_path,
            cert=ident.cert_path,
            tls_key=ident.tls_key_path,
            topic_up=ident.topics.up,
            topic_down=ident.topics.down,
            topic_state=ident.topics.state,
        )


@dataclass
class UplinkStats:
    """Counters for status displays and tests."""

    connects: int = 0
    disconnects: int = 0
    packets_sent: int = 0
    records_sent: int = 0
    records_acked: int = 0
    acks: int = 0
    resend_requests: int = 0
    commands_rejected: int = 0
    requeued: int = 0
    units_escaped: int = 0  # records sent with their unit label escaped (UNIT_ESCAPED)
    urgent_sent: int = 0  # records sent ahead of the backlog (URGENT_FLAGS: exceedances)
    problem: str | None = None  # what needs a person's attention; None when all is well


class MqttUplink:
    """Drives one station's MQTT link; call ``step()`` in a loop, or ``run()``."""

    def __init__(
        self,
        settings: UplinkSettings,
        outbox: Store,
        state_path: Path,
        clock: Clock = time.time,
        rand: Callable[[], float] = random.random,
        clock_trusted: Callable[[], bool] = lambda: True,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.clock = clock
        self.gate = CommandGate(
            settings.centre_signing_public, settings.station_id, state_path, clock,
            clock_trusted=clock_trusted,
        )
        self.backoff = Backoff(settings.backoff_base, settings.backoff_cap, rand)
        self.inflight = InFlight()
        self.stats = UplinkStats()
        self._client: mqtt.Client | None = None
        self._ready = False  # CONNACK accepted, subscribed: packets may go
        self._next_attempt = clock()
        self._next_send = 0.0  # pacing: when the next packet may leave
        self._outbox_empty = False
        self._stopped = False
        self._urgent_after = 0  # seqs up to here were looked at for URGENT_FLAGS
        # A fetch that nearly fills one packet (batch_records still splits exactly).
        self._batch_limit = max(1, (settings.max_packet - 2048) // RECORD_SIZE)

    @property
    def connected(self) -> bool:
        return self._ready

    @property
    def idle(self) -> bool:
        """Connected, nothing in flight and the outbox had nothing pending at the last look."""
        return self._ready and len(self.inflight) == 0 and self._outbox_empty

    # --- connection ----------------------------------------------------------------------
    def _new_client(self) -> mqtt.Client:
        s = self.settings
        client = tls_client(
            s.station_id, ca_cert=s.ca_cert, cert=s.cert, key=s.tls_key,
            max_inflight=max(20, 2 * s.window),
        )  # fmt: skip
        client.will_set(s.topic_state, self._state_payload("offline"), qos=1, retain=True)
        client.connect_timeout = s.connect_timeout
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _state_payload(self, state: str) -> bytes:
        body: dict[str, Any] = {"state": state, "station": self.settings.station_id}
        if state == "online":
            body["versions"] = {"quantrac-edge": _package_version(), "protocol": VERSION}
            body["t"] = round(self.clock(), 3)
        return json.dumps(body, sort_keys=True).encode()

    def _connect(self) -> None:
        client = self._new_client()
        try:
            s = self.settings
            client.connect(s.host, s.port, keepalive=s.keepalive)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            delay = self.backoff.next_delay()
            self._next_attempt = self.clock() + delay
            log.warning(
                "uplink_connect_failed",
                extra={
                    "broker": f"{self.settings.host}:{self.settings.port}",
                    "error": str(exc),
                    "retry_in_s": round(delay, 2),
                },
            )
            return
        self._client = client

    def _drop(self, why: str) -> None:
        client, self._client = self._client, None
        was_ready, self._ready = self._ready, False
        if client is not None:
            # Close the socket without a DISCONNECT packet: the broker then publishes our
            # last will (``offline``), which is the truth when the link failed.
            sock = client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        delay = self.backoff.next_delay()
        self._next_attempt = self.clock() + delay
        if was_ready:
            self.stats.disconnects += 1
        log.warning("uplink_disconnected", extra={"reason": why, "retry_in_s": round(delay, 2)})

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.error("uplink_refused", extra={"reason": str(reason)})
            self._drop(f"connack {reason}")
            return
        client.subscribe(self.settings.topic_down, qos=1)
        client.publish(self.settings.topic_state, self._state_payload("online"), qos=1, retain=True)
        requeued = self.outbox.requeue(None)
        self.inflight.clear()
        self.stats.requeued += requeued
        self.stats.connects += 1
        self.backoff.reset()
        self._ready = True
        log.info(
            "uplink_connected",
            extra={
                "broker": f"{self.settings.host}:{self.settings.port}",
                "requeued": requeued,
                "session_present": bool(getattr(flags, "session_present", False)),
            },
        )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if client is self._client:
            self._drop(f"disconnect {reason}")

    # --- commands from the centre ----------------------------------------------------------
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.settings.topic_down:
            return
        self.handle_command(bytes(msg.payload))

    def handle_command(self, data: bytes) -> None:
        """Obey a command that the centre signed for us; ignore and log anything else."""
        try:
            cmd = self.gate.open(data)
        except EnvelopeError as exc:
            self.stats.commands_rejected += 1
            log.warning("command_rejected", extra={"reason": exc.reason, "detail": str(exc)})
            return
        if cmd.kind == "ack":
            ranges = parse_ranges(cmd.body)
            n = self.outbox.acknowledge(ranges)
            log.debug("ack", extra={"counter": cmd.counter, "ranges": ranges, "acked": n})
            self.inflight.settle(ranges)
            self.stats.acks += 1
            self.stats.records_acked += n
        elif cmd.kind == "resend":
            ranges = parse_ranges(cmd.body)
            n = self.outbox.resend(ranges)
            self.inflight.drop_overlapping(ranges)
            self.stats.resend_requests += 1
            log.info(
                "resend_requested",
                extra={"ranges": ",".join(f"{a}-{b}" for a, b in ranges), "records": n},
            )
        else:
            log.info("command_ignored", extra={"kind": cmd.kind, "counter": cmd.counter})

    # --- the drain -------------------------------------------------------------------------
    def _pump(self, client: mqtt.Client) -> None:
        s = self.settings
        while self._ready and len(self.inflight) < s.window:
            if s.max_packets_per_s > 0 and self.clock() < self._next_send:
                return
            records = self._urgent() or self.outbox.next_batch(self._batch_limit)
            self._outbox_empty = not records
            if not records:
                return
            records = self._sendable(records)
            now = self.clock()
            for batch in batch_records(records, s.max_packet, len(s.station_id)):
                header = Header(
                    VERSION,
                    SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305,
                    s.station_id,
                    s.key_id,
                    s.centre_packet_key_id,
                    batch[0][0],
                    batch[-1][0],
                    int(now * 1000),
                )
                packet = seal(
                    header,
                    encode_records(batch),
                    s.signing_key,
                    s.centre_packet_public,
                    s.max_packet,
                )
                info = client.publish(s.topic_up, packet, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    return  # link gone: these records are requeued at the next connect
                self.inflight.add(batch[0][0], batch[-1][0], now)
                log.debug("packet_sent", extra={"first": batch[0][0], "last": batch[-1][0]})
                if s.max_packets_per_s > 0:
                    self._next_send = max(self._next_send, now) + 1.0 / s.max_packets_per_s
                self.stats.packets_sent += 1
                self.stats.records_sent += len(batch)

    def _urgent(self) -> list[tuple[int, Record]]:
        """Records over their limit that are still pending, ahead of the backlog (module doc)."""
        records, self._urgent_after = self.outbox.next_urgent(
            int(URGENT_FLAGS), self._urgent_after, self._batch_limit)
        if records:
            self.stats.urgent_sent += len(records)
            log.info("exceedance_sent_first", extra={
                "seqs": ",".join(str(seq) for seq, _ in records[:20]), "records": len(records)})
        return records

    def _sendable(self, records: list[tuple[int, Record]]) -> list[tuple[int, Record]]:
        """The records as they can go: a unit label that breaks the rule is escaped and the
        record flagged, so one bad label never holds back the batch (see the module doc)."""
        verdicts: dict[str, str | None] = {}
        escaped: dict[str, list[int]] = {}  # bad label -> seqs, for one log line per label
        out: list[tuple[int, Record]] = []
        for seq, rec in records:
            unit = rec.unit
            if unit not in verdicts:
                verdicts[unit] = unit_problem(unit)
            if verdicts[unit] is None:
                out.append((seq, rec))
                continue
            out.append((seq, replace(rec, unit=safe_unit(unit),
                                     flags=rec.flags | RecordFlag.UNIT_ESCAPED)))
            escaped.setdefault(unit, []).append(seq)
        for unit, seqs in escaped.items():
            why, sent_as = verdicts[unit], safe_unit(unit)
            self.stats.units_escaped += len(seqs)
            # the count first: `quantrac status` shows this within 80 columns
            self.stats.problem = (f"{self.stats.units_escaped} record(s) sent with unit "
                                  f"escaped, as {sent_as!r}: {why}; fix the unit label in the "
                                  "station config")
            log.warning(
                "record_unit_escaped",
                extra={"first": seqs[0], "last": seqs[-1], "records": len(seqs),
                       "unit": ascii(unit[:64]), "unit_chars": len(unit), "problem": why,
                       "sent_as": sent_as},
            )
        return out

    def _expire(self) -> None:
        oldest = self.inflight.oldest_sent_at()
        if oldest is None:
            return
        now = self.clock()
        if now - oldest < self.settings.ack_timeout:
            return
        n = self.outbox.requeue(older_than_s=self.settings.ack_timeout)
        self.inflight.expire(now - self.settings.ack_timeout)
        self.stats.requeued += n
        log.info("ack_timeout_requeued", extra={"records": n})

    def step(self, timeout: float = 0.05) -> None:
        """One turn: connect if due, run the network loop, obey commands, top up the window."""
        if self._client is None:
            wait = self._next_attempt - self.clock()
            if wait > 0:
                time.sleep(min(timeout, wait))
                return
            self._connect()
            if self._client is None:
                return
        client = self._client
        rc = client.loop(timeout)
        if client is not self._client:
            return  # dropped inside a callback
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self._drop(f"loop {mqtt.error_string(rc)}")
            return
        if self._ready:
            self._expire()
            self._pump(client)
            self.gate.save(force=False)

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Step until ``should_stop()``; then say goodbye properly."""
        try:
            while not should_stop():
                self.step()
        finally:
            self.close()

    def close(self, timeout: float = 2.0) -> None:
        """Publish the retained ``offline`` state, disconnect cleanly, persist the gate."""
        client, self._client = self._client, None
        if client is not None and self._ready:
            info = client.publish(
                self.settings.topic_state, self._state_payload("offline"), qos=1, retain=True
            )
            deadline = time.monotonic() + timeout
            while not info.is_published() and time.monotonic() < deadline:
                if client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                    break
            client.disconnect()
        self._ready = False
        self.gate.save(force=True)

    def stop(self) -> None:
        """The :class:`~edge_agent.uplinks.thread.Uplink` end: :meth:`close`, then ``stopped``."""
        self.close()
        self._stopped = True

    def status(self) -> dict[str, Any]:
        s = self.settings
        state = "stopped" if self._stopped else "connected" if self._ready else "connecting"
        return {"state": state, "detail": f"{s.host}:{s.port}", "stats": asdict(self.stats)}


def mqtt_thread(uplink: MqttUplink) -> UplinkThread[MqttUplink]:
    """``uplink`` on its own thread (``step`` waits in paho's loop, so no idle pause); after
    an error, a second of rest."""
    return UplinkThread(uplink, name="uplink", log=log, error_event="uplink_error",
                        error_pause_s=1.0, stop_error_event="uplink_close_failed")
