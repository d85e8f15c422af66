"""One pure renderer per page: a :class:`View`, the UI state and the terminal size in, the
screen's lines out, none wider than the terminal.

The frame is a title line, a banner when the agent does not answer, the page body (scrolled,
cut to the rows left) and a hint line at the bottom. The values page is paged, not scrolled:
at most ``VALUES_PER_PAGE`` channels a page (fewer when the rows are fewer), so the bytes of
its full repaint are bounded whatever the channel count; a channel's line with a full
sparkline is ~75 bytes, and a 9600-baud line carries 960 a second (``bench/
console_repaint.py`` measures a full refresh of every page at 5 and 30 channels). Long
sentences (an error, a diagnosis) are wrapped, not cut: the part a technician acts on is often
at the end of the agent's message. Below 20x4 there is no room for a page and the screen says so.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from edge_agent.console.screen.diagnose import health_verdict
from edge_agent.console.screen.keys import FIELDS, Ui
from edge_agent.console.screen.text import (
    age,
    clean,
    fit,
    number,
    sparkline,
    wire_bytes,
    wrap,
)
from edge_agent.console.screen.view import View
from edge_agent.console.status_view import clock_line, readiness

MIN_WIDTH, MIN_HEIGHT = 20, 4
HOUR = 3600.0
#: a values line with a full sparkline is ~75 bytes on the wire (ncurses: the text, and a
#: cursor move for each longer run of blanks); six of them and the frame are ~0.7 s at 9600
#: baud (bench/console_repaint.py), seven ~0.8 s
VALUES_PER_PAGE = 6
#: at most this many cells of sparkline (2.5 minutes each): a wider one on a wider terminal
#: would only cost bytes
SPARK_CELLS = 24
KEYS = "o overview v values b buses r read e events n network ? help q quit"


def screen(view: View, ui: Ui, width: int, height: int, budget: int | None = None
           ) -> list[str]:
    """The whole screen: at most ``height`` lines of at most ``width`` columns, and with a
    ``budget`` (bytes: what the line carries in the time a full repaint may take) no more
    body lines than a full repaint of them sends within it (:func:`.text.wire_bytes`); the
    rest is a scroll away (j/k), as it is below the last row. The values page is not cut:
    its pages of ``VALUES_PER_PAGE`` channels are the bound there (a line cut off a page
    would be a page that scrolls)."""
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return [fit(s, width) for s in ("terminal too small", f"{width}x{height}",
                                        f"need {MIN_WIDTH}x{MIN_HEIGHT}")][:height]
    stamp = datetime.fromtimestamp(view.now, UTC).strftime("%H:%M:%S")
    top = [fit(f"quantrac console  {clean(view.station)}  [{ui.page}]  {stamp} UTC", width)]
    if not view.agent:
        problem = clean(view.agent_problem or "no answer")
        if "permission denied" in problem:  # it runs; this account may not ask it
            top += wrap(f"! cannot ask the agent ({problem}); the account needs the "
                        "quantrac group (docs/technician.md)", width)[:2]
        elif "timed out" in problem:  # it listens but is busy: it still holds the ports
            top += wrap(f"! the agent does not answer in time ({problem}); retrying.",
                        width)[:2]
        else:
            top += wrap(f"! agent not running ({problem}); retrying. Reading the ports "
                        "directly meanwhile.", width)[:2]
    rows = max(0, height - len(top) - 1)
    try:
        body = PAGES[ui.page](view, ui, width, rows)
    except Exception as exc:  # a page that cannot draw says so; the console goes on
        body = wrap(f"! this page could not be drawn: {clean(exc)}", width)
    # every line cleaned once more at the end: a page that shows a text from outside without
    # clean() (the scan's and the read's lines, a verdict) must not let its CR or backspace
    # overwrite the line on the glass (ncurses draws ESC as ^[, but moves the cursor on those)
    frame = [fit(clean(x), width) for x in (*top, ui.hint or f"{KEYS} (j/k scroll)")]
    body = [fit(clean(x), width) for x in body]

    def fitting(lines: list[str]) -> int:  # how many of ``lines``, from the first, fit
        n = min(rows, len(lines))
        if budget is not None and ui.page != "values":  # that one is paged to fit
            while n > 1 and wire_bytes(frame + lines[:n]) > budget:
                n -= 1
        return n

    ui.scroll = min(ui.scroll, max(0, len(body) - fitting(body[::-1])))
    shown = body[ui.scroll:ui.scroll + fitting(body[ui.scroll:])]
    more = len(body) > ui.scroll + len(shown)
    hint = ui.hint or (f"{KEYS} (j/k scroll)" if more or ui.scroll else KEYS)
    lines = top + shown + [""] * (rows - len(shown)) + [hint]
    return [fit(line, width) for line in lines[:height]]


# --------------------------------------------------------------------------- pages


def overview(view: View, ui: Ui, width: int, rows: int) -> list[str]:
    st, now = view.status, view.now
    out: list[str] = []
    if view.agent:
        up = age(float(st.get("started", now)), now)
        out += wrap(f"station {clean(st.get('station') or '?')}, agent pid {st.get('pid')}, "
                    f"up {up}, {clean(readiness(st))}", width)
    else:
        out.append(fit(f"station {clean(view.station)}, agent not running", width))
    out += wrap(f"config {clean(view.config)}", width)
    if view.agent:  # the status view's words: why it is not synchronised and the fix
        out += wrap(" ".join(clock_line(st.get("clock") or {}, now).split()), width)
    else:
        out += wrap(f"clock {datetime.fromtimestamp(now, UTC):%Y-%m-%d %H:%M} UTC, "
                    "synchronisation unknown (the agent tells it)", width)
    link = st.get("uplink") or {}
    if link:
        out += wrap(f"uplink {clean(link.get('state'))}: {clean(link.get('detail') or '')}",
                    width)
    c10 = st.get("uplink_circular10")
    if c10:
        stats = c10.get("stats") or {}
        out += wrap(f"circular10 {clean(c10.get('state'))}: {stats.get('files_sent', 0)} sent, "
                    f"{stats.get('pending', 0)} pending; {clean(c10.get('detail') or '')}", width)
        if c10.get("fix"):
            out += wrap(f"! circular10 fix: {clean(c10['fix'])}", width)
    ob = st.get("outbox") or {}
    if ob:
        oldest = ob.get("oldest_unacked_start")
        out += wrap(f"backlog {ob.get('unacked', 0)} records not yet acknowledged, oldest "
                    f"{age(oldest, now) if oldest is not None else '-'}", width)
        if ob.get("problem"):
            out += wrap(f"! store: {clean(ob['problem'])}", width)
    devices = st.get("devices") or []
    bad = [d for d in devices if d.get("consecutive_failures")]
    out.append(fit(f"devices {len(devices) - len(bad)}/{len(devices)} answering", width))
    errors = [d for d in devices if d.get("last_error")]
    if errors:
        out.append("last errors:")
    for d in errors:
        out += wrap(f"  {clean(d['device'])} ({age(d.get('last_error_at'), now)} ago): "
                    f"{clean(d['last_error'])}", width, indent=4)
    return out


def values(view: View, ui: Ui, width: int, rows: int) -> list[str]:
    """The channels of page ``ui.values_page`` (clamped to the pages there are), then the
    diagnoses, which are shown on every page: they are what the technician came for."""
    now = view.now
    wide = width >= 60
    head = (f"{'channel':<8} {'device':<9} {'value':>10} {'unit':<6} {'status':<9} "
            f"{'age':>4}" if wide else f"{'chan':<6} {'value':>9} {'status':<8} {'age':>4}")
    spark = min(SPARK_CELLS, width - len(head) - 1)
    found: list[str] = []
    for key, verdict in sorted(view.findings.items()):
        found += wrap(f"! {clean(key)}: {verdict}", width)
    channels = view.status.get("channels") or []
    per_page = max(1, min(VALUES_PER_PAGE, rows - 1 - len(found)))
    n_pages = max(1, -(-len(channels) // per_page))
    if ui.values_page > n_pages - 1:  # + past the last page, or fewer channels now
        ui.values_page = n_pages - 1
        ui.hint = ui.hint or ("every channel is on this one page" if n_pages == 1 else
                              f"page {n_pages}/{n_pages} is the last; - turns back")
    first = ui.values_page * per_page
    head += " last hour" if spark >= 10 else ""
    if n_pages > 1:
        head += f"  page {ui.values_page + 1}/{n_pages}"  # + and - turn: the help says
    out = [fit(head, width)]
    for c in channels[first:first + per_page]:
        sym = clean(c.get("symbol"))
        # "ok" for measuring, the usual case: fewer bytes per repaint on a 9600-baud line,
        # and the other states stand out
        status = "ok" if c.get("status") == "measuring" else clean(c.get("status"))
        when = age(c.get("t"), now)
        if wide:
            line = (f"{sym[:8]:<8} {clean(c.get('device'))[:9]:<9} "
                    f"{number(c.get('value'))[:10]:>10} {clean(c.get('unit') or '')[:6]:<6} "
                    f"{status[:9]:<9} {when:>4}")
        else:
            line = f"{sym[:6]:<6} {number(c.get('value'))[:9]:>9} {status[:8]:<8} {when:>4}"
        if spark >= 10:
            line += " " + sparkline(view.history.get(sym, []), now, HOUR, spark,
                                    view.recent.get(sym, ()))
        out.append(fit(line, width))
    if not channels:
        out.append("no values yet")
    return out + found


def buses(view: View, ui: Ui, width: int, rows: int) -> list[str]:
    now = view.now
    health = {d.get("device"): d for d in view.status.get("devices") or []}
    out: list[str] = []
    for i, bus in enumerate(view.buses):
        mark = ">" if i == ui.form.bus % max(1, len(view.buses)) else " "
        out += wrap(f"{mark}bus {clean(bus.name)} ({clean(bus.where)})", width)
        # columns as wide as this bus's names (up to 12 and 16), the age left-aligned: a run
        # of blanks costs a cursor move on the wire, ~10 bytes a device at 9600 baud
        dw = min(12, max([6, *(len(clean(e.device)) for e in bus.expected)]))
        pw = min(16, max([7, *(len(clean(e.profile)) for e in bus.expected)]))
        out.append(fit(f"  {'unit':>4} {'device':<{dw}} {'profile':<{pw}} last answer", width))
        for e in bus.expected:
            d = health.get(e.device, {})
            out.append(fit(f"  {e.unit:>4} {clean(e.device)[:dw]:<{dw}} "
                           f"{clean(e.profile)[:pw]:<{pw}} {age(d.get('last_good'), now)}",
                           width))
        for e in bus.expected:
            verdict = health_verdict(health.get(e.device, {}))
            if verdict:
                out += wrap(f"  ! {verdict}", width, indent=4)
    if view.scan_progress:
        out.append("")
        out += wrap(f"scan of {clean(view.scan_bus)}: {clean(view.scan_progress)}", width)
        for line in view.scan_lines:
            out += wrap(f"  {line}", width, indent=4)
    out.append("")
    out += wrap("s scans the bus marked > and compares it with the config (Tab picks "
                "the bus)", width)
    return out


def read(view: View, ui: Ui, width: int, rows: int) -> list[str]:
    form = ui.form
    names = [b.name for b in view.buses] or ["(no bus in the config)"]
    out = ["register read (Tab next field, digits, Enter reads)"]
    for i, name in enumerate(FIELDS):
        value = (clean(names[form.bus % len(names)]) + "  (Space: next bus)" if name == "bus"
                 else form.value(name))
        cursor = ">" if i == form.field else " "
        extra = "  (3 holding, 4 input)" if name == "function" else ""
        out.append(fit(f"{cursor} {name:<9} {value}{extra}", width))
    out.append("")
    for line in view.read_lines:
        out += wrap(line, width, indent=4)
    return out


def events(view: View, ui: Ui, width: int, rows: int) -> list[str]:
    lines = view.events if ui.events_all else [e for e in view.events if e[:1] in "WE"]
    head = (f"agent log, {'all lines' if ui.events_all else 'warnings and errors'} "
            f"(a toggles), newest first; from {clean(view.events_from) or '-'}")
    out = wrap(head, width)
    out += [fit(clean(e), width) for e in reversed(lines)] or ["nothing to show"]
    return out


def network(view: View, ui: Ui, width: int, rows: int) -> list[str]:
    out = ["network tests (t runs them again)"]
    for c in view.network:
        result = "..." if c.ok is None else ("ok" if c.ok else "FAIL")
        out += wrap(f"{result:<4} {clean(c.name)} {clean(c.target)}: {clean(c.detail)}", width,
                    indent=5)
    if not view.network:
        out.append("nothing configured to test")
    return out


def help_page(view: View, ui: Ui, width: int, rows: int) -> list[str]:
    text = [
        "o  overview: station, clock, uplinks, backlog, last errors",
        "v  values: every channel, its status, age, last hour; + - pages",
        "b  buses: each device, silent units; s scans and compares",
        "r  register read: Tab moves, digits, Enter reads",
        "e  events: the agent's warnings (a: all lines)",
        "n  network: broker, FTP, DNS, NTP (t: test again)",
        "j/k or arrows: scroll;  ? or h: this help;  q: quit",
    ]
    return [line for t in text for line in wrap(t, width, indent=3)]


PAGES: dict[str, Callable[[View, Ui, int, int], list[str]]] = {
    "overview": overview, "values": values, "buses": buses, "read": read,
    "events": events, "network": network, "help": help_page}
