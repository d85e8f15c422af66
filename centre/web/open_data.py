"""What the centre publishes without login: VN_AQI and the latest validated averages.

The public page and the feed (``/open-data/v1/...``, documented field by field in
``docs/open-data.md``) show the same numbers, worked out here once from the store's reads
(``CentreStore.select``, ``latest_valid``: the ones ``centre query`` uses), and only for the
stations and channels the config marks public (``centre.web_config``): every record is
filtered by the channel allow-list before anything is computed from it, so neither a value
nor an index built from one can leak a channel that is not public.

* **AQI** (``centre.aqi``, Decision 1459/QĐ-TCMT): the hourly index of the newest hour that
  has a PM10 or PM2.5 hourly mean (no older than ``CURRENT_HOURS``: an index of yesterday is
  not "current"), from the station's 1-hour records (and the 11 before it, for the NowCast);
  the daily index of the last complete local day (the station's zone in the centre config).
* **Latest**: per public channel and window width, the newest valid record of the last
  3 days (``LATEST_S``: a channel silent longer than that is not "latest"), with its
  exceedance flag (the station judged it against its permit: ``RecordFlag.EXCEEDANCE``), and
  per station the count of records flagged over their limit in the last 24 hours and the
  newest ``SHOWN_EXCEEDANCES`` of them (which channel, when, how much: what an IOC acts on).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from centre import aqi
from centre.store import CentreStore, StoredRecord
from centre.web_config import PublicStation
from protocol.model import RecordFlag, Status
from protocol.record_filter import RecordFilter
from protocol.record_view import flag_names, iso
from protocol.safe_text import csv_cell, escape_controls

#: how old the newest hourly PM mean may be for its index to be "current"
CURRENT_HOURS = 3
#: how far back "latest" looks: yesterday's daily record starts up to 48 h before now
LATEST_S = 3 * 86_400
VERSION = "v1"
#: exceedances named per station (newest first); the count says how many there were
SHOWN_EXCEEDANCES = 20


@dataclass(frozen=True)
class AqiReport:
    """One station's index for one period: ``hourly`` (the hour ``[start, end)``) or
    ``daily`` (a local day); ``index`` None when there is none (no data: ``why``)."""

    station: PublicStation
    period: str
    start: int | None
    end: int | None
    index: aqi.Index | None
    why: str = ""


def ambient(ps: PublicStation, table: aqi.Table) -> bool:
    """Whether ``ps`` publishes a PM10 or PM2.5 channel: an air quality station, which has an
    index (the decision makes one of the two mandatory); a facility's outfall has none."""
    return any(table.pollutant_of(ch) in aqi.PM for ch in ps.channels)


def _public(records: Sequence[StoredRecord], ps: PublicStation) -> list[StoredRecord]:
    allowed = set(ps.channels)
    return [r for r in records if r.record.channel in allowed]


def hourly_report(store: CentreStore, ps: PublicStation, now: float,
                  table: aqi.Table) -> AqiReport:
    """The current hourly AQI of ``ps`` (module docstring)."""
    newest = int(now // aqi.HOUR) * aqi.HOUR
    t0 = newest - (CURRENT_HOURS + aqi.NOWCAST_HOURS) * aqi.HOUR
    records = _public(store.select(RecordFilter(station=ps.station, t0=t0, window_s=aqi.HOUR)),
                      ps)
    hourly = aqi.hourly_means(table, [r.record for r in records])
    pm_hours = [h for key in aqi.PM for h in hourly.get(key, {})]
    recent = [h for h in pm_hours if h + aqi.HOUR <= now + 1 and
              h >= newest - CURRENT_HOURS * aqi.HOUR]
    if not recent:
        return AqiReport(ps, "hourly", None, None, None,
                         f"no valid hourly PM10 or PM2,5 mean in the last {CURRENT_HOURS} h")
    hour = max(recent)
    idx = aqi.hourly_aqi(table, hourly, hour)
    return AqiReport(ps, "hourly", hour, hour + aqi.HOUR, idx, idx.why)


def local_midnight(t: float, tz: ZoneInfo) -> int:
    day = dt.datetime.fromtimestamp(t, tz).date()
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())


def daily_report(store: CentreStore, ps: PublicStation, now: float, tz: ZoneInfo,
                 table: aqi.Table) -> AqiReport:
    """The daily AQI of the last complete local day."""
    today = local_midnight(now, tz)
    day = local_midnight(today - 1, tz)
    records = _public(store.select(RecordFilter(
        station=ps.station, t0=day - 7 * aqi.HOUR, t1=today, window_s=aqi.HOUR)), ps)
    idx = aqi.daily_aqi(table, aqi.hourly_means(table, [r.record for r in records]), day)
    why = idx.why if idx.value is not None or idx.sub else (
        f"fewer than {aqi.DAY_MIN_HOURS} valid hourly PM10 or PM2,5 means that day")
    return AqiReport(ps, "daily", day, today, idx, why)


@dataclass(frozen=True)
class Latest:
    station: PublicStation
    records: list[StoredRecord]
    exceedances_24h: int
    exceeded: list[StoredRecord]  # the newest of them, newest first (public channels only)


def latest(store: CentreStore, ps: PublicStation, now: float,
           window_s: int | None = None) -> Latest:
    """The newest valid record per public channel and width (``window_s``: only that one)."""
    records = [r for r in _public(store.latest_valid(ps.station, now - LATEST_S), ps)
               if window_s is None or r.record.end - r.record.start == window_s]
    counts = store.exceedance_counts(ps.station, now - 86_400)
    over = store.exceedances(ps.station, sorted(ps.channels), now - 86_400, SHOWN_EXCEEDANCES)
    return Latest(ps, records, sum(n for ch, n in counts.items() if ch in ps.channels), over)


# --- rendering -------------------------------------------------------------------------------
def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def aqi_item(rep: AqiReport, tz: ZoneInfo) -> dict[str, Any]:
    idx = rep.index
    band = None if idx is None else idx.band
    return {
        "station": escape_controls(rep.station.station),
        "name": escape_controls(rep.station.name),
        "period": rep.period,
        "start": None if rep.start is None else iso(rep.start, tz),
        "end": None if rep.end is None else iso(rep.end, tz),
        "aqi": None if idx is None else idx.value,
        "category": None if band is None else band.vi,
        "category_en": None if band is None else band.en,
        "colour": None if band is None else band.hex,
        "dominant": None if idx is None else idx.dominant,
        "sub_indices": {} if idx is None else dict(sorted(idx.sub.items())),
        "concentrations": {} if idx is None else {
            k: round(v, 3) for k, v in sorted(idx.inputs.items())},
        "note": rep.why,
    }


def record_item(r: StoredRecord, tz: ZoneInfo) -> dict[str, Any]:
    rec = r.record
    return {
        "channel": escape_controls(rec.channel),
        "start": iso(rec.start, tz),
        "end": iso(rec.end, tz),
        "window_s": rec.end - rec.start,
        "mean": _num(rec.mean), "min": _num(rec.min), "max": _num(rec.max),
        "unit": escape_controls(rec.unit),
        "status": Status(rec.status).name.lower(),
        "exceedance": bool(rec.flags & RecordFlag.EXCEEDANCE),
        "flags": flag_names(rec.flags),
    }


def _doc(now: float, tz: ZoneInfo, decision: str, key: str, items: list[dict[str, Any]]) -> bytes:
    body = {"version": VERSION, "generated": iso(now, tz), "method": f"VN_AQI, Decision {decision}",
            key: items}
    return (json.dumps(body, ensure_ascii=False, indent=1) + "\n").encode()


def aqi_json(reports: Sequence[AqiReport], now: float, tz: ZoneInfo, table: aqi.Table) -> bytes:
    return _doc(now, tz, table.decision, "aqi", [aqi_item(r, tz) for r in reports])


AQI_CSV = ("station", "name", "period", "start", "end", "aqi", "category", "category_en",
           "colour", "dominant", "sub_indices", "note")


def _csv(header: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue().encode()


def aqi_csv(reports: Sequence[AqiReport], tz: ZoneInfo) -> bytes:
    rows = []
    for rep in reports:
        item = aqi_item(rep, tz)
        rows.append([csv_cell(item["station"]), csv_cell(item["name"]), rep.period,
                     item["start"] or "", item["end"] or "",
                     "" if item["aqi"] is None else str(item["aqi"]),
                     item["category"] or "", item["category_en"] or "", item["colour"] or "",
                     item["dominant"] or "",
                     "|".join(f"{k}={v}" for k, v in item["sub_indices"].items()),
                     csv_cell(rep.why)])
    return _csv(AQI_CSV, rows)


def latest_json(items: Sequence[Latest], now: float, tz: ZoneInfo, table: aqi.Table) -> bytes:
    return _doc(now, tz, table.decision, "stations", [
        {"station": escape_controls(x.station.station), "name": escape_controls(x.station.name),
         "exceedances_24h": x.exceedances_24h,
         "records": [record_item(r, tz) for r in x.records],
         "exceedances": [record_item(r, tz) for r in x.exceeded]} for x in items])


LATEST_CSV = ("station", "channel", "start", "end", "window_s", "mean", "min", "max", "unit",
              "status", "exceedance", "flags")


def latest_csv(items: Sequence[Latest], tz: ZoneInfo) -> bytes:
    rows = []
    for x in items:
        for r in x.records:
            it = record_item(r, tz)
            rows.append([csv_cell(x.station.station), csv_cell(it["channel"]), it["start"],
                         it["end"], str(it["window_s"]),
                         *("" if it[k] is None else repr(it[k]) for k in ("mean", "min", "max")),
                         csv_cell(it["unit"]), it["status"],
                         "yes" if it["exceedance"] else "no", it["flags"]])
    return _csv(LATEST_CSV, rows)
