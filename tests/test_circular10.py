"""Circular 10 rendering (exact file name and bytes for hand-built records; no value is ever a
made-up number) and the ``[uplink.circular10]`` config (precise messages, secrets never echoed)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge_agent.config.model import Circular10Receiver, circular10_warnings
from edge_agent.config.reader import ConfigError, load_config
from edge_agent.uplinks.circular10 import render as circular10
from protocol.model import Record, RecordFlag, Status

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
START = int(dt.datetime(2026, 11, 23, 7, 30, tzinfo=HCM).timestamp())  # 00:30 UTC


def rec(channel: str, mean: float, unit: str, *, valid: bool = True,
        status: Status = Status.MEASURING, start: int = START) -> Record:
    return Record(channel, start, start + 300, mean, mean, mean, 0.0,
                  30 if valid else 10, 30, valid, status, unit, RecordFlag.NONE)


RX = Circular10Receiver(file_prefix="HN_PHCH_NUOPCH_")  # the defaults: dated, end, TAB, CRLF


def rendered(records: list[Record], rx: Circular10Receiver = RX) -> circular10.Circular10File:
    return circular10.render_file(rx, HCM, START, 300, records)


def test_name_is_the_issued_prefix_verbatim_and_the_window_end_in_local_time() -> None:
    f = rendered([rec("pH", 7.1, "")])
    assert (f.remote_dir, f.name) == ("2026/11/23", "HN_PHCH_NUOPCH_20261123073500.txt")
    assert f.path == "2026/11/23/HN_PHCH_NUOPCH_20261123073500.txt"
    two = replace(RX, file_prefix="LSOS_KHIKHO_", remote_dir="/{yyyyMMdd}", stamp="start")
    f = rendered([rec("pH", 7.1, "")], two)
    assert (f.remote_dir, f.name) == ("20261123", "LSOS_KHIKHO_20261123073000.txt")
    assert rendered([rec("pH", 7.1, "")], replace(RX, remote_dir="")).path == \
        "HN_PHCH_NUOPCH_20261123073500.txt"
    # the zone is the station's: the same instant in UTC names another file
    assert circular10.render_file(RX, ZoneInfo("UTC"), START, 300, []).name == \
        "HN_PHCH_NUOPCH_20261123003500.txt"


def test_rendered_file_is_exactly_the_expected_text() -> None:
    records = [
        rec("pH", 7.1, ""),  # pH has no unit
        rec("Temp", 25.0, "°C"),
        rec("COD", math.nan, "mg/L", valid=False, status=Status.OFFLINE),  # no answer
        rec("TSS", 12.5, "mg/L", valid=False),  # coverage below the rule: still measuring
        rec("NH4", math.nan, "mg/L", valid=False, status=Status.CALIBRATING),
        rec("Flow", 1234.56789, "m³/h"),
        rec("Temp_inlet", -0.00001, "°C"),
        rec("TN", 3.0, "mg/L", valid=False, status=Status.FAULT),
        rec("TP", 0.5, "mg/L", valid=False, status=Status.MAINTENANCE),
        rec("PM2,5", 12.0, "µg/m3"),
    ]
    expected = (
        "pH\t7.1\t\t20261123073500\t00\r\n"
        "Temp\t25\toC\t20261123073500\t00\r\n"
        "COD\t\tmg/L\t20261123073500\t02\r\n"
        "TSS\t12.5\tmg/L\t20261123073500\t00\r\n"
        "NH4\t\tmg/L\t20261123073500\t01\r\n"
        "Flow\t1234.5679\tm3/h\t20261123073500\t00\r\n"
        "Temp_inlet\t0\toC\t20261123073500\t00\r\n"
        "TN\t3\tmg/L\t20261123073500\t02\r\n"
        "TP\t0.5\tmg/L\t20261123073500\t01\r\n"
        "PM2,5\t12\tug/m3\t20261123073500\t00\r\n"
    )
    f = rendered(records)
    assert f.data == expected.encode("ascii") and f.lines == len(records)


def test_status_column_is_the_instrument_status() -> None:
    assert circular10.STATUS_CODES == {
        Status.MEASURING: "00", Status.CALIBRATING: "01", Status.MAINTENANCE: "01",
        Status.FAULT: "02", Status.OFFLINE: "02"}
    # an invalid-coverage window is not a device fault: reported with its mean, or left out
    low = rec("COD", 41.0, "mg/L", valid=False)
    assert rendered([low]).data == b"COD\t41\tmg/L\t20261123073500\t00\r\n"
    assert rendered([low, rec("pH", 7.0, "")], replace(RX, invalid="omit")).data == \
        b"pH\t7\t\t20261123073500\t00\r\n"


@pytest.mark.parametrize("status", list(Status))
def test_a_record_without_value_never_gets_a_number(status: Status) -> None:
    for mean in (math.nan, math.inf, -math.inf):
        for rx, value in ((RX, ""), (replace(RX, missing_value="---"), "---")):
            text = rendered([rec("COD", mean, "mg/L", valid=False, status=status)], rx)
            fields = text.data.decode().removesuffix("\r\n").split("\t")
            assert fields == ["COD", value, "mg/L", "20261123073500",
                              circular10.STATUS_CODES[status]]
        omitted = rendered([rec("COD", mean, "mg/L", valid=False, status=status)],
                           replace(RX, omit_missing=True))
        assert (omitted.data, omitted.lines) == (b"", 0)


def test_whitespace_receiver_profile_keeps_five_columns() -> None:
    ws = replace(RX, fields="whitespace", missing_value="---", empty_unit="-", line_end="\n")
    text = rendered([rec("pH", 7.0, ""), rec("COD", math.nan, "mg/L", valid=False,
                                             status=Status.OFFLINE)], ws).data.decode()
    assert [ln.split() for ln in text.splitlines()] == [
        ["pH", "7", "-", "20261123073500", "00"], ["COD", "---", "mg/L", "20261123073500", "02"]]
    assert "\r" not in text


def test_aliases_and_transmit_units_convert_the_value() -> None:
    rx = replace(RX, aliases=(("PM2,5", "PM2.5"),), units=(("PM2,5", "mg/m3"), ("Flow", "m3/s")))
    text = rendered([rec("PM2,5", 12.0, "µg/m3"), rec("Flow", 7200.0, "m³/h")], rx).data
    assert text == (b"PM2.5\t0.012\tmg/m3\t20261123073500\t00\r\n"
                    b"Flow\t2\tm3/s\t20261123073500\t00\r\n")
    # a stored record whose unit does not convert keeps its own unit and value
    assert rendered([rec("Flow", 5.0, "L/min")], rx).data == \
        b"Flow\t5\tL/min\t20261123073500\t00\r\n"


@pytest.mark.parametrize("unit", ["p\tH", "mg/L\r\nCOD\t999", "\x1b[2Jmg/L", "m" * 300, "Đơn vị"])
def test_a_stored_unit_that_breaks_the_label_rule_is_written_safe_not_refused(unit: str) -> None:
    """An outbox may hold records made before the config refused such labels; refusing one
    would stop every later file of the legal channel, writing it raw would split the line."""
    text = rendered([rec("pH", 7.0, unit), rec("COD", 1.0, "mg/L")]).data.decode("ascii")
    lines = text.split("\r\n")
    assert lines[-1] == "" and len(lines) == 3, text
    ph = lines[0].split("\t")
    assert len(ph) == 5 and ph[0] == "pH" and ph[1] == "7" and ph[4] == "00", ph
    assert ph[2].isprintable() and " " not in ph[2] and len(ph[2]) <= 32, ph[2]
    assert lines[1].split("\t")[:3] == ["COD", "1", "mg/L"]


def test_a_tab_or_line_break_in_a_symbol_is_refused() -> None:
    with pytest.raises(ValueError, match="tab or line break"):
        rendered([rec("p\tH", 7.0, "")])


# --------------------------------------------------------------------------- config

STATION = """\
[station]
id = "HCM-WW-0001"
province = "HCM"
facility = "ACME"
name = "Outfall1"
[agent]
state_dir = "state"
[[bus]]
name = "lan"
host = "127.0.0.1"
tcp_port = 1502
[[device]]
name = "liquiline"
bus = "lan"
profile = "liquiline"
unit = 1
interval = 10.0
channels = ["pH", "Temp"]
"""
"""A station with the identity a Circular 10 file name needs; the uplink tests share it."""

BASE = STATION + """\
[averaging]
windows = [60, 300]
[uplink.circular10]
host = "ftp.centre.example"
user = "station1"
password_file = "ftp.secret"
directory = "/incoming"
[uplink.circular10.receiver]
file_prefix = "HCM_ACME_OUTF1_"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "ftp.secret").write_text("pa55word\n")
    path = tmp_path / "station.toml"
    path.write_text(text)
    return path


_R = "[uplink.circular10.receiver]\n"


def test_good_circular10_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    c = cfg.circular10
    assert c is not None
    assert (c.host, c.port, c.user, c.password, c.directory, c.transport, c.interval_minutes,
            c.window, c.retention_days) == ("ftp.centre.example", 21, "station1", "pa55word",
                                            "/incoming", "ftps", 5.0, 300, 60.0)
    assert c.receiver == Circular10Receiver(file_prefix="HCM_ACME_OUTF1_")
    assert "pa55word" not in repr(cfg.circular10)
    assert circular10_warnings(c) == []


def test_a_full_receiver_profile(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE + """\
remote_dir = "/{yyyyMMdd}"
stamp = "start"
fields = "whitespace"
line_end = "lf"
missing_value = "---"
empty_unit = "-"
invalid = "omit"
transport = "ftp"
passive = false
upload = "direct"
files_per_minute = 0.5
aliases = { Temp = "TEMP" }
units = { Temp = "oC" }
"""))
    assert cfg.circular10 is not None
    assert cfg.circular10.receiver == Circular10Receiver(
        file_prefix="HCM_ACME_OUTF1_", remote_dir="/{yyyyMMdd}", stamp="start",
        fields="whitespace", line_end="\n", missing_value="---", empty_unit="-",
        invalid="omit", transport="ftp", passive=False, upload="direct",
        files_per_minute=0.5, aliases=(("Temp", "TEMP"),), units=(("Temp", "oC"),))
    assert [w.split(":")[0] for w in circular10_warnings(cfg.circular10)] == [
        "uplink.circular10.receiver.transport = 'ftp'"]


def test_the_old_tls_key_still_means_ftps_or_ftp(tmp_path: Path) -> None:
    for tls, transport in (("true", "ftps"), ("false", "ftp")):
        cfg = load_config(write(tmp_path, BASE.replace(_R, f"tls = {tls}\n{_R}")))
        assert cfg.circular10 is not None and cfg.circular10.transport == transport


def test_an_interval_over_5_minutes_is_warned_about_unless_allowed(tmp_path: Path) -> None:
    text = BASE.replace('directory = "/incoming"\n', 'directory = "/incoming"\n'
                        'interval_minutes = 10\n')
    cfg = load_config(write(tmp_path, text))
    assert cfg.circular10 is not None
    assert circular10_warnings(cfg.circular10) == [
        "uplink.circular10.interval_minutes = 10: Circular 10 wants a file every 5 minutes at "
        "most; set allow_interval_over_5_min = true if the province agreed to this"]
    cfg = load_config(write(tmp_path, text.replace("interval_minutes = 10\n", "interval_minutes "
                                                   "= 10\nallow_interval_over_5_min = true\n")))
    assert cfg.circular10 is not None and circular10_warnings(cfg.circular10) == []


def test_sftp_needs_a_pinned_host_key_and_defaults_to_port_22(tmp_path: Path) -> None:
    sftp = BASE + 'transport = "sftp"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, sftp))
    [problem] = [str(p) for p in info.value.problems]
    assert problem.startswith(f"{tmp_path / 'station.toml'}: uplink.circular10.host_key: "
                              "missing; expected the server's key")
    cfg = load_config(write(tmp_path, sftp.replace(
        "[uplink.circular10.receiver]",
        'host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ"\n[uplink.circular10.receiver]')))
    assert cfg.circular10 is not None and cfg.circular10.port == 22


RX_KEYS = ("aliases, empty_unit, fields, file_prefix, files_per_minute, invalid, line_end, "
           "missing_value, omit_missing, passive, remote_dir, stamp, transport, units, upload")

# (what is changed in BASE, the exact message)
BROKEN = [
    ('file_prefix = "HCM_ACME_OUTF1_"\n', '',
     "{f}: uplink.circular10.receiver.file_prefix: missing; expected the file-name prefix "
     "exactly as the province issued it (e.g. 'HN_PHCH_NUOPCH_'): 1 to 64 ASCII letters, "
     "digits, '_', '-' or '.' (this station's files were named 'HCM_ACME_Outfall1_'+time "
     "before: use it only if the province issued that)"),
    ('file_prefix = "HCM_ACME_OUTF1_"\n', 'file_prefix = "Hà Nội_"\n',
     "{f}: uplink.circular10.receiver.file_prefix = 'Hà Nội_': expected the file-name prefix "
     "exactly as the province issued it (e.g. 'HN_PHCH_NUOPCH_'): 1 to 64 ASCII letters, "
     "digits, '_', '-' or '.' (this station's files were named 'HCM_ACME_Outfall1_'+time "
     "before: use it only if the province issued that)"),
    (_R, _R + 'remote_dir = "/{yyyy}/{M}"\n',
     "{f}: uplink.circular10.receiver.remote_dir = '/{yyyy}/{M}': expected a folder template "
     "under directory made of {yyyy}, {MM}, {dd}, {yyyyMM}, {yyyyMMdd} and '/', e.g. "
     "'/{yyyy}/{MM}/{dd}', '/{yyyyMMdd}' or ''"),
    (_R, _R + 'remote_dir = "/../{yyyy}"\n',
     "{f}: uplink.circular10.receiver.remote_dir = '/../{yyyy}': expected a folder template "
     "under directory made of {yyyy}, {MM}, {dd}, {yyyyMM}, {yyyyMMdd} and '/', e.g. "
     "'/{yyyy}/{MM}/{dd}', '/{yyyyMMdd}' or ''"),
    (_R, _R + 'stamp = "middle"\n',
     "{f}: uplink.circular10.receiver.stamp = 'middle': expected end (the time the mean "
     "exists, the default) or start"),
    (_R, _R + 'missing_value = "-9999"\n',
     "{f}: uplink.circular10.receiver.missing_value = '-9999': expected a placeholder that is "
     "not a number, e.g. '' or '---'"),
    (_R, _R + 'missing_value = "NaN"\n',
     "{f}: uplink.circular10.receiver.missing_value = 'NaN': expected a placeholder that is "
     "not a number, e.g. '' or '---'"),
    (_R, _R + 'fields = "whitespace"\nmissing_value = "---"\nempty_unit = ""\n',
     "{f}: uplink.circular10.receiver.empty_unit = '': expected the unit field of a unitless "
     "parameter (pH): '' or ASCII without blanks, e.g. '-'; not empty nor with a blank: the "
     "receiver splits on whitespace (fields = 'whitespace')"),
    (_R, _R + 'fields = "whitespace"\nempty_unit = "-"\n',
     "{f}: uplink.circular10.receiver.missing_value: missing; expected a placeholder such as "
     "'---', or omit_missing = true: the receiver splits on whitespace, an empty value "
     "shifts the columns"),
    (_R, _R + 'transport = "ftpes"\n',
     "{f}: uplink.circular10.receiver.transport = 'ftpes': expected one of ftp, ftps, sftp"),
    (_R, 'tls = false\n' + _R + 'transport = "ftp"\n',
     "{f}: uplink.circular10.tls = False: expected no tls key next to "
     "uplink.circular10.receiver.transport (tls is the old spelling of transport = 'ftps' / "
     "'ftp'; keep transport)"),
    (_R, _R + 'upload = "rename-or-die"\n',
     "{f}: uplink.circular10.receiver.upload = 'rename-or-die': expected rename (temp name, "
     "then rename; falls back to direct by itself) or direct"),
    (_R, _R + 'files_per_minute = -1\n',
     "{f}: uplink.circular10.receiver.files_per_minute = -1: expected files per minute >= 0 "
     "(0: as fast as the link allows)"),
    (_R, _R + 'units = { Temp = "K" }\n',
     "{f}: uplink.circular10.receiver.units.Temp = 'K': expected the ASCII unit the file "
     "carries for Temp, shown in 'degC': one of 'oC'"),
    (_R, _R + 'units = { COD = "mg/L" }\n',
     "{f}: uplink.circular10.receiver.units.COD = 'mg/L': expected a known key (one of Temp, "
     "pH)"),
    (_R, _R + 'aliases = { Temp = "T emp" }\n',
     "{f}: uplink.circular10.receiver.aliases.Temp = 'T emp': expected the name the "
     "province's files give Temp: 1 to 32 printable ASCII characters without blanks"),
    (_R, _R + 'colour = "blue"\n',
     "{f}: uplink.circular10.receiver.colour = 'blue': expected a known key (one of "
     f"{RX_KEYS})"),
    (_R, 'host_key = "ssh-ed25519 AAAA"\n' + _R,
     "{f}: uplink.circular10.host_key = 'ssh-ed25519 AAAA': expected no host_key unless "
     "uplink.circular10.receiver.transport = 'sftp'"),
    ('host = "ftp.centre.example"\n', '',
     "{f}: uplink.circular10.host: missing; expected the province's server host name or "
     "address"),
    ('directory = "/incoming"\n', 'directory = "/incoming"\nport = 70000\n',
     "{f}: uplink.circular10.port = 70000: expected a TCP port in 1..65535"),
    ('directory = "/incoming"\n', 'directory = "/incoming"\ntls = "yes"\n',
     "{f}: uplink.circular10.tls = 'yes': expected true or false"),
    ('directory = "/incoming"\n', 'directory = "/incoming"\ninterval_minutes = 0\n',
     "{f}: uplink.circular10.interval_minutes = 0: expected minutes in (0, 60] (the "
     "circular wants 5)"),
    ('directory = "/incoming"\n', 'directory = "/incoming"\nwindow = 900\n',
     "{f}: uplink.circular10.window = 900: expected the width of an averaging window "
     "(averaging.windows: 60, 300)"),
    ('password_file = "ftp.secret"\n', 'password_file = "nope.secret"\n',
     "{f}: uplink.circular10.password_file = 'nope.secret': expected a readable file whose "
     "first line is the password (No such file or directory)"),
    ('directory = "/incoming"\n', 'directory = "/incoming"\npasword = "x"\n',
     "{f}: uplink.circular10.pasword = 'x': expected a known key (one of "
     "allow_interval_over_5_min, backoff_cap_s, ca_file, directory, host, host_key, "
     "interval_minutes, key_file, known_hosts, password, password_file, port, receiver, "
     "retention_days, timeout_s, tls, user, window)"),
    ('directory = "/incoming"\n', 'directory = "/incoming"\nretention_days = 0.5\n',
     "{f}: uplink.circular10.retention_days = 0.5: expected at least 1 day"),
]


@pytest.mark.parametrize(("old", "new", "message"), BROKEN,
                         ids=[m.split(":")[1].split("=")[0].strip() + f"-{i}"
                              for i, (_, _, m) in enumerate(BROKEN)])
def test_each_broken_circular10_config_gets_its_precise_message(
        tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [message.replace("{f}", str(path))]


@pytest.mark.parametrize("extra", ['password = "hunter2-secret"\n', "password = 1234567\n"])
def test_a_password_problem_never_echoes_the_password(tmp_path: Path, extra: str) -> None:
    path = write(tmp_path, BASE.replace('directory = "/incoming"\n',
                                        'directory = "/incoming"\n' + extra, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "hunter2" not in text and "1234567" not in text
    assert text.startswith(f"{path}: uplink.circular10.password = '<hidden>': expected ")


def test_a_spooled_file_goes_to_the_dated_folder_its_name_gives() -> None:
    from edge_agent.uplinks.circular10.settings import Circular10Settings
    from edge_agent.uplinks.circular10.uplink import remote_path

    settings = Circular10Settings("127.0.0.1", RX, directory="/incoming")
    # the last file of a month and year (a window ending at local midnight is in the new day)
    assert remote_path(settings, "HN_PHCH_NUOPCH_20261231235500.txt") == (
        "/incoming/2026/12/31", "/incoming/2026/12/31/HN_PHCH_NUOPCH_20261231235500.txt")
    assert remote_path(settings, "HN_PHCH_NUOPCH_20270101000000.txt")[0] == "/incoming/2027/01/01"
    flat = Circular10Settings("127.0.0.1", replace(RX, remote_dir="/{yyyyMMdd}"))
    assert remote_path(flat, "LSOS_KHIKHO_20260228120000.txt") == (
        "20260228", "20260228/LSOS_KHIKHO_20260228120000.txt")
    # one digit short, a letter, month 13, 29 February 2026, no time, full-width digits
    for bad in ("HN_PHCH_NUOPCH_2026123123550.txt", "HN_PHCH_NUOPCH_2026123123550x.txt",
                "HN_PHCH_NUOPCH_20261331235500.txt", "HN_PHCH_NUOPCH_20260229120000.txt",
                "x.txt", "HN_PHCH_NUOPCH_２０261231235500.txt"):
        with pytest.raises(ValueError):
            remote_path(settings, bad)
