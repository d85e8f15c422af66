"""The sans-IO core: samples in, records out, no thread, socket, file or clock.

* :mod:`~edge_agent.core.pipeline`: names, averages, rolls up, normalises and flags records.
* :mod:`~edge_agent.core.clock`: detects a wall-clock jump from the readings it is given.

Why: a record is legal evidence, so the rules that make it must be testable with a clock the
test moves, and fuzzable, without a bus or a broker. The daemon passes ``now`` and the clock
observations in and stores what comes out. import-linter forbids serial, sockets, threads,
asyncio and sqlite here (pyproject.toml, "sans-io").
"""
