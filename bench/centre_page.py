"""Server CPU time per centre dashboard station page: 30 channels x 7 days of 5-minute data.

A centre record store with one station of 30 channels, 7 days of 5-minute windows each
(60,480 records, one in twenty invalid with a reason, plus hourly and daily roll-ups as a
station sends them: the page picks its width), filled through ``CentreStore.ingest``. Timed
with ``time.process_time`` (the server's CPU, not the wall clock of a loaded machine): the
whole request through the application (``App.handle`` on ``/station?id=...&span=7d``, logged
in: open the store read-only, the overview row, the select, 30 SVG plots, the page), median
of ``--runs``. Baseline in the same run: the store's select of the same records alone (the
part ``centre query`` also pays). Target: under 1 s per page (issue 17, item 4).

Run: ``.venv/bin/python bench/centre_page.py [--runs N]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import urllib.parse
from pathlib import Path

from centre.serve_config import load
from centre.store import CentreStore
from centre.web.app import build
from protocol.model import Record, Status
from protocol.record_filter import RecordFilter
from protocol.web_app import Request

CHANNELS = 30
DAYS = 7
W = 300
STATION = "HCM-WW-0001"
T1 = 1_764_000_000 // 86_400 * 86_400
T0 = T1 - DAYS * 86_400


def records() -> list[tuple[int, Record]]:
    out: list[Record] = []
    for c in range(CHANNELS):
        ch = f"C{c:02d}"
        for width in (W, 3600, 86_400):
            for i in range((T1 - T0) // width):
                start = T0 + i * width
                bad = width == W and i % 20 == 7
                mean = 10.0 + c + (i % 50) * 0.1
                out.append(Record(ch, start, start + width, mean, mean, mean, 0.0,
                                  30 if bad else 60, 60, not bad, Status.MEASURING, "mg/L"))
    out.sort(key=lambda r: (r.start, r.end - r.start, r.channel))
    return list(enumerate(out, start=1))


def fill(path: Path) -> int:
    rows = records()
    with CentreStore(path, clock=lambda: float(T1)) as store:
        for k in range(0, len(rows), 2000):
            store.ingest(STATION, rows[k:k + 2000], k.to_bytes(32, "big"), 0)
        store.station_state(STATION, "online")
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        n = fill(d / "records.sqlite")
        (d / "centre.toml").write_text('centre_dir = "."\nstore = "records.sqlite"\n')
        cfg = load(d / "centre.toml")
        app = build(cfg, None)
        token = app.sessions.start(float(T1))
        target = "/station?" + urllib.parse.urlencode({"id": STATION, "span": "7d",
                                                       "to": str(T1)})
        req = Request.make("GET", target, {"Cookie": f"{app.cookie}={token}"}, client="bench")
        page_s, read_s = [], []
        size = 0
        for _ in range(args.runs):
            t = time.process_time()
            resp = app.handle(req, float(T1))
            page_s.append(time.process_time() - t)
            assert resp.status == 200, resp.body[:300]
            size = len(resp.body)
            t = time.process_time()
            with CentreStore(cfg.store, read_only=True) as store:
                got = store.select(RecordFilter(station=STATION, t0=T0, t1=T1))
            read_s.append(time.process_time() - t)
        shaded = resp.body.count(b'class="invalid"')
        page, read = statistics.median(page_s), statistics.median(read_s)
        print(f"store: {n} records ({CHANNELS} channels x {DAYS} days of 5-minute windows "
              f"and their hourly/daily roll-ups); page {size / 1e6:.1f} MB, {shaded} shaded "
              f"bands; baseline select: {len(got)} records")
        print(f"station page CPU {page:.3f} s (target < 1 s: "
              f"{'met' if page < 1 else 'NOT met'}), select alone {read:.3f} s, "
              f"ratio {page / read:.1f}x; median of {args.runs}")


if __name__ == "__main__":
    main()
