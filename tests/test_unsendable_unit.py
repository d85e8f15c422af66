"""Issue 10, S5: one bad unit label must not block delivery. Records already stored with a unit
the label rule refuses (300 characters: more than the wire's 255 bytes; ESC/CR/LF) reach the
centre, with the label escaped and the record flagged ``UNIT_ESCAPED``, and the good records
batched with them arrive untouched; ``quantrac status`` shows the problem. The real agent
(`quantrac run`), Mosquitto and the centre receiver."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from buffer import Store
from edge_agent.console.control_client import request
from protocol.model import RecordFlag
from protocol.payload import safe_unit, same_record, unit_problem
from tests.agent_world import SID, StationWorld, station_world
from tests.mqtt_world import make_records, wait_for

pytestmark = pytest.mark.slow

LONG = "mg/L " * 60  # 300 characters
ESCAPING = "mg/L\x1b[2J\r\nFAKE 00"


@pytest.fixture
def sw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StationWorld]:
    yield from station_world(tmp_path, monkeypatch)


def test_records_with_a_bad_stored_unit_are_delivered_flagged_and_block_nothing(
        sw: StationWorld) -> None:
    assert unit_problem(LONG) and unit_problem(ESCAPING)
    stored = make_records(60)
    for i in range(0, 60, 5):  # every 5th record (one channel) carries a bad label
        stored[i] = replace(stored[i], unit=LONG if i % 10 == 0 else ESCAPING)
    with Store(sw.state_dir / "outbox.sqlite") as outbox:  # stored before the agent runs
        seqs = outbox.append(stored)
    agent = sw.start_agent()
    wait_for(lambda: sw.world.stored_count(SID) >= len(stored) + 8, 60,
             f"the stored records and live ones at the centre\n{sw.log()[-3000:]}", poll=0.2)
    at_centre = dict(sw.centre_records())
    for seq, want in zip(seqs, stored, strict=True):
        got = at_centre[seq]
        if unit_problem(want.unit) is None:
            assert same_record(got, want), (seq, got, want)
        else:
            assert got.unit == safe_unit(want.unit) and unit_problem(got.unit) is None
            assert got.flags == want.flags | RecordFlag.UNIT_ESCAPED
            assert same_record(replace(got, unit=want.unit, flags=want.flags), want)
    assert safe_unit(ESCAPING) == "mg/L\\x1b[2J\\r\\nFAKE 00"
    status = request(sw.socket, {"op": "status"})["status"]
    stats = status["uplink"]["stats"]
    assert stats["units_escaped"] >= 12  # more if a packet was resent after an ack timeout
    assert f"{stats['units_escaped']} record(s) sent with unit escaped" in stats["problem"]
    text = subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "status", "--socket",
                           str(sw.socket)], capture_output=True, text=True, timeout=60)
    assert any(line.startswith("! uplink ") and "record(s) sent with unit escaped" in line
               for line in text.stdout.splitlines()), text.stdout
    assert "event=record_unit_escaped" in sw.log()
    assert sw.stop_agent(agent) == 0
    with Store(sw.state_dir / "outbox.sqlite") as outbox:
        assert outbox.status().oldest_unacked_seq is None or \
            outbox.status().oldest_unacked_seq > seqs[-1]
