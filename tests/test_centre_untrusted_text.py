"""Station-chosen strings reach operators escaped: terminal tables, CSV export, log lines.

The stores here are real SQLite files. Hostile units and channel names are written straight
into the file, as a store filled before ingest checked them would hold them: what is shown
must be safe whatever the file holds.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from centre.store import CentreStore
from edge_agent.daemon import logs
from edge_agent.daemon.cli import main
from tests.mqtt_world import World, make_records, publish_as, wait_for, world_at
from tests.pg_server import execute_sql

HOSTILE_UNIT = "mg/L\x1b[2J\x1b]0;owned\x07\rFAKE"
FORMULA_UNIT = '=HYPERLINK("http://evil.example/","click")'
FORMULA_CHANNEL = "-2+3+cmd|'/Ccalc'!A0"
CONTROLS = ("\x1b", "\x07", "\r")


def _store(path: Path | str) -> Path | str:
    """A store (SQLite file or PostgreSQL URL, ``store_location``) holding hostile text."""
    records = make_records(10)
    with CentreStore(path) as store:
        store.ingest("HCM-T1", list(enumerate(records, start=1)), hashlib.sha256(b"t").digest(), 1)
    execute_sql(path, "UPDATE records SET unit = ? WHERE seq = 2", (HOSTILE_UNIT,))
    execute_sql(path, "UPDATE records SET unit = ? WHERE seq = 3", (FORMULA_UNIT,))
    execute_sql(path, "UPDATE records SET channel = ? WHERE seq = 4", (FORMULA_CHANNEL,))
    execute_sql(path, "UPDATE records SET mean = -2.5, min = -3.0 WHERE seq = 5")
    return path


def test_query_text_escapes_control_characters_from_the_station(
    store_location: Path | str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _store(store_location)
    code = main(["centre", "query", "--store", str(path), "--station", "HCM-T1"])
    out = capsys.readouterr().out
    assert code == 0
    assert not [c for c in CONTROLS if c in out], repr(out)
    assert len(out.splitlines()) == 2 + 10, "one line per record, no line broken by a CR"
    assert "mg/L\\x1b[2J\\x1b]0;owned\\x07\\rFAKE" in out  # visible, inert


def test_query_csv_neutralises_formula_cells_but_keeps_negative_numbers(
    store_location: Path | str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _store(store_location)
    code = main(["centre", "query", "--store", str(path), "--station", "HCM-T1", "--format",
                 "csv"])  # fmt: skip
    rows = {int(r["seq"]): r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert code == 0
    assert rows[3]["unit"] == "'" + FORMULA_UNIT
    assert rows[4]["channel"] == "'" + FORMULA_CHANNEL
    assert (rows[5]["mean"], rows[5]["min"]) == ("-2.5", "-3.0")  # numbers stay numbers
    assert rows[1]["unit"] == make_records(1)[0].unit  # ordinary text untouched


def test_stations_escapes_station_controlled_security_event_text(
    store_location: Path | str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _store(store_location)
    with CentreStore(path) as store:
        store.security_event(
            "HCM-T1", "bad_signature", "unknown station 'X\x1b[1A'\r\nsecurity  forged\x07"
        )
    code = main(["centre", "stations", "--store", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    assert not [c for c in CONTROLS if c in out], repr(out)
    # a long event wraps to 80 columns; its continuation is indented, so it cannot pass for
    # an event (or any line) of its own
    lines = [line for line in out.splitlines() if not line.startswith(" ")]
    assert len(lines) == 3, lines  # header, one station, one event: nothing forged
    event = out.splitlines()[2:]
    assert " ".join(" ".join(event).split()).endswith("\\x1b[1A'\\r\\nsecurity forged\\x07")


def test_logfmt_escapes_control_characters_so_no_line_can_be_forged() -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logs.LogfmtFormatter(timestamps=False))
    logger = logging.getLogger("quantrac.test.forge")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "station_state",
            extra={"state": "online\r\nlevel=error event=security_event\x1b[2K", "unit": "a\x85b"},
        )
    finally:
        logger.removeHandler(handler)
    text = buf.getvalue()
    assert len(text.splitlines()) == 1, repr(text)
    assert text.rstrip("\n").isprintable(), repr(text)
    assert 'state="online\\r\\nlevel=error event=security_event\\x1b[2K"' in text
    assert 'unit="a\\x85b"' in text


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from world_at(tmp_path)


def test_receiver_logs_a_stations_state_message_on_one_escaped_line(world: World) -> None:
    a = world.add_station("HCM-S01")
    world.start_centre()
    forged = b"online\rlevel=error logger=quantrac.centre.receiver event=security_event\x1b[2K"
    sd = a.state_dir
    publish_as(world, sd / "tls.crt", sd / "tls.key", "quantrac/v1/HCM-S01/state", forged)
    wait_for(lambda: "event=station_state" in world.log("centre.log"), 20, "the state logged")
    log = world.log("centre.log")
    assert "\r" not in log and "\x1b" not in log, repr(log)
    assert not [x for x in log.splitlines() if x.startswith("level=error")], log
    assert "online\\rlevel=error" in log
