"""A peer that no one here wrote agrees with us: mbpoll (libmodbus) reads the simulator over
TCP and over the pty, and its numbers match ours for the same registers.

Raw 16-bit words must be identical; floats mbpoll decodes itself (``-t 4:float``, default
low word first, ``-B`` high word first) must equal our decoded values as mbpoll prints them
(6 significant digits, C's %g).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from drivers.profile import builtin_profile
from drivers.transport import RtuTransport, SerialSettings, TcpTransport, Transport
from edge_agent.config.model import Device
from edge_agent.poll.poller import DevicePoller
from hw_sim import RunningStation, parse_station, running_station

T0 = 1_780_000_000.0
HACH, LIQUILINE = 1, 2  # hach: holding, float32 low word first; liquiline: input, high first
LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)", re.MULTILINE)


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningStation]:
    assert shutil.which("mbpoll"), "mbpoll is not installed: apt-get install mbpoll"
    doc = {"name": "peer", "device": [
        {"name": "hach", "profile": "hach_sc", "unit": HACH, "transports": ["rtu", "tcp"]},
        {"name": "liq", "profile": "liquiline", "unit": LIQUILINE,
         "transports": ["rtu", "tcp"]},
    ]}
    with running_station(parse_station(doc), tcp_port=0, pty=True, clock=lambda: T0) as s:
        yield s


def mbpoll(sim: RunningStation, mode: str, unit: int, table: str, address: int, count: int,
           *extra: str) -> dict[int, str]:
    """{0-based register: the number mbpoll printed} for one poll (-1); -r is 1-based."""
    common = ["-a", str(unit), "-t", table, "-r", str(address + 1), "-c", str(count), "-1",
              "-o", "2", *extra]
    if mode == "tcp":
        args = ["mbpoll", "-m", "tcp", "-p", str(sim.tcp_port), *common, "127.0.0.1"]
    else:
        assert sim.pty_path is not None
        args = ["mbpoll", "-m", "rtu", "-b", "9600", "-P", "none", *common, sim.pty_path]
    out = subprocess.run(args, capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stdout + out.stderr
    return {int(ref) - 1: value for ref, value in LINE.findall(out.stdout)}


@pytest.fixture(params=["tcp", "rtu"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _ours(sim: RunningStation, mode: str) -> Transport:
    if mode == "tcp":
        return TcpTransport("127.0.0.1", sim.tcp_port or 0)
    return RtuTransport(SerialSettings(sim.pty_path or "", 9600))


@pytest.mark.parametrize(("unit", "function", "table", "address", "count"), [
    (HACH, 3, "4", 0, 6), (HACH, 3, "4", 48, 1), (LIQUILINE, 4, "3", 0, 9),
])
def test_raw_words_agree(sim: RunningStation, mode: str, unit: int, function: int, table: str,
                         address: int, count: int) -> None:
    theirs = mbpoll(sim, mode, unit, table, address, count)
    t = _ours(sim, mode)
    try:
        words = t.read_registers(unit, function, address, count, 1.0)
    finally:
        t.close()
    assert sorted(theirs) == list(range(address, address + count))
    assert [int(theirs[a]) for a in sorted(theirs)] == words


def test_decoded_floats_agree(sim: RunningStation, mode: str) -> None:
    t = _ours(sim, mode)
    try:
        hach = DevicePoller(Device("hach", builtin_profile("hach_sc"), HACH), t.name,
                            lambda: T0).poll(t)
        liq = DevicePoller(Device("liq", builtin_profile("liquiline"), LIQUILINE), t.name,
                           lambda: T0).poll(t)
    finally:
        t.close()
    # hach: COD, NH4, Temp at 0, 2, 4, low word first (mbpoll's default float order)
    theirs = mbpoll(sim, mode, HACH, "4:float", 0, 3)
    assert [theirs[a] for a in (0, 2, 4)] == [f"{s.value:g}" for s in hach]
    # liquiline: big-endian floats at 0, 3, 6 (a state word after each): -B, one at a time
    for s in liq:
        address = builtin_profile("liquiline").channel(s.channel).address
        theirs = mbpoll(sim, mode, LIQUILINE, "3:float", address, 1, "-B")
        assert theirs[address] == f"{s.value:g}", s.channel
