"""`quantrac centre query` and the serve/query config file, through the real CLI entry point.

Every test that reads a store runs on a SQLite file and on a PostgreSQL database
(``store_location``); the SQLite file's own mistakes (no such file, an outbox given) are
SQLite's alone."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from centre.serve_config import ConfigError, load
from centre.store import CentreStore
from centre.store_backends.postgresql import safe_name
from edge_agent.daemon.cli import main
from protocol.model import Record, RecordFlag, Status
from tests.mqtt_world import T0, make_records
from tests.pg_server import PgServer, execute_sql


@pytest.fixture
def store_path(store_location: Path | str) -> Path | str:
    path = store_location
    with CentreStore(path) as store:
        records = make_records(100)  # 20 five-minute windows x 5 channels from T0
        store.ingest("HCM-Q1", list(enumerate(records, start=1)), hashlib.sha256(b"x").digest(), 1)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["centre", "query", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_query_prints_the_range_in_the_station_zone(
    store_path: Path | str, capsys: pytest.CaptureFixture[str]
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
    store_path: Path | str, capsys: pytest.CaptureFixture[str]
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
    store_path: Path | str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
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
    store_location: Path | str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = store_location
    records = make_records(10)
    records[2] = replace(records[2], flags=RecordFlag.EXCEEDANCE)  # seq 3: over its limit
    with CentreStore(path) as store:
        store.ingest("HCM-Q2", list(enumerate(records[:5], start=1)), b"a" * 32, 1)
        store.ingest("HCM-Q2", list(enumerate(records[7:], start=8)), b"b" * 32, 2)
        store.security_event("HCM-Q2", "bad_signature", "packet 3 of 3")
    code = main(["centre", "stations", "--store", str(path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].split()[:2] == ["station", "records"]
    fields = out[1].split()
    # 8 records held, highest seq 10, everything up to 5 held, 2 seqs missing (6 and 7:
    # CentreStore.gaps, as the dashboard counts them; not the 5 above the mark)
    assert fields[:5] == ["HCM-Q2", "8", "10", "5", "2"]
    assert out[0].split()[-2:] == ["security", "exceed"]
    assert fields[-2:] == ["1", "1"]  # one security event, one record over its limit
    assert out[2].startswith("security  ")
    assert out[2].endswith("HCM-Q2  bad_signature  packet 3 of 3")


@pytest.mark.parametrize("fmt", [[], ["--format", "csv"]])
def test_a_row_stored_before_the_range_check_does_not_hide_the_station(
    store_path: Path | str, capsys: pytest.CaptureFixture[str], fmt: list[str]
) -> None:
    """A store written before the receiver refused years past 9999 may hold such a row; the
    query shows it as a raw epoch and every other record as usual."""
    far = 253_402_300_800 + 86_400  # 10000-01-02 UTC, past what a datetime holds
    execute_sql(store_path, 'UPDATE records SET start = ?, "end" = ? '
                "WHERE station = 'HCM-Q1' AND seq = 1", (far, far + 300))
    code, out, err = run(capsys, "--store", str(store_path), "--station", "HCM-Q1", *fmt)
    assert code == 0, err
    assert len(out.splitlines()) == (1 if fmt else 2) + 100  # heading(s), then every record
    assert f"@{far}" in out  # the table shows a window's start and its width (5m)
    assert not fmt or f"@{far + 300}" in out  # the CSV its end too
    assert main(["centre", "stations", "--store", str(store_path)]) == 0


QUANTRAC = Path(sys.executable).with_name("quantrac")


def quantrac(*argv: str | Path, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """The installed command, as an operator runs it (``env``: added to this environment)."""
    return subprocess.run([str(QUANTRAC), *map(str, argv)], capture_output=True, text=True,
                          timeout=120, env=None if env is None else {**os.environ, **env})


@pytest.fixture
def mixed_store(store_location: Path | str) -> Path | str:
    """One station, 1-minute and 5-minute windows, valid and invalid, as a 24 h pull mixes them."""
    path = store_location
    def rec(ch: str, start: int, width: int, n: int, exp: int, valid: bool,
            status: Status = Status.MEASURING, flags: RecordFlag = RecordFlag.NONE) -> Record:
        mean = math.nan if n == 0 else 7.25
        return Record(ch, start, start + width, mean, mean, mean, 0.0 if n else math.nan, n,
                      exp, valid, status, "mg/L", flags)
    records = [
        rec("COD", T0, 60, 6, 6, True, flags=RecordFlag.CLOCK_UNSYNCED | RecordFlag.PARTIAL),
        rec("COD", T0 + 60, 60, 2, 6, False),
        rec("COD", T0, 300, 44, 60, False),
        rec("NH4", T0, 300, 12, 60, False, Status.CALIBRATING),
        rec("NH4", T0 + 300, 300, 0, 60, False, Status.OFFLINE),
        rec("COD", T0 + 300, 300, 60, 60, True),
    ]
    with CentreStore(path) as store:
        store.ingest("HN-WW-01", list(enumerate(records, start=1)), b"m" * 32, 1)
        store.ingest("HN-WW-02", [(1, records[-1])], b"n" * 32, 1)
        store.ingest("HCM-Q\x1b[2J", [(1, records[-1])], b"o" * 32, 1)
    return path


def test_unknown_station_is_named_with_the_closest_known_ids(mixed_store: Path | str) -> None:
    done = quantrac("centre", "query", "--store", mixed_store, "--station", "hn-ww-01x")
    assert done.returncode == 1 and done.stdout == ""
    # the store by its name in messages: a file's path, a database's URL without the password
    name = safe_name(mixed_store) if isinstance(mixed_store, str) else str(mixed_store)
    assert (f"{name}: unknown station 'hn-ww-01x' (known: HN-WW-01, HN-WW-02, "
            "HCM-Q\\x1b[2J)") in done.stderr, done.stderr
    assert "\x1b" not in done.stderr
    # a known station with nothing in the range is an empty answer, not an error
    done = quantrac("centre", "query", "--store", mixed_store, "--station", "HN-WW-02",
                    "--to", "2020-01-01")
    assert done.returncode == 0 and done.stdout.startswith("# 0 records")
    done = quantrac("centre", "query", "--store", mixed_store, "--station", "HN-WW-01",
                    "--channel", "NH3")
    assert done.returncode == 1 and "HN-WW-01: unknown channel 'NH3' (known: NH4, COD)" in \
        done.stderr, done.stderr


def test_window_and_invalid_filters_and_reasons_in_80_columns(mixed_store: Path | str) -> None:
    done = quantrac("centre", "query", "--store", mixed_store, "--station", "HN-WW-01",
                    "--window", "300", "--invalid")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("# 3 records; times in Asia/Ho_Chi_Minh")
    assert max(len(line) for line in lines) <= 80
    at = lines[1].index("reason")
    assert [line[at:] for line in lines[2:]] == [
        "coverage 44/60 < 75%", "calibrating 12/60 valid", "offline"]
    assert all(line.split()[2] == "5m" for line in lines[2:])


def test_csv_flags_by_name_valid_yes_no_and_the_reason(mixed_store: Path | str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--store", str(mixed_store), "--station", "HN-WW-01",
                       "--format", "csv", "--window", "60")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 2
    assert (rows[0]["valid"], rows[0]["flags"], rows[0]["reason"]) == (
        "yes", "partial|clock_unsynced", "")
    assert (rows[1]["valid"], rows[1]["flags"], rows[1]["reason"]) == (
        "no", "", "coverage 2/6 < 75%")
    assert rows[0]["received"].endswith("+07:00") and rows[0]["window_s"] == "60"


def test_wide_shows_flags_and_counts(mixed_store: Path | str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--store", str(mixed_store), "--station", "HN-WW-01", "--wide",
                       "--channel", "COD", "--window", "60")
    lines = out.splitlines()
    assert code == 0
    assert lines[1].split()[-4:] == ["seq", "received", "flags", "reason"]
    assert lines[2].split()[8:11] == ["6/6", "yes", "measuring"]
    assert lines[2].split()[-1] == "partial|clock_unsynced"


def test_an_outbox_given_as_the_store_points_at_quantrac_history(tmp_path: Path) -> None:
    from buffer import Store

    outbox = tmp_path / "outbox.sqlite"
    with Store(outbox) as store:
        store.append(make_records(3))
    before = outbox.read_bytes()
    done = quantrac("centre", "query", "--store", outbox, "--station", "HN-WW-01")
    assert done.returncode == 1
    assert "no such column" not in done.stderr
    assert (f"{outbox}: that file is a station outbox, not a centre record store; a station's "
            f"own records are read with `quantrac history --store {outbox}`") in done.stderr
    assert outbox.read_bytes() == before
    assert quantrac("history", "--store", outbox).returncode == 0


def test_a_password_in_the_store_url_is_warned_of_and_never_shown(pg_server: PgServer,
                                                                   tmp_path: Path) -> None:
    """A password in ``--store`` is on every user's ``ps``: the command says so and where it
    belongs instead; neither the warning nor an error repeats it. Without one (``~/.pgpass``
    holds it, here $PGPASSFILE) there is no warning and the store opens all the same."""
    url = pg_server.fresh()
    with CentreStore(url) as store:
        store.ingest("HN-WW-01", [(1, make_records(1)[0])], b"p" * 32, 1)
    done = quantrac("centre", "stations", "--store", url)
    assert done.returncode == 0 and "HN-WW-01" in done.stdout, done.stderr
    assert "warning: a password on the command line is visible" in done.stderr, done.stderr
    assert "~/.pgpass" in done.stderr and pg_server.password not in done.stderr
    done = quantrac("centre", "query", "--store", url, "--station", "HN-WW-0")
    assert done.returncode == 1 and "unknown station 'HN-WW-0'" in done.stderr
    assert pg_server.password not in done.stderr + done.stdout

    bare = url.replace(f":{pg_server.password}@", "@")
    assert bare != url
    passfile = tmp_path / "pgpass"  # host:port:database:user:password
    passfile.write_text(f"*:*:*:*:{pg_server.password}\n")
    passfile.chmod(0o600)
    done = quantrac("centre", "stations", "--store", bare, env={"PGPASSFILE": str(passfile)})
    assert done.returncode == 0 and "HN-WW-01" in done.stdout, done.stderr
    assert "warning" not in done.stderr, done.stderr
