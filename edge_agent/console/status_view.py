"""``quantrac status`` as text: the agent's status document rendered for an 80x24 console.

Pure: a status dict (as the control socket returns it) and ``now`` in, lines out. Times are
shown as ages ("12s ago") so a technician does not have to do time-zone arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from edge_agent.console.width import WIDTH as WIDTH  # the width every line fits (callers check it)
from edge_agent.console.width import wrap
from protocol.record_view import age, window_label


def _age(t: float | None, now: float) -> str:
    return age(t, now, compact=True)


def _value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.6g}"


def readiness(st: Mapping[str, Any]) -> str:
    """``starting``, ``ready``, or ``degraded: <why>``: ready only when the agent has been
    through its first poll cycle, every configured unit has answered and answers now, the
    uplink is available and the store takes writes. "ready" must mean a technician can leave."""
    if not st.get("ready"):
        return "starting"
    why: list[str] = []
    for d in st.get("devices", []):
        who = f"{d['device']} (unit {d['unit']})"
        if d.get("last_good") is None:
            why.append(f"{who} never answered")
        elif d.get("consecutive_failures"):
            why.append(f"{who} not answering")
    u = st.get("uplink") or {}
    circ = st.get("uplink_circular10")
    if u.get("state") == "none":
        if circ is None:
            why.append("no uplink configured (records stay in the outbox)")
    elif u.get("state") != "connected":
        why.append(f"uplink {u.get('state')}")
    if circ is not None and circ.get("state") not in ("connected", "waiting"):
        why.append(f"circular10 {circ.get('state')}")
    ob = st.get("outbox") or {}
    if ob.get("problem"):
        why.append("store: see the outbox line")
    return "ready" if not why else "degraded: " + "; ".join(why)


def clock_line(clock: Mapping[str, Any], now: float) -> str:
    """The clock, and when it is not synchronised why that matters and what to do."""
    synced = clock.get("synchronised")
    jumps = int(clock.get("jumps", 0))
    jump = clock.get("last_jump")
    jtxt = (f", last {jump['offset']:+.1f}s {_age(jump['at_wall'], now)}" if jump else "")
    when = f"({datetime.fromtimestamp(now, UTC):%Y-%m-%d %H:%M:%S} UTC)"
    counted = f"{jumps} jump{'' if jumps == 1 else 's'}{jtxt}"
    if synced is True:
        return f"clock   synchronised, {counted} {when}"
    if synced is False:
        return (f"clock   NOT synchronised: the kernel has no time source (no NTP server "
                f"reachable, or none configured); records are flagged CLOCK_UNSYNCED; fix: "
                f"the network to the NTP server, `timedatectl timesync-status`; {counted} "
                f"{when}")
    return (f"clock   unknown: the kernel's sync state cannot be read here (not Linux?); "
            f"{counted} {when}")


def render(st: Mapping[str, Any], now: float) -> list[str]:
    """Every line fits 80 columns: long ones wrap (an error's end says what to do, a
    bus path which port), none is cut."""
    lines: list[str] = []
    up = now - float(st.get("started", now))
    lines += wrap(f"station {st.get('station') or '?'}  pid {st.get('pid')}  up "
                  f"{_age(now - up, now).replace(' ago', '')}  {readiness(st)}")
    lines += wrap(clock_line(st.get("clock", {}), now))
    lines.append("")
    lines.append(f" {'device':<14} {'unit':>4} {'last good':>10}  bus")
    for d in st.get("devices", []):
        mark = "!" if d.get("consecutive_failures") or d.get("last_good") is None else " "
        lines += wrap(f"{mark}{d['device']:<14} {d['unit']:>4} "
                      f"{_age(d.get('last_good'), now):>10}  {d['bus']}", " " * 33)
        if d.get("last_error"):  # the whole error, under its device
            lines += wrap(f"    {_age(d.get('last_error_at'), now)}: {d['last_error']}",
                          " " * 6)
    lines.append("")
    lines.append(f"{'channel':<8} {'device':<14} {'value':>12} {'unit':<9} {'status':<12} "
                 f"{'measured':>10}")
    for c in st.get("channels", []):
        lines += wrap(f"{c['symbol']:<8} {c['device']:<14} {_value(c['value']):>12} "
                      f"{c['unit']:<9} {c['status']:<12} {_age(c['t'], now):>10}")
    lines.append("")
    ob = st.get("outbox", {})
    oldest = ob.get("oldest_unacked_start")
    lines += wrap(f"outbox  {ob.get('unacked', 0)} unacked ({ob.get('in_flight', 0)} in "
                  f"flight), oldest {_age(oldest, now) if oldest is not None else '-'}"
                  f" (seq {ob.get('oldest_unacked_seq') or '-'}), last seq "
                  f"{ob.get('last_seq', 0)}")
    if ob.get("problem") or ob.get("held_in_memory"):
        lines += wrap(f"! store  {ob.get('problem') or ''}; {ob.get('held_in_memory', 0)} "
                      f"records held in memory")
    u = st.get("uplink", {})
    stats = u.get("stats") or {}
    extra = (f", {stats.get('records_acked', 0)} acked, {stats.get('disconnects', 0)} "
             f"disconnects" if stats else "")
    lines += wrap(f"uplink  {u.get('state')} {u.get('detail') or ''}{extra}")
    if stats.get("problem"):  # e.g. records sent with an escaped unit label
        lines += wrap(f"! uplink {stats['problem']}")
    if "uplink_circular10" in st:  # only when [uplink.circular10] is configured
        lines += _circular10_lines(st["uplink_circular10"])
        if st["uplink_circular10"].get("fix"):  # refused: what a person must do
            lines += wrap(f"! circ10 fix: {st['uplink_circular10']['fix']}")
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
        out += wrap(f"! exceed {ex['count']} over limit; last {last['channel']} "
                   f"{_value(last['mean'])} {last['unit']} "
                   f"({window_label(int(last['width']))}, {_age(last['window_start'], now)}),"
                   f" limit {last['limit']} ({last['source']})")
    elif "exceedances" in st:
        out.append("exceed  none since start")
    sm = st.get("sampler")
    if sm:
        busy = {True: "busy", False: "idle", None: "state unknown"}[sm.get("busy")]
        start = sm.get("last_start")
        how = "-" if not start else (
            f"{_age(start.get('at'), now)} by {start.get('by')}, "
            f"{'acknowledged' if start.get('ok') else 'NOT acknowledged'}")
        out += wrap(f"sampler {busy}, {sm.get('starts_today', 0)}/{sm.get('daily_cap')} "
                    f"today, last start {how}")
        if sm.get("problem"):
            out += wrap(f"! sampler {sm['problem']}")
    return out


def _circular10_lines(c: Mapping[str, Any]) -> list[str]:
    """The legacy FTP uplink: state, files sent and waiting, server, and the last error
    while it is failing (the reason a technician needs: password, certificate), wrapped."""
    stats = c.get("stats") or {}
    line = (f"circ10  {c.get('state')}, {stats.get('files_sent', 0)} sent, "
            f"{stats.get('pending', 0)} pending, {c.get('detail') or '?'}")
    if stats.get("last_error"):
        line += f"; {stats['last_error']}"
    return wrap(line)
