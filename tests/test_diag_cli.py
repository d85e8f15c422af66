"""`quantrac diag scan | read | watch` against the simulated station, over the pty and TCP.

Run in-process through the CLI's own entry point (``edge_agent.daemon.cli.main``), output captured;
everything printed must fit an 80-column console.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.codec import decode_value
from edge_agent.daemon.cli import main
from hw_sim import RunningStation, parse_station, running_station

T0 = 1_780_000_000.0


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningStation]:
    doc = {"name": "diag", "device": [
        {"name": "hach", "profile": "hach_sc", "unit": 2, "transports": ["rtu", "tcp"]},
        {"name": "gas", "profile": "cems", "unit": 5, "transports": ["rtu", "tcp"]},
        {"name": "flow", "profile": "flowmeter", "unit": 9, "transports": ["tcp"]},
    ]}
    with running_station(parse_station(doc), tcp_port=0, pty=True, clock=lambda: T0) as s:
        yield s


def _bus(sim: RunningStation, mode: str) -> list[str]:
    if mode == "rtu":
        return ["--port", str(sim.pty_path), "--baud", "19200"]
    return ["--host", "127.0.0.1", "--tcp-port", str(sim.tcp_port)]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit code and stdout + stderr (answers, then refusals), every line within 80."""
    code = main(["--log-level", "ERROR", *argv])
    out, err = capsys.readouterr()
    assert all(len(line) <= 80 for line in (out + err).splitlines()), out + err
    return code, out + err


@pytest.mark.parametrize("mode", ["rtu", "tcp"])
def test_scan_finds_the_units_and_names_their_profiles(
    sim: RunningStation, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    code, out = _run(capsys, "diag", "scan", *_bus(sim, mode), "--units", "1-10")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("scan of ")
    rows = {int(line.split()[1].rstrip(":")): line for line in lines[2:-1]}
    if mode == "rtu":
        assert set(rows) == {2, 5}
    else:  # over TCP the simulator answers like a gateway: exception 0B for absent units
        assert {2, 5, 9} <= set(rows)
        assert all("exception 11" in rows[u] for u in set(rows) - {2, 5, 9})
    # one profile named, unambiguously (a tie would say "cannot tell: a or b")
    assert rows[2].startswith("unit 2: data, matches hach_sc (")
    assert rows[5].startswith("unit 5: data, matches cems (")
    if mode == "tcp":
        assert rows[9].startswith("unit 9: data, matches flowmeter (")
    assert out.splitlines()[-1].startswith(f"{len(rows)} unit(s) answered")


@pytest.mark.parametrize("mode", ["rtu", "tcp"])
def test_read_shows_words_and_both_word_orders(
    sim: RunningStation, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    code, out = _run(capsys, "diag", "read", *_bus(sim, mode), "--unit", "2", "--register",
                     "0", "--count", "2")
    assert code == 0
    served = sim.served(2)
    assert served is not None
    words = [served.image[(3, 0)], served.image[(3, 1)]]
    assert f"0x{words[0]:04X}" in out and f"0x{words[1]:04X}" in out
    cdab = next(line for line in out.splitlines() if "CDAB" in line)
    assert float(cdab.split()[-1]) == pytest.approx(served.values["COD"], rel=1e-6)

    code, out = _run(capsys, "diag", "read", *_bus(sim, mode), "--unit", "2", "--register",
                     "0", "--count", "2", "--type", "float32", "--word-order", "little")
    assert code == 0
    value = float(out.splitlines()[-1].split()[-1])
    expected = decode_value(words, "float32", "big", "little")
    assert struct.pack(">f", value) == struct.pack(">f", expected)

    # Several values at once: one line each with its registers, a stray word named.
    code, out = _run(capsys, "diag", "read", *_bus(sim, mode), "--unit", "2", "--register",
                     "0", "--count", "5", "--type", "float32", "--word-order", "little")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[1] for line in lines[-3:-1]] == ["0-1", "2-3"]
    assert lines[-1] == "  register 4: 1 word(s) left over (float32 takes 2)"


def test_read_reports_a_silent_unit(sim: RunningStation,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "diag", "read", *_bus(sim, "rtu"), "--unit", "7", "--register",
                     "0", "--timeout", "0.1")
    assert code == 1
    assert "no answer" in out


def test_watch_once_and_live(sim: RunningStation, capsys: pytest.CaptureFixture[str],
                             tmp_path: Path) -> None:
    config = tmp_path / "station.toml"
    config.write_text(
        f'[poll]\ntimeout = 0.2\n'
        f'[[bus]]\nname = "rs485"\nport = "{sim.pty_path}"\nbaud = 19200\n'
        f'[[bus]]\nname = "lan"\nhost = "127.0.0.1"\ntcp_port = {sim.tcp_port}\n'
        f'[[device]]\nname = "hach"\nbus = "rs485"\nprofile = "hach_sc"\nunit = 2\n'
        f'[[device]]\nname = "flow"\nbus = "lan"\nprofile = "flowmeter"\nunit = 9\n'
        f'[[device]]\nname = "ghost"\nbus = "rs485"\nprofile = "ph_probe"\nunit = 8\n'
    )
    code, out = _run(capsys, "diag", "watch", "--config", str(config), "--once")
    assert code == 0
    lines = out.splitlines()
    cod = next(line for line in lines if line.startswith("hach ") and " COD " in line)
    served = sim.served(2)
    assert served is not None
    assert f"{served.values['COD']:.6g}" in cod and "mg/L" in cod and "measuring" in cod
    assert any(line.startswith("flow ") for line in lines)
    ghost = [line for line in lines if line.startswith("ghost ")]
    assert len(ghost) == 2 and all("offline" in line for line in ghost)

    code, out = _run(capsys, "diag", "watch", "--config", str(config), "--duration", "0.6",
                     "--interval", "0.2")
    assert code == 0
    frames = out.count("quantrac diag watch")
    assert frames >= 2
    assert "! ghost unit 8: timeout" in out
    # quiet for the watch only: the loggers' own levels are put back after it (here the
    # CLI's --log-level ERROR set the root's; a test's caplog.set_level on "quantrac" would
    # not reach a child left at ERROR)
    for name in ("quantrac.edge_agent.poller", "quantrac.drivers.transport"):
        assert logging.getLogger(name).level == logging.NOTSET, name


def test_scan_stopped_early_keeps_what_it_found(sim: RunningStation) -> None:
    """Ctrl-C (a KeyboardInterrupt, here raised from the progress callback) ends the scan."""
    from drivers.profile import builtin_profile, builtin_profile_names
    from drivers.transport import TcpTransport
    from edge_agent.console.diag import scan, scan_report

    def progress(done: int, total: int, found: int) -> None:
        if done == 6:
            raise KeyboardInterrupt

    t = TcpTransport("127.0.0.1", sim.tcp_port or 0)
    try:
        hits, complete = scan(t, range(1, 248), [builtin_profile(n) for n in
                                                 builtin_profile_names()], 0.2, progress)
    finally:
        t.close()
    assert not complete
    assert [h.unit for h in hits if h.answer == "data"] == [2, 5]
    assert scan_report(hits, complete)[-1].endswith("(scan interrupted)")
