"""`quantrac config check`: ten broken station configs, ten precise messages; every problem of
a file reported at once; the example configs pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config.reader import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
[station]
id = "HCM-WW-0001"
[agent]
state_dir = "state"
[[bus]]
name = "rs485-1"
port = "/dev/ttyUSB0"
baud = 9600
[[bus]]
name = "lan"
host = "127.0.0.1"
tcp_port = 1502
[[device]]
name = "liquiline"
bus = "rs485-1"
profile = "liquiline"
unit = 1
interval = 10.0
channels = ["pH", "Temp"]
[[device]]
name = "cems"
bus = "lan"
profile = "cems"
unit = 1
interval = 10.0
channels = ["SO2", "O2"]
[averaging]
windows = [60, 300]
[[averaging.rollup]]
width = 3600
from = 300
[[normalise]]
channels = ["SO2"]
o2_channel = "O2"
o2_ref = 6.0
"""

# (what is changed in GOOD, the exact message `config check` prints for it)
BROKEN = [
    ('id = "HCM-WW-0001"\n', 'name = "x"\n',
     "{f}: station.id: missing; expected a station id: letters, digits, '.', '_' or '-' "
     "(at most 32, starting with a letter or digit)"),
    ('baud = 9600\n', 'baud = 9601\n',
     "{f}: bus 'rs485-1': baud = 9601: expected a standard baud rate (1200..115200)"),
    ('host = "127.0.0.1"\n', '',
     "{f}: bus 'lan' = {{}}: expected either port (serial) or host (TCP), not both"),
    ('bus = "lan"\n', 'bus = "lab"\n',
     "{f}: device 'cems': bus = 'lab': expected the name of a [[bus]] (known: rs485-1, lan)"),
    ('unit = 1\ninterval = 10.0\nchannels = ["SO2", "O2"]',
     'unit = 300\ninterval = 10.0\nchannels = ["SO2", "O2"]',
     "{f}: bus 'lan' device 'cems': unit = 300: expected a Modbus unit id in 1..247"),
    ('channels = ["pH", "Temp"]', 'channels = ["pH", "Tmp"]',
     "{f}: bus 'rs485-1' device 'liquiline': channels = 'Tmp': expected a channel of profile "
     "'liquiline' "
     "(pH, Temp, TSS)"),
    ('windows = [60, 300]', 'windows = [60, 300, 7]',
     "{f}: averaging.windows[2] = 7: expected a window in whole seconds that divides a day "
     "(60, 300, 3600, ...)"),
    ('from = 300\n', 'from = 600\n',
     "{f}: averaging.rollup[0].from = 600: expected the width of a window or an earlier "
     "roll-up (60, 300)"),
    ('o2_ref = 6.0\n', 'o2_ref = 21.0\n',
     "{f}: normalise[0].o2_ref = 21.0: expected a reference O2 in [0, 21) %"),
    ('interval = 10.0\nchannels = ["pH", "Temp"]', 'intervall = 10.0\nchannels = ["pH", "Temp"]',
     "{f}: bus 'rs485-1' device 'liquiline': intervall = 10.0: expected a known key (one of "
     "bus, channels, interval, "
     "name, profile, unit)"),
]


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.daemon.cli", "config", "check",
                           str(path)], capture_output=True, text=True, timeout=60)


def key_of(message: str) -> str:
    """Where a message points: ``bus 'lan' device 'cems': unit``, ``station.id``."""
    return message.removeprefix("{f}: ").split(" = ")[0].split(": missing")[0]


@pytest.mark.parametrize(("old", "new", "message"), BROKEN,
                         ids=[key_of(m) for _, _, m in BROKEN])
def test_each_broken_config_gets_its_precise_message(tmp_path: Path, old: str, new: str,
                                                     message: str) -> None:
    assert old in GOOD
    path = tmp_path / "station.toml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [message.format(f=path)]


def test_the_ten_messages_are_ten_different_mistakes() -> None:
    keys = {key_of(m) for _, _, m in BROKEN}
    assert len(BROKEN) == 10 and len(keys) == 10


def test_config_check_reports_every_problem_at_once(tmp_path: Path) -> None:
    text = GOOD
    for old, new, _ in BROKEN[1:4]:
        text = text.replace(old, new, 1)
    text = text.replace("o2_ref = 6.0\n", "o2_ref = 21.0\n")
    path = tmp_path / "station.toml"
    path.write_text(text)
    result = check(path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[-1] == "4 problem(s) found"
    assert lines[:-1] == [
        BROKEN[1][2].format(f=path), BROKEN[2][2].format(f=path), BROKEN[3][2].format(f=path),
        BROKEN[8][2].format(f=path)]


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(GOOD + "[[bus]\n")
    result = check(path)
    assert result.returncode == 1
    assert result.stdout.startswith(f"{path}: <toml> = ")
    assert "line 36" in result.stdout and "expected valid TOML" in result.stdout


def test_a_symbol_reported_twice_and_a_non_circular10_symbol(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(GOOD.replace('channels = ["SO2", "O2"]',
                                 'channels = ["SO2", "O2", "Temp", "Flow"]\n'
                                 '[device.channels.Flow]\n', 1)
                    .replace('channels = ["SO2", "O2", "Temp", "Flow"]\n',
                             '[device.channels.SO2]\n[device.channels.O2]\n'
                             '[device.channels.Temp]\n'))
    path.write_text(path.read_text().replace("[device.channels.Flow]\n",
                                             '[device.channels.Flow]\nsymbol = "Debit"\n'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msgs = [str(p) for p in info.value.problems]
    assert msgs[0] == (f"{path}: bus 'lan' device 'cems': channels.Temp = 'Temp': expected a "
                       "symbol not already reported by device 'liquiline'")
    assert msgs[1].startswith(f"{path}: bus 'lan' device 'cems': channels.Flow.symbol = "
                              "'Debit': expected a Circular 10 symbol (Flow, Temp,")
    assert len(msgs) == 2


def test_good_config_and_the_examples_pass(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.agent.state_dir == tmp_path / "state"
    assert cfg.agent.control_socket == tmp_path / "state" / "control.sock"
    assert [(c.device, c.symbol, c.unit) for c in cfg.channels] == [
        ("liquiline", "pH", "pH"), ("liquiline", "Temp", "degC"), ("cems", "SO2", "mg/Nm3"),
        ("cems", "O2", "%")]
    assert cfg.averaging.rollups[0].width == 3600
    assert cfg.normalise[0].how.o2_ref == 6.0 and cfg.mqtt is None
    for example in ("wastewater.toml", "stackgas.toml"):
        result = check(ROOT / "examples" / example)
        assert result.returncode == 0, result.stdout
        assert ": ok: station " in result.stdout


# --------------------------------------------------------------------------- issue 10: C4, S9

STATION_ID_RULE = ("a station id: letters, digits, '.', '_' or '-' (at most 32, starting with a "
                   "letter or digit)")


@pytest.mark.parametrize("sid", ["HCM/WW#+", "A" * 60, "HCMĐ-01", "HCM\x1b[2J", "-HCM"],
                         ids=["topic-chars", "60-chars", "non-ascii", "esc", "leading-dash"])
def test_config_check_refuses_the_station_ids_provisioning_refuses(tmp_path: Path,
                                                                    sid: str) -> None:
    from provisioning.errors import ProvisioningError
    from provisioning.signed import check_station_id

    with pytest.raises(ProvisioningError):
        check_station_id(sid, "--station-id")  # the provisioning rule refuses it ...
    path = tmp_path / "station.toml"
    path.write_text(GOOD.replace('"HCM-WW-0001"', json.dumps(sid), 1), encoding="utf-8")
    with pytest.raises(ConfigError) as info:  # ... and so does config check, the same way
        load_config(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}: station.id = {sid!r}: expected {STATION_ID_RULE}"]


def unit_config(unit: str) -> str:
    return GOOD.replace('channels = ["pH", "Temp"]',
                        "[device.channels.pH]\n[device.channels.Temp]\n"
                        f"unit = {json.dumps(unit)}", 1)


def test_a_unit_with_esc_cr_lf_is_refused_naming_file_key_and_escaped_value(
        tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(unit_config("deg\x1b[31mC\r\n"), encoding="utf-8")
    result = check(path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{path}: bus 'rs485-1' device 'liquiline': channels.Temp.unit = "
        "'deg\\x1b[31mC\\r\\n': expected a unit label "
        "of printable characters only (it holds \\x1b: a control character would garble a "
        "console or split a Circular 10 line)",
        "1 problem(s) found"]
    assert "\x1b" not in result.stdout  # escaped, never sent to the terminal as it is


def test_a_300_character_unit_is_refused_and_the_message_stays_short(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(unit_config("mg/L " * 60), encoding="utf-8")
    result = check(path)
    assert result.returncode == 1, result.stdout
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"{path}: bus 'rs485-1' device 'liquiline': "
                            "channels.Temp.unit = 'mg/L mg/L ")
    assert first.endswith("... (300 characters): expected a unit label of at most 32 "
                          "characters (this one has 300)")
    assert len(first) - len(str(path)) < 250  # not the 300 characters and more


def test_a_device_name_that_is_an_array_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(GOOD.replace('name = "liquiline"', 'name = ["flow"]', 1))
    result = check(path)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"{path}: device[0].name = ['flow']: expected a device name (a string, not empty)",
        "1 problem(s) found"]


@pytest.mark.parametrize("bad", ['["flow"]', "{a = 1}", '[["x"]]', "[{a = 1}]"])
def test_every_key_of_the_wrong_type_is_a_config_error_naming_it(tmp_path: Path,
                                                                 bad: str) -> None:
    """Each ``key = value`` line of GOOD in turn given a value of another type: always a
    ConfigError naming that key, never a TypeError from deep inside."""
    lines = GOOD.splitlines()
    path = tmp_path / "station.toml"
    for i, line in enumerate(lines):
        key, sep, _ = line.partition(" = ")
        if not sep:
            continue
        path.write_text("\n".join([*lines[:i], f"{key} = {bad}", *lines[i + 1:]]) + "\n")
        try:
            load_config(path)
        except ConfigError as exc:
            assert all(str(p).startswith(f"{path}: ") for p in exc.problems)
        # any other exception fails the test, naming the line
        except Exception as exc:  # pragma: no cover - the failure report
            raise AssertionError(f"line {i + 1} {key} = {bad}: {exc!r}") from exc


def test_a_latin1_config_names_the_byte_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    text = GOOD.replace('id = "HCM-WW-0001"\n', 'id = "HCM-WW-0001"\nname = "Trám"\n', 1)
    path.write_bytes(text.encode("latin-1"))
    offset = text.encode("latin-1").index(b"\xe1")
    result = check(path)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"{path}: byte {offset} (line 3, column 11) = b'\\xe1': expected UTF-8 text (the file "
        "is in another encoding, such as Latin-1 or Windows-1252; save it as UTF-8)",
        "1 problem(s) found"]
