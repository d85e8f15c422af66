"""The province overview: every station, what needs attention first (behind login).

One row per station the store has heard from, with the figures ``centre stations`` prints
(``CentreStore.summaries``: records, seqs held, last arrival, security events, exceedances),
the seqs still missing (``CentreStore.gaps``: the ranges the receiver asks the station for)
and the birth/will state the receiver recorded (``CentreStore.station_states``).

The order is the order an operator should look in: stations not online (offline, or no
state message ever: the centre cannot tell that it is sending), then those with security
events (a forged or replayed packet, a conflicting seq), then those with records over their
limit, then those missing seqs, then the rest; by station id within each group. A station
that is in several groups sorts by the first.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from centre.store import CentreStore, StationSummary
from protocol.html_page import el, page, table, td
from protocol.record_view import age, iso  # the age `centre stations` prints


@dataclass(frozen=True)
class Row:
    summary: StationSummary
    state: str  # online, offline, unknown (a state message we could not read), never
    since: float | None
    gaps: tuple[tuple[int, int], ...] = ()  # missing seq ranges (CentreStore.gaps)

    @property
    def missing(self) -> int:
        return sum(last - first + 1 for first, last in self.gaps)

    @property
    def online(self) -> bool:
        return self.state == "online"

    def attention(self) -> tuple[int, str]:
        s = self.summary
        for rank, needs in enumerate((not self.online, s.security_events > 0,
                                      s.exceedances > 0, self.missing > 0)):
            if needs:
                return rank, s.station
        return 4, s.station


ATTENTION = ("not online", "security events", "over limit", "missing seqs", "ok")


def rows(store: CentreStore) -> list[Row]:
    """The overview's rows, in attention order, from the store's reads."""
    states = store.station_states()
    out = []
    for s in store.summaries():
        state, since = states.get(s.station, ("never", None))
        gaps = tuple(store.gaps(s.station)) if s.last_seq > s.contiguous else ()
        out.append(Row(s, state, since, gaps))
    return sorted(out, key=Row.attention)


def station_link(station: str) -> str:
    return "/station?" + urllib.parse.urlencode({"id": station})


def render(found: Sequence[Row], now: float, tz: ZoneInfo, title: str) -> str:
    body_rows = []
    for r in found:
        s = r.summary
        rank = r.attention()[0]
        state_text = r.state if r.since is None else f"{r.state} since {iso(r.since, tz)}"
        last = "-" if s.last_received is None else (
            f"{iso(s.last_received, tz)} ({age(s.last_received, now)})")
        body_rows.append([
            td(el("a", s.station, href=station_link(s.station)), class_="station"),
            td(ATTENTION[rank], class_="bad" if rank < 2 else "warn" if rank < 4 else "ok"),
            td(state_text, class_="ok" if r.online else "bad"),
            td(last),
            td(str(s.records), class_="num"),
            td(str(r.missing), class_="num" + (" warn" if r.missing else "")),
            td(str(s.security_events), class_="num" + (" bad" if s.security_events else "")),
            td(str(s.exceedances), class_="num" + (" bad" if s.exceedances else "")),
        ])
    grid = table(["station", "attention", "state", "last arrival", "records", "missing seqs",
                  "security events", "exceedances"], body_rows, class_="overview")
    intro = el("p", f"{len(found)} stations, most in need of attention first. Times in "
               f"{tz.key}.", class_="muted")
    return page(title, intro, grid, refresh_s=60, nav=NAV)


NAV = (("/", "Overview"), ("/public", "Public page"), ("/logout", "Log out"))
