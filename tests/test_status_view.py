"""`quantrac status` as text (edge_agent.console.status_view), from status documents as the
control socket answers them: 'ready' only when it is true, errors and bus names whole within
80 columns, the clock's state with its cause and fix. Pure: no agent needed."""

from __future__ import annotations

from typing import Any

from edge_agent.console.status_view import render

NOW = 1_780_000_000.0
BUS = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0-wastewater-bus"


def _status(**over: Any) -> dict[str, Any]:
    st: dict[str, Any] = {
        "station": "HCM-WW-0001", "pid": 42, "started": NOW - 600, "ready": True,
        "clock": {"synchronised": True, "jumps": 0, "last_jump": None},
        "devices": [{"device": "liquiline", "bus": BUS, "unit": 1, "last_good": NOW - 2,
                     "last_error": None, "last_error_at": None, "consecutive_failures": 0}],
        "channels": [], "outbox": {"unacked": 0, "in_flight": 0, "last_seq": 9},
        "uplink": {"state": "connected", "detail": "broker:8883", "stats": {}},
    }
    st.update(over)
    return st


def _joined(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line.startswith("    ") and out:
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return out


def test_ready_only_when_every_unit_answers_and_the_uplink_is_up() -> None:
    assert render(_status(), NOW)[0].endswith("  ready")
    hach = {"device": "hach", "bus": BUS, "unit": 2, "last_good": None,
            "last_error": "timeout: unit 2: no answer within 1.0 s", "last_error_at": NOW - 1,
            "consecutive_failures": 7}
    lines = render(_status(devices=[*_status()["devices"], hach]), NOW)
    assert all(len(line) <= 80 for line in lines), lines
    head = _joined(lines)[0]
    assert "ready" not in head.replace("degraded", "") and \
        head.endswith("degraded: hach (unit 2) never answered"), head
    down = render(_status(uplink={"state": "unavailable", "detail": "not provisioned"}), NOW)
    assert _joined(down)[0].endswith("degraded: uplink unavailable")
    assert render(_status(ready=False), NOW)[0].endswith("  starting")


def test_errors_and_bus_names_are_whole_within_80_columns() -> None:
    err = "link: cannot open /dev/ttyUSB0: [Errno 2] No such file or directory: '/dev/ttyUSB0'"
    flow = {"device": "flowmeter-outfall", "bus": BUS, "unit": 4, "last_good": NOW - 90,
            "last_error": err, "last_error_at": NOW - 3, "consecutive_failures": 2}
    lines = render(_status(devices=[flow]), NOW)
    assert all(len(line) <= 80 for line in lines), lines
    # the bus path, longer than a line, is broken where it must be, every character kept
    assert BUS in "".join(line.strip() for line in lines)
    row = next(line for line in _joined(lines) if line.startswith("!flowmeter-outfall"))
    assert row.endswith(err)


def test_an_unsynchronised_clock_says_why_and_what_to_do() -> None:
    lines = render(_status(clock={"synchronised": False, "jumps": 0, "last_jump": None}), NOW)
    clock = next(line for line in _joined(lines) if line.startswith("clock"))
    assert clock.startswith("clock   NOT synchronised: the kernel has no time source")
    assert "NTP" in clock and "fix:" in clock and "0 jumps" in clock
    assert all(len(line) <= 80 for line in lines)
