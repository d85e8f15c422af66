"""Review (R1): no text from outside reaches the technician's terminal with a control
character in it, on any page, whatever field it came in.

The console's own test (``test_console_pages``) puts an escape sequence in a device name;
here every string of the view carries ESC, an OSC title sequence, BEL, a C1 CSI, CR and
backspace: the agent's status (every value, all the way down), bus and device names, the
scan's and the read's lines, the word-order verdicts, the events, the network checks. ncurses
draws ESC as ``^[``, but CR and backspace move its cursor, so a string could overwrite the
line it is on (a warning, a value) if it reached the screen raw.
"""

from __future__ import annotations

from typing import Any

import pytest

from edge_agent.console.diag import Configured
from edge_agent.console.screen.keys import PAGES, Ui
from edge_agent.console.screen.pages import screen
from edge_agent.console.screen.view import Buses, Check, View
from tests.test_console_pages import busy_view

EVIL = "\x1b]0;owned\x07\x9b2J\rX\x08"


def _tainted(value: Any) -> Any:
    """``value`` with EVIL after every string in it (dictionary keys left: they are ours)."""
    if isinstance(value, str):
        return value + EVIL
    if isinstance(value, dict):
        return {k: _tainted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tainted(v) for v in value]
    return value


def hostile_view() -> View:
    v = busy_view()
    v.status = _tainted(v.status)
    v.station += EVIL
    v.config += EVIL
    v.buses = tuple(Buses(b.name + EVIL, b.where + EVIL, tuple(
        Configured(c.device + EVIL, c.unit, c.profile + EVIL) for c in b.expected))
        for b in v.buses)
    v.history = {k + EVIL: x for k, x in v.history.items()}
    v.findings = {k + EVIL: x + EVIL for k, x in v.findings.items()}
    v.scan_bus = (v.scan_bus or "") + EVIL
    v.scan_progress += EVIL
    v.scan_lines = _tainted(v.scan_lines)
    v.read_lines = _tainted(v.read_lines)
    v.events = _tainted(v.events)
    v.events_from += EVIL
    v.network = [Check(c.name + EVIL, c.target + EVIL, c.ok, c.detail + EVIL)
                 for c in v.network]
    return v


@pytest.mark.parametrize("page", sorted(set(PAGES.values())))
def test_no_page_shows_a_control_character_from_outside(page: str) -> None:
    for agent in (True, False):
        view = hostile_view()
        view.agent, view.agent_problem = agent, None if agent else "refused" + EVIL
        for width in (200, 80):
            lines = screen(view, Ui(page=page), width, 200)
            raw = [line for line in lines if not line.isprintable()]
            assert not raw, (page, agent, width, raw[:3])
            assert "could not be drawn" not in "\n".join(lines)


def test_the_read_form_names_a_register_past_65535() -> None:
    from edge_agent.console.screen.keys import Form

    assert Form(register="65534", count="2").numbers() == (1, 3, 65534, 2)
    said = Form(register="65535", count="2").numbers()
    assert isinstance(said, str) and said.startswith("register 65535: registers are 0..65535")
    assert isinstance(Form(register="99999999999999999999").numbers(), str)
