"""The sampler started through the field node's relay (issue 15 item 5): the real firmware.

The field node firmware under the MicroPython unix port on a socat pty (as
tests/test_firmware_node.py runs it); its relay is holding register 2 (firmware/regmap.py
HR_RELAY: 1 closed, 0 open), and its unix HAL reports the relay output in the status file.
``[sampler]`` with ``trigger_register = 2``: a start closes the relay (FC06 1) and opens it
again ``pulse_s`` later (FC06 0), which is the pulse a sampler's start contact wants.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.serial_settings import SerialSettings
from drivers.transport import RtuTransport
from edge_agent.config.sampler import SamplerSettings
from edge_agent.poll.sampler import SamplerWorker
from provisioning.firmware_cli import NodeProcess
from tests.mqtt_world import wait_for
from tests.test_firmware_node import CONFIG, UNIT


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    assert shutil.which("socat"), "socat is not installed: apt-get install socat"
    with NodeProcess(copy.deepcopy(CONFIG), tmp_path) as n:
        n.set(ma=[12.0, 4.0, 20.0, 12.0], pulses=[0], di=[0])
        n.start()
        yield n


def test_a_start_pulses_the_field_nodes_relay(node: NodeProcess) -> None:
    settings = SamplerSettings(bus="rs485-1", unit=UNIT, trigger="register", address=2,
                               value=1, timeout_s=2.0, pulse_s=3.0)
    bus = RtuTransport(SerialSettings(node.port, 9600))
    worker = SamplerWorker(settings, bus)
    worker.start_thread()
    try:
        node.wait(lambda s: s["relay_out"] == 0, 20, "the relay open at start")
        worker.start({"by": "command"})
        node.wait(lambda s: s["relay_out"] == 1, 20, "the relay closed by the start")
        node.wait(lambda s: s["relay_out"] == 0, 20, "the relay open again after pulse_s")
        # the node opens the relay before its answer to that write is read by the worker,
        # which counts the start only then (failed in a loaded CI run: starts was still 0)
        wait_for(lambda: worker.status()["starts"] + worker.status()["failed"] > 0, 10,
                 "the worker to read the node's answer to the second write")
        status = worker.status()
        assert (status["starts"], status["failed"], status["problem"]) == (1, 0, None)
        assert status["last_start"]["ok"] is True
    finally:
        worker.stop()
        bus.close()
