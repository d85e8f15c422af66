"""`centre query` and `centre stations` only read: a file that is not a record store is refused
by name and left exactly as it was (never renamed aside, never given tables)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from centre import authority
from edge_agent.daemon.cli import main

NOTES = b'[site]\nname = "Nghi Son"\n# not a database\n'


def _files(directory: Path) -> set[str]:
    """The names in ``directory`` but SQLite's own side files (a reader of a WAL file may
    need a -shm; the database file itself is what must not change)."""
    return {p.name for p in directory.iterdir() if not p.name.endswith(("-wal", "-shm"))}


def _schema(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [(str(n), str(s)) for n, s in conn.execute("SELECT name, sql FROM sqlite_master")]
    finally:
        conn.close()


@pytest.mark.parametrize("command", ["query", "stations"])
def test_read_commands_refuse_a_file_that_is_not_a_database_and_leave_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    notes = tmp_path / "notes.toml"
    notes.write_bytes(NOTES)
    before = _files(tmp_path)
    extra = ["--station", "HCM-Q1"] if command == "query" else []
    code = main(["centre", command, "--store", str(notes), *extra])
    out, err = capsys.readouterr()
    assert code != 0
    assert f"{notes}: not a centre record store" in err, err
    assert "0 records" not in out
    assert notes.read_bytes() == NOTES
    assert _files(tmp_path) == before, "nothing moved aside, nothing created"


@pytest.mark.parametrize("command", ["query", "stations"])
def test_read_commands_refuse_another_sqlite_database_without_adding_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    centre = authority.init(tmp_path / "centre")
    registry = centre.dir / "registry.sqlite"
    schema, data = _schema(registry), registry.read_bytes()
    before = _files(centre.dir)
    extra = ["--station", "HCM-Q1"] if command == "query" else []
    code = main(["centre", command, "--store", str(registry), *extra])
    err = capsys.readouterr().err
    assert code != 0
    assert f"{registry}: not a centre record store (no table records" in err, err
    assert _schema(registry) == schema, "no record tables added to the registry"
    assert registry.read_bytes() == data
    assert _files(centre.dir) == before
