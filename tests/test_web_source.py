"""The station page's reads: the records it keeps between pages are the reader's, exactly.

``edge_agent.web.source`` keeps the records of a plotted width and reads only those stored
since the last page (``RecordFilter.after_seq``). Whatever arrives between two pages (the
next window, a late record of an old window, a record that fails its checksum) must come out
as ``OutboxReader.select`` gives it for the same filter: the page and ``quantrac history``
never disagree."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from buffer import Store
from buffer.outbox_read import OutboxReader
from edge_agent.config.reader import load_config
from edge_agent.web.source import StationSource
from protocol.model import Record, Status
from protocol.record_filter import RecordFilter

W = 300
T0 = 1_790_000_100 // W * W
CONFIG = """\
[station]
id = "HCM-WEB-01"
[agent]
state_dir = "{state}"
[[bus]]
name = "lan"
host = "127.0.0.1"
tcp_port = 1502
[[device]]
name = "liquiline"
bus = "lan"
profile = "liquiline"
unit = 1
interval = 10.0
channels = ["pH", "Temp"]
[averaging]
windows = [60, 300]
"""


def _rec(channel: str, k: int, width: int = W, n: int = 30) -> Record:
    start = T0 + k * width
    return Record(channel, start, start + width, 7.0 + k / 10, 7.0, 7.5, 0.1, n, 30, n >= 23,
                  Status.MEASURING if n else Status.OFFLINE, "pH")


def test_kept_records_equal_a_fresh_read_after_each_change(tmp_path: Path) -> None:
    (tmp_path / "station.toml").write_text(CONFIG.format(state=tmp_path))
    src = StationSource(load_config(tmp_path / "station.toml"))
    wanted = RecordFilter(t0=T0 + 10 * W, t1=T0 + 200 * W, window_s=W)

    def fresh() -> tuple[list[tuple[int, Record]], list[int]]:
        with OutboxReader(src.outbox) as outbox:
            sel = outbox.select(wanted)
        return [(r.seq, r.record) for r in sel.records], sel.unsound

    def page() -> tuple[list[tuple[int, Record]], list[int]]:
        sel = src.records(wanted)
        return [(r.seq, r.record) for r in sel.records], sel.unsound

    with Store(src.outbox) as store:
        store.append([_rec(c, k) for k in range(100) for c in ("pH", "Temp")])
        store.append([_rec("pH", k, 60) for k in range(50)])
    assert page() == fresh() and len(page()[0]) == 180
    with Store(src.outbox) as store:  # the next windows, a late one, another width
        store.append([_rec("pH", k) for k in range(100, 120)])
        store.append([_rec("Temp", 5), _rec("Temp", 15, n=0), _rec("pH", 300, 60)])
        bad = store.append([_rec("Temp", 16)])[0]
    with sqlite3.connect(src.outbox) as conn:  # a record whose checksum no longer holds
        conn.execute("UPDATE records SET mean = 99.0 WHERE seq = ?", (bad,))
    got = page()
    assert got == fresh()
    assert bad in got[1] and len(got[0]) == 201
    assert any(r.channel == "Temp" and r.start == T0 + 15 * W for _, r in got[0])  # late
    assert page() == fresh()  # nothing new: the same again
