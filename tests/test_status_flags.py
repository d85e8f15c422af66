"""Status registers of bit flags: the profile's shape, its mistakes named, the priority rule,
and a poller reading a bit-flag device through the serial device server emulation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.decode import DEVICE, decode_samples, encode_image
from drivers.profile import ProfileError, parse_profile
from drivers.transport import RtuOverTcpTransport
from edge_agent.config.model import Device, PollPolicy
from edge_agent.poll.poller import DevicePoller
from hw_sim import RunningStation, parse_station, running_station
from protocol.model import Status


def _doc(status: dict[str, Any]) -> dict[str, Any]:
    return {"name": "flags", "defaults": {"function": 3, "dtype": "uint16"},
            "device_status": {"address": 10, **status},
            "channels": {"Level": {"address": 0, "range": [0.0, 10.0], "scale": 0.01}}}


FLAGS = parse_profile(_doc({"bits": {"0": "calibrating", "1": "maintenance", "3": "fault"}}),
                      "flags.toml")


def _status(word: int, profile: Any = FLAGS) -> Status:
    image = {(3, 0): 500, (3, 10): word}
    [sample] = decode_samples(profile, image, 0.0)
    assert sample.value == 5.0
    return sample.status


def test_fault_bit_wins_over_calibrating_and_no_flag_is_measuring() -> None:
    assert _status(0b0000) is Status.MEASURING
    assert _status(0b0001) is Status.CALIBRATING
    assert _status(0b1001) is Status.FAULT          # bit 3 fault wins over bit 0 calibrating
    assert _status(0b0011) is Status.MAINTENANCE
    assert _status(0b1011) is Status.FAULT
    assert _status(0b1111_0000_0100) is Status.MEASURING  # unlisted bits: warnings, ignored


def test_an_explicit_priority_overrides_gravity() -> None:
    profile = parse_profile(_doc({"bits": {"0": "calibrating", "3": "fault"},
                                  "priority": [0, 3]}), "flags.toml")
    assert _status(0b1001, profile) is Status.CALIBRATING
    assert _status(0b1000, profile) is Status.FAULT


def test_encode_image_says_each_status_with_one_flag() -> None:
    for status in (Status.MEASURING, Status.CALIBRATING, Status.MAINTENANCE, Status.FAULT):
        image = encode_image(FLAGS, {"Level": 5.0}, {DEVICE: status})
        assert _status(image[(3, 10)]) is status


@pytest.mark.parametrize(("status", "key", "value"), [
    ({"bits": {"16": "fault"}}, "device_status.bits.16", "16"),
    ({"bits": {"x": "fault"}}, "device_status.bits.x", "'x'"),
    ({"bits": {"0": "measuring"}}, "device_status.bits.0", "'measuring'"),
    ({"bits": {"0": "broken"}}, "device_status.bits.0", "'broken'"),
    ({"bits": {}}, "device_status.bits", "{}"),
    ({"bits": {"0": "fault", "1": "calibrating"}, "priority": [0]}, "device_status.priority",
     "[0]"),
    ({"bits": {"0": "fault"}, "priority": [0, 0]}, "device_status.priority", "[0, 0]"),
    ({"bits": {"0": "fault"}, "mask": 1}, "device_status.mask", "1"),
    ({"bits": {"0": "fault"}, "map": {"0": "fault"}}, "device_status.map", ""),
])
def test_mistakes_name_the_key_and_value(status: dict[str, Any], key: str, value: str) -> None:
    with pytest.raises(ProfileError) as exc:
        parse_profile(_doc(status), "flags.toml")
    assert f"flags.toml: {key}" in str(exc.value) or key in str(exc.value)
    assert value in str(exc.value)


PROFILE_TOML = """
name = "flag_level"
model = "level transmitter with a bit-flag status word"
[defaults]
function = 3
dtype = "float32"
[device_status]
address = 8
bits = { 0 = "calibrating", 2 = "maintenance", 3 = "fault" }
[channels.Level]
address = 0
unit = "m"
range = [1.0, 30.0]
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStation]:
    d: Path = tmp_path_factory.mktemp("flags")
    (d / "flag_level.toml").write_text(PROFILE_TOML)
    devices = [{"name": f"lvl-{s or 'ok'}", "profile": str(d / "flag_level.toml"), "unit": u,
                "transports": ["rtu"],
                **({"fault": [{"start": 0, "duration": 1e9, "status": s}]} if s else {})}
               for u, s in ((1, None), (2, "calibrating"), (3, "maintenance"), (4, "fault"))]
    with running_station(parse_station({"name": "flags", "device": devices}), tcp_port=None,
                         rtu_tcp_port=0, clock=lambda: 1_780_000_000.0) as s:
        yield s


@pytest.mark.parametrize(("unit", "status"), [
    (1, Status.MEASURING), (2, Status.CALIBRATING), (3, Status.MAINTENANCE), (4, Status.FAULT)])
def test_poller_reads_a_bit_flag_status_through_the_serial_device_server(
        sim: RunningStation, unit: int, status: Status) -> None:
    t = RtuOverTcpTransport("127.0.0.1", sim.rtu_tcp_port or 0)
    profile = sim.station.config.device(unit).profile
    try:
        [sample] = DevicePoller(Device("lvl", profile, unit), t.name, lambda: 0.0,
                                PollPolicy(timeout=2.0)).poll(t)
    finally:
        t.close()
    served = sim.served(unit)
    assert served is not None
    assert sample.status is status is served.statuses["Level"]
    assert sample.value == served.values["Level"]
