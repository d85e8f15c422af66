"""A pipeline from a few lines of Python data: no TOML file, no bus, no transport, no thread.

The config is plain data (edge_agent.config.model) and the pipeline is sans-IO
(edge_agent.core), so the whole poll -> average -> record path can be driven by hand."""

from __future__ import annotations

import sys
from pathlib import Path

from edge_agent.config.model import (
    AgentSettings,
    AveragingSettings,
    ChannelMap,
    PollConfig,
    PollPolicy,
    StationConfig,
    StationInfo,
)
from edge_agent.core.pipeline import Pipeline
from protocol.model import Sample, Status

T0 = 1_790_000_000 - 1_790_000_000 % 3600  # an hour boundary


def test_a_pipeline_built_from_python_data_makes_records() -> None:
    cfg = StationConfig(
        source=Path("<test>"), station=StationInfo("T-1"),
        agent=AgentSettings(state_dir=Path("/nonexistent"), control_socket=Path("/nonexistent/s")),
        poll=PollConfig(PollPolicy(), buses=(), devices=()),
        channels=(ChannelMap(device="probe", channel="pH", symbol="pH", unit="pH", period_s=1.0),),
        averaging=AveragingSettings(windows=(10,), grace_s=1.0),
    )
    p = Pipeline(cfg, utc_offset_s=7 * 3600)
    p.clock_state(T0, synced=True)
    for i in range(10):
        p.feed("probe", [Sample("pH", T0 + i, 7.0 + i / 10, Status.MEASURING)], now=T0 + i + 0.1)
    [rec] = p.tick(T0 + 12.0)
    assert (rec.channel, rec.start, rec.end, rec.n_valid, rec.valid) == \
        ("pH", T0, T0 + 10, 10, True)
    assert abs(rec.mean - 7.45) < 1e-9


def test_the_pipeline_and_the_config_reader_load_no_port_or_broker_library() -> None:
    """At run time too (the import contract checks the source): a fresh interpreter that
    imports the pipeline and reads a config has loaded neither pyserial nor paho."""
    import subprocess

    code = ("import sys, edge_agent.core.pipeline, edge_agent.config.reader; "
            "print(sorted(m for m in ('serial', 'paho', 'pymodbus', 'sqlite3', 'asyncio') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"
