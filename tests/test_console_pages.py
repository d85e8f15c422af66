"""The console's pure parts, without a terminal: every page at every size fits, the keys'
state machine, the verdicts (silent, refusing, word order), the sparkline, the log
lines, and that an outside string cannot put an escape sequence on the screen."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from drivers.profile import builtin_profile
from edge_agent.console.diag import Configured
from edge_agent.console.screen.app import FULL_REPAINT_S
from edge_agent.console.screen.diagnose import health_verdict, word_order_verdict
from edge_agent.console.screen.events import short
from edge_agent.console.screen.keys import PAGES, Ui, handle
from edge_agent.console.screen.pages import screen
from edge_agent.console.screen.text import sparkline, wire_bytes
from edge_agent.console.screen.view import Buses, Check, View

NOW = 1_800_000_000.0
LONG = "timeout: unit 2: no answer within 0.300 s " + "x" * 150 + " END"


def busy_view() -> View:
    """A view with everything the pages show, long strings and a hostile one among them."""
    devices = [{"device": "hach\x1b[2J", "bus": "/dev/ttyUSB0", "unit": 2, "last_good": NOW - 90,
                "last_error": LONG, "last_error_at": NOW - 3, "consecutive_failures": 7}]
    channels = [{"symbol": f"CH{i}", "device": "liquiline-long-name", "value": 12345.678 * i,
                 "unit": "mg/L", "status": "calibrating", "t": NOW - 2} for i in range(30)]
    status = {"station": "HCM-1", "pid": 9, "started": NOW - 4000, "ready": True,
              "devices": devices, "channels": channels,
              "clock": {"synchronised": False, "jumps": 2,
                        "last_jump": {"offset": -3.5, "at_wall": NOW - 60}},
              "outbox": {"unacked": 40, "oldest_unacked_start": NOW - 600,
                         "problem": "disk " + "full " * 30},
              "uplink": {"state": "connecting", "detail": "broker.example:8883"},
              "uplink_circular10": {"state": "failing", "detail": "ftp://x", "fix": "y " * 60,
                                    "stats": {"files_sent": 1, "pending": 2}}}
    return View(now=NOW, station="HCM-1", config="/etc/quantrac/station.toml", agent=True,
                status=status,
                buses=(Buses("rs485", "/dev/ttyUSB0 9600 N1",
                             (Configured("hach\x1b[2J", 2, "hach_sc"),)),),
                history={"CH1": [(NOW - 3000 + i * 60, float(i % 7)) for i in range(50)]},
                findings={"liquiline/pH": "WRONG WORD ORDER: " + "z " * 80},
                scan_bus="rs485", scan_progress="done", scan_lines=["MISSING: " + "q " * 60],
                read_lines=["unit 1 " + "r" * 200], events=[f"W 12:00:0{i} poll_failed " +
                                                           "k=v " * 40 for i in range(9)],
                events_from="/var/log/agent.log",
                network=[Check("broker", "broker.example:8883", False, "refused " * 20)])


@pytest.mark.parametrize("size", [(80, 24), (40, 10), (20, 4), (132, 50), (10, 3), (1, 1)])
@pytest.mark.parametrize("page", sorted(set(PAGES.values())))
def test_every_page_fits_the_terminal(page: str, size: tuple[int, int]) -> None:
    width, height = size
    for agent in (True, False):
        view = busy_view()
        view.agent, view.agent_problem = agent, None if agent else "no control socket"
        lines = screen(view, Ui(page=page), width, height)
        assert len(lines) <= height
        assert all(len(x) <= width for x in lines), (page, size, lines)
        assert not any("\x1b" in x for x in lines)
        text = "\n".join(lines)
        assert "could not be drawn" not in text
        if width >= 20 and height >= 4:
            assert lines[0].startswith("quantrac console"[:width])
        else:
            assert lines[0] == "terminal too small"[:width]


def test_errors_and_diagnoses_are_wrapped_whole_not_cut() -> None:
    text = " ".join(" ".join(screen(busy_view(), Ui(page="overview"), 80, 200)).split())
    assert "no answer within 0.300 s" in text and " END" in text
    assert "hach\\x1b[2J" in text  # the hostile device name, escaped


def test_keys() -> None:
    ui = Ui()
    assert handle(ui, "v", 1) is None and ui.page == "values"
    assert handle(ui, "n", 1) == "network" and ui.page == "network"
    assert handle(ui, "t", 1) == "network"
    handle(ui, "Z", 1)
    assert ui.page == "network" and "key Z does nothing" in ui.hint
    handle(ui, "\x07", 1)
    assert "^G" in ui.hint
    handle(ui, "b", 2)
    assert ui.hint == "" and handle(ui, "s", 2) == "scan"
    handle(ui, "\t", 2)
    assert ui.form.bus == 1
    handle(ui, "r", 2)
    for key in ("\t", "KEY_BACKSPACE", "4", "\t", "1", "2"):  # function 4, register 12
        assert handle(ui, key, 2) is None
    handle(ui, "x", 2)  # not a digit, not a page
    assert ui.page == "read" and "key x does nothing" in ui.hint
    assert handle(ui, "\n", 2) == "read"
    assert ui.form.numbers() == (1, 4, 12, 2)
    handle(ui, "KEY_RESIZE", 2)
    assert ui.hint == ""
    handle(ui, "KEY_UP", 2)
    handle(ui, "KEY_UP", 2)
    handle(ui, "KEY_UP", 2)  # the bus field: Space picks the next bus
    handle(ui, " ", 2)
    assert ui.form.bus == 0
    handle(ui, "v", 2)  # page keys work from the form too
    assert ui.page == "values"
    handle(ui, "q", 2)
    assert ui.quit


def test_health_verdicts() -> None:
    assert health_verdict({"device": "a", "unit": 1, "consecutive_failures": 0}) is None
    silent = health_verdict({"device": "flow", "unit": 5, "consecutive_failures": 3,
                             "last_error": "timeout: unit 5: no answer within 0.3 s"})
    assert silent is not None and silent.startswith("SILENT: unit 5 (flow)")
    refused = health_verdict({"device": "x", "unit": 1, "consecutive_failures": 1,
                              "last_error": "exception_02: unit 1 function 03: exception 02"})
    assert refused is not None and refused.startswith("REFUSES")


def test_word_order_verdict() -> None:
    spec = builtin_profile("liquiline").channel("pH")  # float32, word order big
    hi, lo = struct.unpack(">HH", struct.pack(">f", 7.25))
    assert word_order_verdict(spec, [hi, lo]) is None  # right order: nothing to say
    verdict = word_order_verdict(spec, [lo, hi])
    assert verdict is not None and "WRONG WORD ORDER: pH" in verdict
    assert "7.25 pH with word order little" in verdict
    assert word_order_verdict(spec, [0, 0]) is None  # zeros say nothing about the order


def test_sparkline() -> None:
    points = [(NOW - 3600 + i * 36, float(i)) for i in range(100)]
    line = sparkline(points, NOW, 3600, 20)
    assert len(line) == 20 and line[0] == "_" and line[-1] == "#"
    assert sparkline([], NOW, 3600, 5) == "     "
    half = sparkline([(NOW - 100, 1.0), (NOW - 10, float("nan"))], NOW, 3600, 10)
    assert half.strip() and half[0] == " "
    # a record stands for every cell its window covers: the first half hour, then live values
    records = sparkline([(NOW - 5, 9.0)], NOW, 3600, 10, [(NOW - 3600, NOW - 1800, 1.0)])
    assert records == "_____    #"


AT_9600 = int(FULL_REPAINT_S * 9600 / 10)  # the bytes a full repaint may take at 9600 baud
VALUES_AT_9600 = int(0.7 * 9600 / 10)  # the values page's pages: ~0.7 s at 9600 baud


def walk_values(view: View, width: int, height: int) -> list[list[str]]:
    """Every page of the values page, turned with + from the first."""
    ui = Ui(page="values")
    screens = [screen(view, ui, width, height, AT_9600)]
    while True:
        handle(ui, "+", 1)
        lines = screen(view, ui, width, height, AT_9600)
        if lines[:-1] == screens[-1][:-1]:  # + on the last page stays there (and says so)
            assert "is the last" in lines[-1], lines
            return screens
        screens.append(lines)


@pytest.mark.parametrize("size", [(80, 24), (40, 10)])
def test_the_values_page_is_paged_and_each_page_is_a_short_repaint(size: tuple[int, int]
                                                                   ) -> None:
    width, height = size
    view = busy_view()
    view.findings = {}
    for c in view.status["channels"]:  # every channel measuring, with a full hour
        c["status"] = "measuring"
        view.recent[c["symbol"]] = [(NOW - 3600 + i * 300, NOW - 3300 + i * 300, float(i))
                                    for i in range(12)]
    screens = walk_values(view, width, height)
    n = len(screens)
    assert n >= 5  # 30 channels: never one long page
    seen: list[str] = []
    for i, lines in enumerate(screens, 1):
        assert all(len(x) <= width for x in lines) and len(lines) <= height
        assert f"page {i}/{n}" in lines[1], lines
        seen += [x.split()[0] for x in lines[2:-1] if x.startswith("CH")]
        # the bound the paging is for: well under a second at 9600 baud, however many
        assert wire_bytes(lines) <= VALUES_AT_9600 * 1.03, (i, wire_bytes(lines), lines)
    assert seen == [f"CH{i}" for i in range(30)]  # each channel once, in order
    ui = Ui(page="values", values_page=99)  # clamped to the last, and said; - turns back
    lines = screen(view, ui, width, height)
    assert f"page {n}/{n}" in lines[1] and lines[-1] == f"page {n}/{n} is the last; - "\
        "turns back"[:width].rstrip()
    handle(ui, "-", 1)
    assert f"page {n - 1}/{n}" in screen(view, ui, width, height)[1]
    ui = Ui(page="values")
    handle(ui, "-", 1)
    assert ui.values_page == 0 and "page 1 is the first" in ui.hint
    findings = busy_view()  # a diagnosis is on every page: it is what the technician came for
    for lines in walk_values(findings, 80, 24):
        assert "! liquiline/pH: WRONG WORD ORDER" in "\n".join(lines)


def test_a_slow_line_gets_a_screen_it_carries_in_time_and_scrolls_the_rest() -> None:
    view = busy_view()
    ui = Ui(page="events", events_all=True)
    lines = screen(view, ui, 80, 24, AT_9600)
    assert wire_bytes(lines) <= AT_9600 and "(j/k scroll)" in lines[-1]
    assert len(screen(view, Ui(page="events", events_all=True), 80, 24)) == 24  # no budget
    last = ""
    for _ in range(40):  # j reaches the oldest line, still within the budget
        handle(ui, "j", 1)
        lines = screen(view, ui, 80, 24, AT_9600)
        assert wire_bytes(lines) <= AT_9600
        last = "\n".join(lines)
    assert "W 12:00:00 poll_failed" in last


def test_log_lines() -> None:
    line = ('ts=2026-12-01T13:05:02+0000 level=warning logger=quantrac.poller '
            'event=poll_failed device=hach unit=2 reason="no answer"')
    assert short(line) == 'W 13:05:02 poll_failed device=hach unit=2 reason="no answer"'
    assert short("level=error event=x").startswith("E x")
    journal = ("2026-12-01T13:05:02+0000 gw quantrac[81]: level=warning "
               "logger=quantrac.poller event=poll_failed device=hach")
    assert short(journal) == "W 13:05:02 poll_failed device=hach"
    assert short("a plain line \x1b[31m").startswith("I a plain line \\x1b")


def test_no_terminal_is_refused_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "station.toml"
    config.write_text('[[bus]]\nname = "b"\nport = "/dev/null"\n')
    done = subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "console", "--config",
                           str(config)], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "quantrac console: error: quantrac console needs a terminal on stdin and stdout (for a "
        "script: quantrac status, or quantrac diag)"]


def test_the_banner_says_which_kind_of_no_answer() -> None:
    def banner(problem: str) -> str:
        view = busy_view()
        view.agent, view.agent_problem = False, problem
        return " ".join(" ".join(screen(view, Ui(), 80, 24)[1:3]).split())

    assert "agent not running" in banner("x.sock: no control socket (is the agent running?)")
    assert "Reading the ports directly" in banner("x.sock: no control socket")
    busy = banner("x.sock: the agent does not answer (timed out)")
    assert "does not answer in time" in busy and "ports directly" not in busy
    denied = banner("x.sock: permission denied (run as the quantrac user or root)")
    assert "quantrac group" in denied and "ports directly" not in denied


def test_recent_reads_the_outbox_hour_the_way_history_does(tmp_path: Path) -> None:
    """Op ``recent``'s answer, as the agent gives it and the console reads it without one:
    each channel's shortest width only, an invalid window as null, at most MAX_POINTS a
    channel (means of consecutive records), and refusals that name the fault."""
    from buffer import OUTBOX_NAME, Store
    from edge_agent.console.recent import MAX_POINTS, recent
    from protocol.model import Record, Sample, Status

    def rec(ch: str, start: int, width: int, mean: float, valid: bool = True) -> Record:
        return Record(ch, start, start + width, mean, mean, mean, 0.0, 1, 1, valid,
                      Status.MEASURING, "mg/L")

    now = 1_800_000_000
    outbox = tmp_path / OUTBOX_NAME
    assert recent(outbox, now, 3600) == {"ok": True, "seconds": 3600, "channels": {},
                                         "left_out": 0}  # no file yet: nothing, no error
    records = [rec("COD", now - 3600 + i * 300, 300, float(i), valid=i != 3)
               for i in range(12)]
    records += [rec("COD", now - 3600, 3600, 99.0)]  # a longer width: not the sparkline's
    records += [rec("Flow", now - 3600 + i * 10, 10, float(i % 2)) for i in range(360)]
    records += [rec("COD", now - 7200, 300, 50.0)]  # before the hour
    with Store(outbox, lambda: float(now)) as store:
        store.append(records)
    answer = recent(outbox, now, 3600)
    assert answer["ok"] and answer["left_out"] == 0
    cod = answer["channels"]["COD"]
    assert cod["window_s"] == 300 and len(cod["points"]) == 12
    assert cod["points"][0] == [now - 3600, 0.0] and cod["points"][3] == [now - 2700, None]
    flow = answer["channels"]["Flow"]  # 360 10-s windows: thinned to 30-s means
    assert flow["window_s"] == 3600 / MAX_POINTS and len(flow["points"]) == MAX_POINTS
    assert all(abs(v - 1 / 3) < 0.34 for _, v in flow["points"])  # 0,1,0 or 1,0,1
    assert "live" not in cod  # no samples asked for (the console reading the file)
    with Store(outbox, lambda: float(now)) as store:  # the agent's raw samples
        store.append_samples([Sample("COD", now - 200, 5.0, Status.MEASURING),  # has records
                              *(Sample("NH4", now - 90 + i, 2.0 + i % 2, Status.MEASURING)
                                for i in range(90)),
                              Sample("NH4", now - 2000, 9.0, Status.MEASURING),  # > LIVE_S
                              Sample.offline("TSS", now - 10)])
        live = recent(outbox, now, 3600, store.samples_between)["channels"]
    assert "live" not in live["COD"]  # its records reach now: no sample after the last one
    nh4 = live["NH4"]  # no record yet: its samples only, 30-s means of the last minutes
    assert nh4["points"] == [] and nh4["live"]["window_s"] == 30
    assert [round(v, 2) for _, v in nh4["live"]["points"]] == [2.5, 2.5, 2.5]
    assert live["TSS"]["live"]["points"] == [[now - 30, None]]  # offline: no value to draw
    with pytest.raises(ValueError, match="seconds"):
        recent(outbox, now, 0)
    not_outbox = tmp_path / "notes.txt"
    not_outbox.write_text("not a database")
    refused = recent(not_outbox, now, 3600)
    assert not refused["ok"] and "notes.txt" in refused["error"]
