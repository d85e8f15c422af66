"""The uplink's sans-IO parts: back-off, the in-flight window, the command gate."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.uplinks.mqtt.command_gate import CommandGate
from edge_agent.uplinks.mqtt.inflight import InFlight
from protocol.backoff import Backoff
from protocol.envelope import Command, EnvelopeError, ranges_body, sign_command


def test_backoff_grows_exponentially_with_jitter_caps_and_resets() -> None:
    lo = Backoff(base=1.0, cap=8.0, rand=lambda: 0.0)
    hi = Backoff(base=1.0, cap=8.0, rand=lambda: 1.0)
    assert [lo.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [hi.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    lo.reset()
    assert lo.next_delay() == 0.5
    with pytest.raises(ValueError):
        Backoff(base=0.0)


def test_inflight_window_settles_expires_and_drops() -> None:
    w = InFlight()
    w.add(1, 100, sent_at=10.0)
    w.add(101, 200, sent_at=11.0)
    w.add(201, 300, sent_at=12.0)
    assert len(w) == 3 and w.oldest_sent_at() == 10.0
    assert w.settle([(1, 150)]) == 1  # 101..200 only half acked: still waiting
    assert len(w) == 2
    assert w.expire(sent_before=11.0) == 1
    assert w.drop_overlapping([(250, 250)]) == 1
    assert len(w) == 0 and w.oldest_sent_at() is None


class Centre:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.now = 1_800_000_000.0

    def cmd(self, counter: int, station: str = "S1", age_s: float = 0.0) -> bytes:
        body = ranges_body([(1, 10)])
        created = int((self.now - age_s) * 1000)
        return sign_command(Command("ack", station, counter, created, body), self.key)


def gate(centre: Centre, path: Path) -> CommandGate:
    return CommandGate(
        centre.key.public_key(), "S1", path, clock=lambda: centre.now, window=16, persist_every=0.0
    )


def reason(g: CommandGate, data: bytes) -> str:
    with pytest.raises(EnvelopeError) as err:
        g.open(data)
    return err.value.reason


def test_gate_accepts_reordered_counters_once_within_the_window(tmp_path: Path) -> None:
    c = Centre()
    g = gate(c, tmp_path / "gate.json")
    assert g.open(c.cmd(5)).counter == 5
    assert g.open(c.cmd(3)).counter == 3  # two receivers: a little out of order is fine
    assert reason(g, c.cmd(3)) == "replay"
    assert reason(g, c.cmd(5)) == "replay"
    g.open(c.cmd(40))
    assert reason(g, c.cmd(20)) == "replay"  # below the window now


def test_gate_refuses_foreign_stale_and_unsigned(tmp_path: Path) -> None:
    c = Centre()
    g = gate(c, tmp_path / "gate.json")
    assert reason(g, c.cmd(1, station="S2")) == "wrong_station"
    assert reason(g, c.cmd(2, age_s=3 * 86400)) == "stale_command"
    other = Centre()
    assert reason(g, other.cmd(3)) == "unknown_key"
    assert reason(g, b"junk") == "malformed"


def test_gate_high_water_survives_a_restart(tmp_path: Path) -> None:
    c = Centre()
    g = gate(c, tmp_path / "gate.json")
    g.open(c.cmd(7))
    g.save()
    again = gate(c, tmp_path / "gate.json")
    assert reason(again, c.cmd(7)) == "replay"
    assert reason(again, c.cmd(6)) == "replay"
    assert again.open(c.cmd(8)).counter == 8


def test_command_age_is_not_checked_against_an_untrusted_clock(tmp_path: Path) -> None:
    """A gateway whose clock is hours off (no RTC, NTP blocked) must still obey fresh acks;
    the counter window keeps refusing replays either way."""
    from protocol.envelope import STALE_COMMAND

    centre = Ed25519PrivateKey.generate()
    centre_now = 1_800_000_000.0
    station_now = centre_now - 6 * 3600  # six hours behind
    trusted = [True]
    gate = CommandGate(centre.public_key(), "ST-1", tmp_path / "gate.json",
                       lambda: station_now, clock_trusted=lambda: trusted[0])

    def command(counter: int) -> bytes:
        body = ranges_body([(1, 1)])
        return sign_command(Command("ack", "ST-1", counter, int(centre_now * 1000), body), centre)

    with pytest.raises(EnvelopeError) as err:
        gate.open(command(1))
    assert err.value.reason == STALE_COMMAND  # trusted clock: "from the future", refused
    trusted[0] = False
    assert gate.open(command(2)).counter == 2  # untrusted clock: counter only
    with pytest.raises(EnvelopeError):
        gate.open(command(2))  # a replay is still refused
