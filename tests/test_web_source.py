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


C10 = """\
[uplink.circular10]
host = "127.0.0.1"
directory = "/incoming"
[uplink.circular10.receiver]
file_prefix = "HCM_ACME_OUTF1_"
transport = "ftp"
"""


def test_the_circular10_files_last_sent_and_the_uplinks_on_the_page(tmp_path: Path) -> None:
    from edge_agent.uplinks.circular10.uplink import SPOOL_NAME, Spool
    from edge_agent.web import render
    from edge_agent.web.source import SHOWN_SENT, AgentStatus

    (tmp_path / "station.toml").write_text(CONFIG.format(state=tmp_path) + C10)
    cfg = load_config(tmp_path / "station.toml")
    src = StationSource(cfg)
    assert src.circular10_sent() == []  # the uplink has not run yet: no spool, none sent
    spool = Spool(tmp_path / SPOOL_NAME)
    for k in range(8):
        (spool.sent / Spool.key(T0 + k * W, f"HCM_ACME_OUTF1_{k}<b>.txt")).write_text("x\n")
    (spool.pending / Spool.key(T0 + 9 * W, "HCM_ACME_OUTF1_9.txt")).write_text("x\n")
    sent = src.circular10_sent()
    assert [f.window_start for f in sent] == [T0 + k * W for k in range(7, 7 - SHOWN_SENT, -1)]
    assert sent[0].name == "HCM_ACME_OUTF1_7<b>.txt"
    status = {"ready": True, "started": T0, "channels": [], "clock": {"synchronised": True},
              "outbox": {"unacked": 3, "in_flight": 1, "oldest_unacked_start": T0,
                         "last_seq": 9},
              "uplink": {"state": "connected", "detail": "broker:8883",
                         "stats": {"records_acked": 6, "disconnects": 0}},
              "uplink_circular10": {"state": "sending", "detail": "ftp://127.0.0.1/incoming",
                                    "stats": {"files_sent": 8, "pending": 1,
                                              "last_error": "530 <login> incorrect"}}}
    period = render.Period(T0, T0 + 86400, W, "24h")
    page = render.station_page(cfg, AgentStatus(status), src.records(
        RecordFilter(t0=T0, t1=T0 + 86400, window_s=W)), sent, period, [60, W],
        src.thresholds, T0 + 3000.0)
    assert "HCM_ACME_OUTF1_7&lt;b&gt;.txt" in page and "<b>.txt" not in page
    assert "8 sent, 1 pending; 530 &lt;login&gt; incorrect" in page
    assert ">connected<" in page and "3 records not acknowledged (1 in flight)" in page
    down = render.station_page(cfg, AgentStatus(None, "no agent on /run/x.sock"),
                               src.records(RecordFilter(t0=T0, t1=T0 + 86400, window_s=W)),
                               sent, period, [60, W], src.thresholds, T0 + 3000.0)
    assert "The agent is not answering: no agent on /run/x.sock" in down
    assert "HCM_ACME_OUTF1_7&lt;b&gt;.txt" in down  # the spool is read without the agent
