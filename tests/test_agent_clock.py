"""The running agent (its own asyncio loop, poller thread and outbox file, in this process)
against a simulated flowmeter, with its wall clock stepped back while it measures: every window
is counted once. The wall clock is a parameter (real time plus an offset the test moves); the
monotonic clock is the real one, so the agent sees the step as a real NTP step would look."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from buffer import Store
from edge_agent.averaging.cache import kernels
from edge_agent.config.reader import load_config
from edge_agent.daemon.agent import Agent
from hw_sim import running_station
from hw_sim.config import parse_station
from protocol.model import RecordFlag

SIM = {"name": "clock-test", "device": [
    {"name": "flow", "profile": "flowmeter", "unit": 4, "transports": ["tcp"], "seed": 14}]}


class SteppedClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


def test_running_agent_stepped_back_counts_no_window_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    # The kernels are process-wide: load them now, in the test session's cache, so that the
    # agent's configure_cache (accepting its own directory through the environment) cannot
    # make them load from this test's state dir and leave later tests with that cache.
    kernels()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(state / "numba-cache"))
    with running_station(parse_station(SIM, "clock-test"), tcp_port=0) as sim:
        path = tmp_path / "station.toml"
        path.write_text(f"""\
[station]
id = "CLK-1"
[agent]
state_dir = "{state}"
sample_flush_s = 1.0
[poll]
timeout = 0.3
retries = 1
[[bus]]
name = "lan"
host = "127.0.0.1"
tcp_port = {sim.tcp_port}
[[device]]
name = "flow"
bus = "lan"
profile = "flowmeter"
unit = 4
interval = 1.0
channels = ["Flow"]
[averaging]
windows = [10]
grace_s = 1.0
""")
        clock = SteppedClock()
        agent = Agent(load_config(path), clock=clock, synced=lambda: True)

        def held(store: Store | None = None) -> list[tuple[int, int, bool, RecordFlag]]:
            store = store or agent.store
            if store is None:  # not opened yet
                return []
            return [(seq, r.start, r.valid, r.flags) for seq, r in store.windows(10)]

        async def main() -> int:
            run = asyncio.create_task(agent.run())
            await until(lambda: len([h for h in held() if h[2]]) >= 3, 60, "3 valid windows")
            before = held()
            last_seq = max(h[0] for h in before)
            starts = {h[1] for h in before}
            clock.offset -= 25.0  # an NTP step back while measuring
            await until(lambda: len({h[1] for h in held() if h[0] > last_seq
                                     and h[1] in starts}) >= 2, 60,
                        "windows stored before the step measured again")
            agent._stop.set()
            return await run

        assert asyncio.run(main()) == 0
    with Store(state / "outbox.sqlite") as outbox:
        records = held(outbox)
    first: dict[int, int] = {}
    again = []
    for seq, start, valid, flags in sorted(records):
        if start in first:
            again.append(start)
            assert not valid and flags & RecordFlag.CLOCK_JUMP, (seq, start, valid, flags)
        else:
            first[start] = seq
    assert len(again) >= 2
    valid_starts = [start for _, start, valid, _ in records if valid]
    assert len(valid_starts) == len(set(valid_starts)), "a window counted twice"
