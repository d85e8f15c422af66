"""`quantrac centre query` and the serve/query config file, through the real CLI entry point."""

from __future__ import annotations

import csv
import hashlib
import io
import sqlite3
from pathlib import Path

import pytest

from centre.serve_config import ConfigError, load
from centre.store import CentreStore
from edge_agent.daemon.cli import main
from tests.mqtt_world import make_records


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "records.sqlite"
    with CentreStore(path) as store:
        records = make_records(100)  # 20 five-minute windows x 5 channels from T0
        store.ingest("HCM-Q1", list(enumerate(records, start=1)), hashlib.sha256(b"x").digest(), 1)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["centre", "query", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_query_prints_the_range_in_the_station_zone(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # T0 is 2026-09-21 21:15 in Asia/Ho_Chi_Minh; ask for 21:20 up to (not incl.) 21:30.
    code, out, _ = run(
        capsys,
        "--store",
        str(store_path),
        "--station",
        "HCM-Q1",
        "--from",
        "2026-09-21T21:20",
        "--to",
        "2026-09-21T21:30",
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "# 10 records; times in Asia/Ho_Chi_Minh (UTC+07:00)"
    assert lines[1].split() == ["time", "win", "channel", "value", "unit", "valid", "reason"]
    assert len(lines) == 2 + 10  # two windows x five channels
    assert all(line.startswith("2026-09-21 21:2") for line in lines[2:])
    offline = [line.split() for line in lines if line.endswith(" offline")]
    assert len(offline) == 1  # a window with no valid sample shows no invented number
    assert offline[0][2:] == ["5m", "Flow", "-", "m3/h", "no", "offline"]


def test_query_csv_export_round_trips_values(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "--store",
        str(store_path),
        "--station",
        "HCM-Q1",
        "--format",
        "csv",
        "--zone",
        "UTC",
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 100
    first = rows[0]
    assert first["start"] == "2026-09-21T14:15:00+00:00"
    want = make_records(100)[int(first["seq"]) - 1]
    assert float(first["mean"]) == want.mean and first["channel"] == want.channel
    assert any(r["mean"] == "" and r["status"] == "offline" for r in rows)


def test_query_refuses_bad_input_clearly(
    store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--store", str(store_path), "--station", "X", "--from", "noon")
    assert code == 1 and "--from: 'noon' is not a time" in err
    code, _, err = run(capsys, "--store", str(tmp_path / "nope.sqlite"), "--station", "X")
    assert code == 1 and "no such record store" in err
    code, _, err = run(capsys, "--store", str(store_path), "--station", "X", "--zone", "Mars/Base")
    assert code == 1 and "Mars/Base" in err


def test_config_file_is_checked_naming_file_key_and_value(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('centre_dir = "c"\n[broker]\nhost = "h"\nport = 70000\ncert = "a"\nkey = "b"\n')
    with pytest.raises(ConfigError, match=r"c\.toml: broker\.port = 70000: expected"):
        load(cfg)
    cfg.write_text('centre_dir = "c"\n[receiver]\ndrop_acks = -1\n')
    with pytest.raises(ConfigError, match=r"receiver\.drop_acks = -1: expected"):
        load(cfg)
    cfg.write_text('centre_dir = "c"\n')
    loaded = load(cfg)  # no [broker]: enough for `query`
    assert loaded.receiver is None and loaded.store == tmp_path / "c" / "records.sqlite"
    cfg.write_text(
        'centre_dir = "c"\n[broker]\nhost = "h"\nport = 1\ncert = "a"\nkey = "b"\n'
        '[receiver]\ngroup = "a/b"\n'
    )
    with pytest.raises(ConfigError, match=r"receiver\.group = 'a/b': expected"):
        load(cfg)
    cfg.write_text('centre_dir = "c"\nstorage = "x"\n')
    with pytest.raises(ConfigError, match="storage = 'x': expected a known key"):
        load(cfg)


def test_stations_summary_shows_gaps_and_security_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "records.sqlite"
    records = make_records(10)
    with CentreStore(path) as store:
        store.ingest("HCM-Q2", list(enumerate(records[:5], start=1)), b"a" * 32, 1)
        store.ingest("HCM-Q2", list(enumerate(records[7:], start=8)), b"b" * 32, 2)
        store.security_event("HCM-Q2", "bad_signature", "packet 3 of 3")
    code = main(["centre", "stations", "--store", str(path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].split()[:2] == ["station", "records"]
    fields = out[1].split()
    # 8 records held, highest seq 10, everything up to 5 held, 5 seqs not (yet) contiguous
    assert fields[:5] == ["HCM-Q2", "8", "10", "5", "5"]
    assert fields[-1] == "1"
    assert out[2].startswith("security  ")
    assert out[2].endswith("HCM-Q2  bad_signature  packet 3 of 3")


@pytest.mark.parametrize("fmt", [[], ["--format", "csv"]])
def test_a_row_stored_before_the_range_check_does_not_hide_the_station(
    store_path: Path, capsys: pytest.CaptureFixture[str], fmt: list[str]
) -> None:
    """A store written before the receiver refused years past 9999 may hold such a row; the
    query shows it as a raw epoch and every other record as usual."""
    far = 253_402_300_800 + 86_400  # 10000-01-02 UTC, past what a datetime holds
    with sqlite3.connect(store_path) as db:
        db.execute("UPDATE records SET start = ?, end = ? WHERE station = 'HCM-Q1' AND seq = 1",
                   (far, far + 300))
    code, out, err = run(capsys, "--store", str(store_path), "--station", "HCM-Q1", *fmt)
    assert code == 0, err
    assert len(out.splitlines()) == (1 if fmt else 2) + 100  # heading(s), then every record
    assert f"@{far}" in out  # the table shows a window's start and its width (5m)
    assert not fmt or f"@{far + 300}" in out  # the CSV its end too
    assert main(["centre", "stations", "--store", str(store_path)]) == 0
