"""Which centre commands the station obeys: signed by the centre, for us, fresh, never twice.

``protocol.envelope.open_command`` checks signature, addressee, age and ``counter >
last_counter``. Several centre receivers share one counter (allocated in the centre's store),
so their commands can arrive slightly out of order; a strict "greater than the last" would
drop a valid ack now and then. The gate therefore keeps an anti-replay window (as IPsec does):
a counter is accepted once, if it is above ``high - window`` and not seen before.

The high-water mark is persisted in a small JSON file so a restart does not reopen the door to
old commands; it is written at most once per ``persist_every`` seconds (and on ``close``),
since acks arrive many times a second and an SD card wears out. Losing the last second of it
to a power cut only lets a few already-obeyed commands be obeyed again, which is harmless:
an ack says what the centre truly stored, a resend request only costs a resend.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.envelope import REPLAY, Command, EnvelopeError, open_command

log = logging.getLogger("quantrac.edge_agent.command_gate")


class CommandGate:
    """Opens command bytes into ``Command`` or raises ``EnvelopeError`` (with its reason)."""

    def __init__(
        self,
        centre_verify: Ed25519PublicKey,
        station_id: str,
        state_path: Path,
        clock: Callable[[], float],
        window: int = 1024,
        persist_every: float = 1.0,
        clock_trusted: Callable[[], bool] = lambda: True,
    ) -> None:
        self.centre_verify = centre_verify
        self.station_id = station_id
        self.state_path = state_path
        self.clock = clock
        self.window = window
        self.persist_every = persist_every
        self.clock_trusted = clock_trusted
        self._age_checked = True
        self.high = self._load()
        self._floor = self.high  # after a restart nothing at or below the saved mark
        self._seen: set[int] = set()
        self._saved_high = self.high
        self._saved_at = clock()

    def _load(self) -> int:
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            log.error(
                "command_state_unreadable", extra={"path": str(self.state_path), "error": str(exc)}
            )
            return 0
        value = data.get("command_counter", 0) if isinstance(data, dict) else 0
        return int(value) if isinstance(value, int) and value >= 0 else 0

    def open(self, data: bytes) -> Command:
        """Verify ``data``; on success the command is marked seen and must be obeyed."""
        floor = max(self._floor, self.high - self.window)
        cmd = open_command(
            data,
            self.centre_verify,
            self.station_id,
            last_counter=floor,
            now_ms=self._now_ms(),
        )
        if cmd.counter in self._seen:
            raise EnvelopeError(REPLAY, f"command counter {cmd.counter} already obeyed")
        self._seen.add(cmd.counter)
        if cmd.counter > self.high:
            self.high = cmd.counter
            self._seen = {c for c in self._seen if c > self.high - self.window}
        self.save(force=False)
        return cmd

    def _now_ms(self) -> int | None:
        """The station's time for the age check, or None while its clock is not trusted.

        A gateway without an RTC and without NTP (blocked on many plant networks) can be hours
        off; checking command age against that clock would refuse every ack, and the outbox
        would never drain. The counter window still refuses any replay, so only the age check
        is suspended, and that is logged when it changes.
        """
        trusted = self.clock_trusted()
        if trusted != self._age_checked:
            self._age_checked = trusted
            (log.info if trusted else log.warning)(
                "command_age_check", extra={"checked": trusted,
                                            "reason": "clock synchronised" if trusted
                                            else "clock not synchronised: counter only"})
        return int(self.clock() * 1000) if trusted else None

    def save(self, force: bool = True) -> None:
        """Persist the high-water mark (rate-limited unless ``force``)."""
        now = self.clock()
        if self.high == self._saved_high:
            return
        if not force and now - self._saved_at < self.persist_every:
            return
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps({"command_counter": self.high}) + "\n")
        os.replace(tmp, self.state_path)
        self._saved_high = self.high
        self._saved_at = now
