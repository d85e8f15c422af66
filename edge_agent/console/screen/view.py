"""What one screen shows: the data the source gathered, as plain values the pages render.

Kept apart from both sides so the pages are pure (a :class:`View` and a size in, lines out)
and the source can fill it from the agent or from the ports without the pages knowing which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_agent.console.diag import Configured


@dataclass(frozen=True, slots=True)
class Check:
    """One network test and its result (``ok`` None: not run yet)."""

    name: str
    target: str
    ok: bool | None
    detail: str


@dataclass(frozen=True, slots=True)
class Buses:
    """A bus of the config: its name, where it is, the devices expected on it."""

    name: str
    where: str
    expected: tuple[Configured, ...]


@dataclass(slots=True)
class View:
    """Everything the pages may show; ``status`` is the agent's status document (or the one
    the console builds from its own polls when no agent runs)."""

    now: float
    station: str = "?"
    config: str = ""
    agent: bool = False  # the agent answered the last status request
    agent_problem: str | None = None  # why it did not (shown as a banner)
    status: dict[str, Any] = field(default_factory=dict)
    buses: tuple[Buses, ...] = ()
    history: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    # the outbox's records of the last hour: symbol -> (start, end, mean) of each window
    recent: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    findings: dict[str, str] = field(default_factory=dict)  # "device/channel" -> verdict
    scan_bus: str | None = None
    scan_progress: str = ""  # "" : no scan asked for
    scan_lines: list[str] = field(default_factory=list)
    read_lines: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    events_from: str = ""
    network: list[Check] = field(default_factory=list)
