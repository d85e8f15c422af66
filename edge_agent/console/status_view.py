"""``quantrac status`` as text: the agent's status document rendered for an 80x24 console.

Pure: a status dict (as the control socket returns it) and ``now`` in, lines out. Times are
shown as ages ("12s ago") so a technician does not have to do time-zone arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from protocol.record_view import window_label

WIDTH = 80


def _age(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    s = max(0.0, now - t)
    if s < 120:
        return f"{s:.0f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}m ago"
    if s < 172800:
        return f"{s / 3600:.0f}h ago"
    return f"{s / 86400:.0f}d ago"


def _value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.6g}"


def render(st: Mapping[str, Any], now: float) -> list[str]:
    """Every line fits ``WIDTH`` columns."""
    lines: list[str] = []
    up = now - float(st.get("started", now))
    lines.append(f"station {st.get('station') or '?'}  pid {st.get('pid')}  up "
                 f"{_age(now - up, now).replace(' ago', '')}  "
                 f"{'ready' if st.get('ready') else 'starting'}")
    clock = st.get("clock", {})
    sync = {True: "synchronised", False: "NOT synchronised", None: "unknown"}[
        clock.get("synchronised")]
    jump = clock.get("last_jump")
    jtxt = (f", last jump {jump['offset']:+.1f}s {_age(jump['at_wall'], now)}"
            if jump else "")
    lines.append(f"clock   {sync}, {clock.get('jumps', 0)} jump(s){jtxt}"
                 f"  ({datetime.fromtimestamp(now, UTC):%Y-%m-%d %H:%M:%S} UTC)")
    lines.append("")
    lines.append(f"{'device':<14} {'bus':<16} {'unit':>4} {'last good':>10}  last error")
    for d in st.get("devices", []):
        err = "-"
        if d.get("last_error"):
            err = f"{_age(d.get('last_error_at'), now)}: {d['last_error']}"
        mark = "!" if d.get("consecutive_failures") else " "
        line = (f"{mark}{d['device'][:13]:<13} {str(d['bus'])[-16:]:<16} {d['unit']:>4} "
                f"{_age(d.get('last_good'), now):>10}  {err}")
        lines.append(line[:WIDTH])
    lines.append("")
    lines.append(f"{'channel':<8} {'device':<14} {'value':>12} {'unit':<9} {'status':<12} "
                 f"{'measured':>10}")
    for c in st.get("channels", []):
        lines.append(f"{c['symbol'][:8]:<8} {c['device'][:14]:<14} {_value(c['value']):>12} "
                     f"{c['unit'][:9]:<9} {c['status'][:12]:<12} {_age(c['t'], now):>10}"[:WIDTH])
    lines.append("")
    ob = st.get("outbox", {})
    oldest = ob.get("oldest_unacked_start")
    lines.append(f"outbox  {ob.get('unacked', 0)} unacked ({ob.get('in_flight', 0)} in flight), "
                 f"oldest {_age(oldest, now) if oldest is not None else '-'}"
                 f" (seq {ob.get('oldest_unacked_seq') or '-'}), last seq "
                 f"{ob.get('last_seq', 0)}"[:WIDTH])
    if ob.get("problem") or ob.get("held_in_memory"):
        lines.append(f"! store  {ob.get('problem') or ''}; {ob.get('held_in_memory', 0)} "
                     f"records held in memory"[:WIDTH])
    u = st.get("uplink", {})
    stats = u.get("stats") or {}
    extra = (f", {stats.get('records_acked', 0)} acked, {stats.get('disconnects', 0)} "
             f"disconnects" if stats else "")
    lines.append(f"uplink  {u.get('state')} {u.get('detail') or ''}{extra}"[:WIDTH])
    if stats.get("problem"):  # e.g. records sent with an escaped unit label
        lines.append(f"! uplink {stats['problem']}"[:WIDTH])
    if "uplink_circular10" in st:  # only when [uplink.circular10] is configured
        lines.append(_circular10_line(st["uplink_circular10"]))
        if st["uplink_circular10"].get("fix"):  # refused: what a person must do
            lines.append(f"! circ10 fix: {st['uplink_circular10']['fix']}"[:WIDTH])
    lines += _exceedance_lines(st, now)
    return [line.rstrip() for line in lines]


def _exceedance_lines(st: Mapping[str, Any], now: float) -> list[str]:
    """Records over their limit since the agent started, the last one with its limit, and the
    sampler: busy or idle, starts today against the cap, the last start and how it went. A
    ``!`` line when something needs a person: an exceedance, a sampler that does not answer."""
    out: list[str] = []
    ex = st.get("exceedances") or {}
    last: Mapping[str, Any] = ex.get("last") or {}
    if ex.get("count") and last:
        out.append(f"! exceed {ex['count']} over limit; last {last['channel']} "
                   f"{_value(last['mean'])} {last['unit']} "
                   f"({window_label(int(last['width']))}, {_age(last['window_start'], now)}),"
                   f" limit {last['limit']} ({last['source']})"[:WIDTH])
    elif "exceedances" in st:
        out.append("exceed  none since start")
    sm = st.get("sampler")
    if sm:
        busy = {True: "busy", False: "idle", None: "state unknown"}[sm.get("busy")]
        start = sm.get("last_start")
        how = "-" if not start else (
            f"{_age(start.get('at'), now)} by {start.get('by')}, "
            f"{'acknowledged' if start.get('ok') else 'NOT acknowledged'}")
        out.append(f"sampler {busy}, {sm.get('starts_today', 0)}/{sm.get('daily_cap')} "
                   f"today, last start {how}"[:WIDTH])
        if sm.get("problem"):
            out.append(f"! sampler {sm['problem']}"[:WIDTH])
    return out


def _circular10_line(c: Mapping[str, Any]) -> str:
    """The legacy FTP uplink in one line: state, files sent and waiting, server, and the last
    error while it is failing (the reason a technician needs: password, certificate)."""
    stats = c.get("stats") or {}
    # counts first: a long server URL or error is what the 80 columns cut
    line = (f"circ10  {c.get('state')}, {stats.get('files_sent', 0)} sent, "
            f"{stats.get('pending', 0)} pending, {c.get('detail') or '?'}")
    if stats.get("last_error"):
        line += f"; {stats['last_error']}"
    return line[:WIDTH]
