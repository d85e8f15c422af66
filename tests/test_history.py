"""`quantrac history`: the station's own records, from a real outbox written by ``buffer.Store``,
read by the installed command (and by the entry point where only the output matters)."""

from __future__ import annotations

import csv
import io
import math
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from buffer import Store
from edge_agent.daemon.cli import main
from protocol.model import Record, RecordFlag, Status

ROOT = Path(__file__).resolve().parents[1]
QUANTRAC = Path(sys.executable).with_name("quantrac")
T0 = 1_790_000_100 - 1_790_000_100 % 300  # 2026-09-21 21:15 in Asia/Ho_Chi_Minh


def _rec(channel: str, start: int, width: int, n_valid: int, n_expected: int, valid: bool,
         status: Status = Status.MEASURING, unit: str = "mg/L",
         flags: RecordFlag = RecordFlag.NONE) -> Record:
    if n_valid == 0:
        return Record(channel, start, start + width, math.nan, math.nan, math.nan, math.nan,
                      0, n_expected, valid, status, unit, flags)
    return Record(channel, start, start + width, 50.5, 49.25, 52.0, 0.5, n_valid, n_expected,
                  valid, status, unit, flags)


#: five 1-minute COD windows (the fourth short of samples), two 5-minute windows of COD and pH:
#: pH calibrating through most of the first, the analyser silent in the second; and a second
#: record of a window already stored (the clock went back): every kind of invalid window
RECORDS = [
    *(_rec("COD", T0 + 60 * i, 60, 6, 6, True, flags=RecordFlag.CLOCK_UNSYNCED)
      for i in (0, 1, 2)),
    _rec("COD", T0 + 180, 60, 4, 6, False),
    _rec("COD", T0 + 240, 60, 6, 6, True),
    _rec("COD", T0, 300, 28, 30, True),
    _rec("pH", T0, 300, 12, 60, False, Status.CALIBRATING, ""),
    _rec("COD", T0 + 300, 300, 30, 30, True),
    _rec("pH", T0 + 300, 300, 0, 60, False, Status.OFFLINE, ""),
    _rec("COD", T0 + 300, 300, 29, 30, False, flags=RecordFlag.CLOCK_JUMP),
]
#: the reason of each invalid record, by seq (the outbox numbers RECORDS from 1)
REASONS = {4: "coverage 4/6 < 75%", 7: "calibrating 12/60 valid", 9: "offline", 10: "clock jump"}


def _table_start(rec: Record) -> str:
    """The table's first three cells of ``rec``: local date and time, window."""
    minute = 15 + (rec.start - T0) // 60
    return f"2026-09-21 21:{minute:02d}  {'1m' if rec.end - rec.start == 60 else '5m'}"


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "outbox.sqlite"
    path.parent.mkdir()
    with Store(path, lambda: T0 + 900.0) as store:
        store.append(RECORDS)
        store.next_batch(3)
        store.acknowledge([(1, 2)])  # seq 1-2 acked, 3 sent, the rest pending
    return path


def quantrac(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    """The installed command, as an operator runs it."""
    return subprocess.run([str(QUANTRAC), *map(str, argv)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["history", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_shows_every_window_with_its_reason_in_80_columns(outbox: Path) -> None:
    done = quantrac("history", "--store", outbox)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == f"# {len(RECORDS)} records; times in Asia/Ho_Chi_Minh (UTC+07:00)"
    assert lines[1].split() == ["time", "win", "channel", "value", "unit", "valid", "reason"]
    assert max(len(line) for line in lines) <= 80, done.stdout
    rows = lines[2:]
    assert len(rows) == len(RECORDS)
    assert rows[0].split()[:7] == ["2026-09-21", "21:15", "1m", "COD", "50.5", "mg/L", "yes"]
    for seq, why in REASONS.items():
        rec = RECORDS[seq - 1]
        found = [r for r in rows if r.startswith(_table_start(rec)) and r.endswith(why)]
        assert len(found) == 1, (seq, why, done.stdout)
        assert found[0].split()[3] == rec.channel and " no " in found[0]
    valid_rows = [r for r in rows if " yes" in r]
    assert all(r.rstrip().endswith("yes") for r in valid_rows), "a valid window has no reason"


def test_window_invalid_channel_and_time_filters(outbox: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--store", outbox, "--window", "300")
    rows = out.splitlines()[2:]
    assert code == 0 and len(rows) == 5 and all(r.split()[2] == "5m" for r in rows)
    assert run(capsys, "--store", outbox, "--window", "5m")[1] == out
    code, out, _ = run(capsys, "--store", outbox, "--invalid")
    rows = out.splitlines()[2:]
    assert code == 0 and len(rows) == 4 and all(" no " in r for r in rows)
    code, out, _ = run(capsys, "--store", outbox, "--invalid", "--window", "60",
                       "--channel", "COD")
    assert [r.split()[-4:] for r in out.splitlines()[2:]] == [["coverage", "4/6", "<", "75%"]]
    code, out, _ = run(capsys, "--store", outbox, "--from", "2026-09-21T21:20",
                       "--to", "2026-09-21T21:25")
    assert code == 0 and len(out.splitlines()) == 2 + 3  # the 5-minute windows of 21:20
    code, again, _ = run(capsys, "--store", outbox, "--last", "5m", "--to", "2026-09-21T21:25")
    assert again == out


def test_csv_has_flag_names_yes_no_reason_and_the_outbox_state(outbox: Path) -> None:
    done = quantrac("history", "--store", outbox, "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == len(RECORDS)
    by_seq = {int(r["seq"]): r for r in rows}
    first = by_seq[1]
    assert first["start"] == "2026-09-21T21:15:00+07:00"
    assert (first["valid"], first["flags"], first["state"]) == ("yes", "clock_unsynced", "acked")
    assert (by_seq[3]["state"], by_seq[4]["state"]) == ("sent", "pending")
    assert {r["valid"] for r in rows} == {"yes", "no"}
    assert by_seq[10]["flags"] == "clock_jump"
    for seq, rec in enumerate(RECORDS, start=1):
        row = by_seq[seq]
        assert int(row["window_s"]) == rec.end - rec.start
        assert row["reason"] == REASONS.get(seq, "")


def test_wide_adds_counts_status_state_and_flags(outbox: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--store", outbox, "--wide", "--window", "60")
    lines = out.splitlines()
    assert code == 0
    assert lines[1].split() == ["time", "win", "channel", "value", "min", "max", "unit", "n/exp",
                                "valid", "status", "seq", "state", "flags", "reason"]
    assert lines[2].split()[2:] == ["1m", "COD", "50.5", "49.25", "52", "mg/L", "6/6", "yes",
                                    "measuring", "1", "acked", "clock_unsynced"]


def test_config_gives_the_outbox_the_zone_and_the_stations_own_threshold(
    outbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "examples" / "wastewater.toml").read_text()
    text = text.replace('state_dir = "/tmp/quantrac-example/wastewater"',
                        f'state_dir = "{outbox.parent}"')
    text = text.replace('windows = [300]\nrule = "coverage_75"\n',
                        'windows = [60, 300]\nrule = "coverage_75"\nmin_fraction = 0.8\n')
    text = text.replace('timezone = "Asia/Ho_Chi_Minh"', 'timezone = "Asia/Bangkok"')
    config = tmp_path / "station.toml"
    config.write_text(text)
    code, out, err = run(capsys, "--config", config, "--invalid")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "# 4 records; times in Asia/Bangkok (UTC+07:00)"
    assert any(line.endswith("coverage 4/6 < 80%") for line in lines), out


def test_unknown_channel_and_files_that_are_not_an_outbox(
    outbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = quantrac("history", "--store", outbox, "--channel", "CDO")
    assert done.returncode == 1 and done.stdout == ""
    assert f"{outbox}: unknown channel 'CDO' (known: COD, pH)" in done.stderr
    code, _, err = run(capsys, "--store", tmp_path / "missing.sqlite")
    assert code == 1 and "missing.sqlite: no such outbox file" in err
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n")
    code, _, err = run(capsys, "--store", notes)
    assert code == 1 and f"{notes}: not a station outbox" in err
    assert notes.read_text() == "not a database\n"
    from centre.store import CentreStore
    with CentreStore(tmp_path / "records.sqlite"):
        pass
    code, _, err = run(capsys, "--store", tmp_path / "records.sqlite")
    assert code == 1 and "is a centre record store" in err
    assert "quantrac centre query --store" in err


def test_history_only_reads_and_leaves_out_records_whose_checksum_fails(
    outbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = sqlite3.connect(outbox)
    with conn:
        conn.execute("UPDATE records SET mean = 99.0 WHERE seq = 2")  # a flipped stored value
    conn.close()
    copy = tmp_path / "before.sqlite"
    shutil.copy(outbox, copy)
    code, out, err = run(capsys, "--store", outbox, "--format", "csv")
    assert code == 0
    seqs = [int(r["seq"]) for r in csv.DictReader(io.StringIO(out))]
    assert 2 not in seqs and len(seqs) == len(RECORDS) - 1
    assert "1 record(s) left out" in err and "seq 2" in err
    assert outbox.read_bytes() == copy.read_bytes(), "history wrote to the outbox"
    quarantined = sqlite3.connect(outbox).execute(
        "SELECT count(*) FROM records WHERE quarantined_at IS NOT NULL").fetchone()[0]
    assert quarantined == 0, "quarantining is the agent's, not a reader's"


def test_bad_options_are_named(outbox: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--store", outbox, "--window", "five")
    assert code == 1 and "--window: 'five' is not a duration" in err
    code, _, err = run(capsys, "--store", outbox, "--last", "24h", "--from", "2026-09-21")
    assert code == 1 and "--last and --from" in err
    code, _, err = run(capsys, "--store", outbox, "--from", "2026-09-22", "--to", "2026-09-21")
    assert code == 1 and "--to '2026-09-21' is not after" in err
