"""Reading the station config: one TOML file says everything the agent does.

TOML in, the plain data of :mod:`edge_agent.config.model` out. Reading a file is the only I/O
here (and the profile files a device names); nothing is opened, polled or started, so the
agent, ``config check``, ``diag watch`` and a test all read a config the same way. What to
poll (``[poll]``, ``[[bus]]``, ``[[device]]``; :func:`load_poll_config` is that view alone,
for ``diag watch``), the station's identity, its state directory, which channels are reported
under which Circular 10 symbol, the averaging windows and validity rules, stack-gas
normalisation and the uplinks::

    [station]
    id = "HCM-WW-0001"              # must match the provisioned identity (quantrac provision)
    province = "HCM"                # the Circular 10 file name: Province_Facility_Station_...
    facility = "ACME"
    name = "Outfall1"
    timezone = "Asia/Ho_Chi_Minh"   # windows align to this zone's wall clock (default)

    [agent]                         # optional
    state_dir = "/var/lib/quantrac" # relative paths are relative to this file
    control_socket = "..."          # default <state_dir>/control.sock
    record_retention_days = 60      # acknowledged records kept (legal minimum 60)
    sample_retention_days = 7       # raw samples kept
    sample_flush_s = 5.0            # raw samples are written in batches (SD cards wear out)
    clock_jump_tolerance_s = 2.0    # wall vs monotonic disagreement that counts as a jump
    backfill_horizon_s = 900.0      # windows wait this long at most for a field node's log

    [poll]                          # optional: defaults for every device
    timeout = 1.0                   # seconds per transaction
    retries = 1
    backoff_max = 60.0

    [[bus]]
    name = "rs485-1"
    port = "/dev/ttyUSB0"           # a serial line: port, baud, parity (N/E/O), stopbits
    baud = 9600
    parity = "N"
    turnaround = 0.005              # optional pause between frames (default: 3.5 characters)

    [[bus]]
    name = "plc"
    host = "192.168.1.10"           # or Modbus TCP: host, tcp_port (default 502)
    tcp_port = 502
    # transport = "rtu-over-tcp"    # a serial device server: raw RTU frames on the socket

    [[device]]
    name = "hach"
    bus = "rs485-1"
    profile = "hach_sc"
    unit = 2
    interval = 10.0
    channels = ["COD", "NH4"]       # default: the profile's Circular 10 channels (diag: all);
                                    # reported under the same name (a Circular 10 symbol) ...
                                    # a second point of one parameter: symbol = "Temp_inlet"
    # [device.channels.Temp]        # ... or a table: profile channel -> symbol and unit label
    # symbol = "Temp"
    # unit = "°C"                   # a label only: conversions belong in [[normalise]]
    # [device.channels.WD]          # a wind vane: average = "direction" (the default for WD)
    # speed = "WS"                  # weighted by this speed symbol of the same device
    # vector_speed = "WS_vector"    # and the vector mean speed reported under this symbol

    [averaging]
    windows = [60, 300]             # seconds; each divides a day
    rule = "coverage_75"            # or "cfr_60_13_h" (40 CFR 60.13(h): a point per quadrant)
    min_fraction = 0.75             # the coverage rule's threshold
    grace_s = 30.0                  # late samples still counted this long after a window ends
    [[averaging.rollup]]            # hourly and daily roll-ups of closed records
    width = 3600
    from = 300
    rule = "coverage_75"
    [[averaging.rolling]]           # ambient air: the 8-hour rolling CO/O3 average
    channels = ["CO", "O3"]
    from = 3600                     # hourly records; span = 8 of them, min_valid = 6

    [[normalise]]                   # stack gas: reference O2, wet->dry, ppm->mg/Nm3
    channels = ["SO2", "NOx", "CO", "PM"]
    standard = "QCVN 19:2024"       # reference O2 and Nm3 from edge_agent/config/standards
    source = "solid_fuel_boiler"    # ... by source category (or o2_ref = 6.0: the permit's)
    o2_channel = "O2"
    # h2o_channel = "H2O"           # wet analysers: dry by the window's measured moisture
    to_mg_nm3 = true

    [uplink.mqtt]                   # optional; broker, keys and topics come from provisioning
    window = 8
    ack_timeout_s = 60.0

    [uplink.circular10]             # optional: the Circular 10 files (docs/circular10.md)
    host = "ftp.stnmt.example.vn"   # the province's server
    port = 21                       # default 21 (22 for sftp)
    user = "station1"
    password_file = "ftp.secret"    # or password = "..."; relative to this file
    directory = "/HN_PHCH"          # the station's base folder (default: the login folder)
    ca_file = "centre-ca.pem"       # ftps: the CA of the server's certificate (optional)
    # host_key = "ssh-ed25519 AAAA..." # sftp: the key from the province's sheet, and/or
    # known_hosts = "known_hosts"   # an OpenSSH known_hosts file; key_file = "id_ed25519"
    interval_minutes = 5.0          # > 5 is warned about unless allow_interval_over_5_min
    window = 300                    # which averaging window feeds the files
    retention_days = 60             # sent files kept in the spool
    [uplink.circular10.receiver]    # what the province's receiving software expects
    file_prefix = "HN_PHCH_NUOPCH_" # verbatim as issued; then yyyyMMddHHmmss.txt
    remote_dir = "/{yyyy}/{MM}/{dd}" # dated folder under directory; "/{yyyyMMdd}"; ""
    transport = "ftp"               # ftp, ftps (default) or sftp
    upload = "rename"               # or "direct"; rename falls back to direct by itself
    stamp = "end"                   # or "start"
    missing_value = ""              # or "---"; omit_missing = true drops the line
    fields = "tab"                  # or "whitespace": then no empty placeholder is allowed
    # empty_unit = "-"  line_end = "crlf"  invalid = "report"  passive = true
    # files_per_minute = 0          # pacing for a receiver that reads only the newest file
    # aliases = { "PM2,5" = "PM2.5" }   units = { Temp = "oC" }

Every mistake is collected, not just the first: :class:`ConfigError` carries one
:class:`Problem` per mistake, each naming the file, the key path, the value and what was
expected, so an installer fixes a config in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drivers.profile import Profile, ProfileError, resolve_profile
from drivers.serial_settings import SerialSettings
from edge_agent.averaging.errors import InputError
from edge_agent.averaging.normalise import MOLAR_MASS_G_PER_MOL, Normalisation
from edge_agent.averaging.rolling import Rolling
from edge_agent.averaging.rules import RULES, ValidityRule
from edge_agent.config.circular10_units import (
    ascii_unit,
    conversion,
    is_ascii_unit,
    known_targets,
)
from edge_agent.config.limits import parse_limits
from edge_agent.config.model import (
    CIRCULAR10_SYMBOLS,
    DAY_S,
    FILE_PREFIX,
    REMOTE_DIR_FIELDS,
    TRANSPORTS,
    AgentSettings,
    AveragingSettings,
    BusConfig,
    ChannelMap,
    Circular10Receiver,
    Circular10Settings,
    Device,
    MqttSettings,
    NormaliseSettings,
    PollConfig,
    PollPolicy,
    RollingSettings,
    Rollup,
    StationConfig,
    StationInfo,
    is_symbol,
    remote_dir_ok,
)
from edge_agent.config.sampler import parse_sampler
from edge_agent.config.standards import Standard, standards
from edge_agent.config.totalisers import parse_totalisers
from edge_agent.config.web import parse_web
from protocol.config_file import MISSING as _MISSING
from protocol.config_file import ConfigError as ConfigError
from protocol.config_file import Problem as Problem
from protocol.config_file import Reader as _Reader
from protocol.config_file import read_toml
from protocol.config_file import shown as _shown
from protocol.payload import unit_problem
from protocol.safe_text import escape_controls
from provisioning.signed import STATION_ID_RULE, is_station_id


def load_config(path: str | Path, *, station_required: bool = True) -> StationConfig:
    """Read and check the station config at ``path``; ConfigError lists every mistake.

    ``station_required=False`` is for ``diag watch`` and ``status``: only [agent], [poll],
    [[bus]] and [[device]] are read, and a device without ``channels`` polls every channel.
    """
    path = Path(path)
    # TOML is UTF-8: a file saved by a Windows editor as Latin-1/Windows-1252 (a Vietnamese
    # name such as "Trạm" in a legacy code page) is named by byte, line and column.
    doc = read_toml(path, ConfigError)
    return parse_config(doc, path, station_required=station_required)


_TOP = {"station", "agent", "poll", "bus", "device", "averaging", "normalise", "uplink",
        "limit", "totaliser", "sampler", "web"}


def parse_config(doc: Mapping[str, Any], source: str | Path, *,
                 station_required: bool = True) -> StationConfig:
    source = Path(source)
    r = _Reader(str(source))
    r.table(doc, "", _TOP)
    station = _station(r, doc, station_required)
    agent = _agent(r, doc.get("agent", {}), source)
    poll, stranded = _poll(r, doc, source, every_channel=not station_required)
    if not station_required:  # diag: what to poll is all that matters
        if r.problems:
            raise ConfigError(_by_name(r.problems, doc))
        return StationConfig(source, station, agent, poll, (), AveragingSettings(), raw=doc)
    channels = _channels(r, doc, [d for _, d in poll.devices] + stranded)
    averaging = _averaging(r, doc.get("averaging", {}), channels)
    symbols = {c.symbol for c in channels}
    units = {c.symbol: c.unit for c in channels}
    normalise = _normalise_all(r, doc, symbols, units)
    mqtt = _uplinks(r, doc.get("uplink", {}))
    c10 = _circular10(r, doc.get("uplink", {}), source, station, averaging, channels)
    totalisers = parse_totalisers(r, doc, units, {c.symbol: c.period_s for c in channels})
    # a well's permitted volume per day is a [[limit]] on its daily volume record (V_W1)
    volumes = {t.channel: t.unit for t in totalisers}
    days = {DAY_S} if any("day" in t.periods for t in totalisers) else set()
    limits = parse_limits(r, doc, {**units, **volumes},
                          {*averaging.windows, *(ru.width for ru in averaging.rollups),
                           *(ro.rolling.width_s for ro in averaging.rolling), *days})
    sampler = parse_sampler(r, doc, {b.name for b in poll.buses},
                            {lim.channel for lim in limits})
    web = parse_web(r, doc)
    if r.problems:
        raise ConfigError(_by_name(r.problems, doc))
    return StationConfig(source, station, agent, poll, channels, averaging, normalise, mqtt,
                         c10, doc, limits=limits, sampler=sampler, totalisers=totalisers,
                         web=web)


_PLACE = re.compile(r"(bus|device)\[(\d+)\](?:\.(.*))?", re.DOTALL)


def _by_name(problems: list[Problem], doc: Mapping[str, Any]) -> list[Problem]:
    """``problems`` with each bus and device named as an installer knows it.

    ``device[2].unit`` makes an installer count tables in the file; ``bus 'rs485-1' device
    'ph1': unit`` says which analyser on which line. Parsing keys problems by index (a name
    may be the very thing that is wrong), so the names are put in here, once, for every
    section's problems alike. The index stays only where the name itself is missing, empty,
    not a string or taken by an earlier table: that name says nothing, or names another one.
    A device's bus is named when it names a [[bus]] that has a name of its own.
    """
    names: dict[str, str] = {}
    first: dict[str, set[str]] = {"bus": set(), "device": set()}
    for kind in ("bus", "device"):
        tables = doc.get(kind, [])
        for i, t in enumerate(tables if isinstance(tables, list) else []):
            name = t.get("name") if isinstance(t, Mapping) else None
            if not isinstance(name, str) or not name or name in first[kind]:
                continue
            first[kind].add(name)
            label = f"{kind} {_shown(name)}"
            bus = t.get("bus")
            if kind == "device" and isinstance(bus, str) and bus in first["bus"]:
                label = f"bus {_shown(bus)} {label}"
            names[f"{kind}[{i}]"] = label
    out = []
    for p in problems:
        m = _PLACE.fullmatch(p.key)
        named = names.get(f"{m[1]}[{m[2]}]") if m else None
        if m is None or named is None:
            out.append(p)
        else:
            out.append(replace(p, key=f"{named}: {m[3]}" if m[3] else named))
    return out


def _station(r: _Reader, doc: Mapping[str, Any], required: bool) -> StationInfo:
    if "station" not in doc:
        if required:
            r.fail("station", _MISSING, "a [station] table with at least id")
        return StationInfo(id="")
    t = r.table(doc["station"], "station", {"id", "province", "facility", "name", "timezone"})
    # The rule `quantrac provision` applies: an id it would refuse can never be enrolled, so
    # `config check` must not call it ok.
    sid = r.get(t, "id", "station", "str", check=is_station_id,
                expected=f"a station id: {STATION_ID_RULE}") or ""
    zone = r.get(t, "timezone", "station", "str", "Asia/Ho_Chi_Minh")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        r.fail("station.timezone", zone, "an IANA time zone such as 'Asia/Ho_Chi_Minh'")
        zone = "Asia/Ho_Chi_Minh"
    return StationInfo(
        id=sid,
        province=r.get(t, "province", "station", "str", ""),
        facility=r.get(t, "facility", "station", "str", ""),
        name=r.get(t, "name", "station", "str", ""),
        timezone=zone,
    )


def _agent(r: _Reader, value: Any, source: Path) -> AgentSettings:
    t = r.table(value, "agent", {"state_dir", "control_socket", "record_retention_days",
                                 "sample_retention_days", "sample_flush_s",
                                 "clock_jump_tolerance_s", "backfill_horizon_s"})
    base = source.resolve().parent

    def positive(v: float) -> bool:
        return v > 0

    state_dir = base / r.get(t, "state_dir", "agent", "str", "/var/lib/quantrac")
    sock = r.get(t, "control_socket", "agent", "str", "")
    return AgentSettings(
        state_dir=state_dir,
        control_socket=base / sock if sock else state_dir / "control.sock",
        record_retention_days=r.get(t, "record_retention_days", "agent", "number", 60.0,
                                    check=lambda v: v >= 60,
                                    expected="at least 60 days (the legal minimum)"),
        sample_retention_days=r.get(t, "sample_retention_days", "agent", "number", 7.0,
                                    check=positive, expected="a positive number of days"),
        sample_flush_s=r.get(t, "sample_flush_s", "agent", "number", 5.0, check=positive,
                             expected="a positive number of seconds"),
        clock_jump_tolerance_s=r.get(t, "clock_jump_tolerance_s", "agent", "number", 2.0,
                                     check=positive, expected="a positive number of seconds"),
        backfill_horizon_s=r.get(t, "backfill_horizon_s", "agent", "number", 900.0,
                                 check=lambda v: 0 <= v <= 86400,
                                 expected="seconds in 0..86400"),
    )


def _poll(r: _Reader, doc: Mapping[str, Any], source: Path,
          every_channel: bool = False) -> tuple[PollConfig, list[Device]]:
    """The poll settings, and the devices with a problem (their channels still count).

    A device without ``channels`` polls its profile's Circular 10 channels, or with
    ``every_channel`` (diag) every channel of the profile."""
    p = r.table(doc.get("poll", {}), "poll", {"timeout", "retries", "backoff_max"})
    policy = PollPolicy(
        timeout=r.get(p, "timeout", "poll", "number", 1.0, check=lambda v: 0 < v <= 60,
                      expected="seconds in (0, 60]"),
        retries=r.get(p, "retries", "poll", "int", 1, check=lambda v: 0 <= v <= 10,
                      expected="an integer in 0..10"),
        backoff_max=r.get(p, "backoff_max", "poll", "number", 60.0, check=lambda v: v > 0,
                          expected="a positive number of seconds"),
    )
    buses: dict[str, BusConfig] = {}
    # every bus name given, in order, faulty buses too: a device on a faulty bus is not
    # blamed again for naming it
    named: dict[str, None] = {}
    for i, b in enumerate(r.tables(doc, "bus", "bus")):
        where = f"bus[{i}]"
        b = r.table(b, where, {"name", "port", "baud", "parity", "stopbits", "turnaround",
                               "host", "tcp_port", "transport"})
        # A bus without a usable name is still checked key by key (its other mistakes are
        # as real, and an installer wants them in the same pass); it is only not registered.
        name = r.get(b, "name", where, "str", check=bool,
                     expected="a bus name (a string, not empty; devices name their bus with it)")
        if name is not None and name in named:
            r.fail(f"{where}.name", name, "a bus name not used before")
            name = None  # the first bus of that name is the one its devices get
        elif name is not None:
            named[name] = None
        turnaround = r.get(b, "turnaround", where, "number", None, check=lambda v: 0 <= v < 1,
                           expected="seconds in [0, 1)")
        if ("port" in b) == ("host" in b):
            r.fail(where, {k: b[k] for k in ("port", "host") if k in b},
                   "either port (serial) or host (TCP), not both")
            continue
        if "transport" in b and "port" in b:
            r.fail(f"{where}.transport", b["transport"],
                   "no transport on a serial bus (port): transport says what a TCP bus "
                   "(host) speaks")
            continue
        if "port" in b:
            port = r.get(b, "port", where, "str")
            baud = r.get(b, "baud", where, "int", 9600,
                         check=lambda v: v in (1200, 2400, 4800, 9600, 19200, 38400, 57600,
                                               115200),
                         expected="a standard baud rate (1200..115200)")
            parity = r.get(b, "parity", where, "str", "N", check=lambda v: v in ("N", "E", "O"),
                           expected="'N', 'E' or 'O'")
            stopbits = r.get(b, "stopbits", where, "int", 1, check=lambda v: v in (1, 2),
                             expected="1 or 2")
            if name is None or None in (port, baud, parity, stopbits):
                continue
            buses[name] = BusConfig(name, serial=SerialSettings(port, baud, parity, stopbits),
                                    turnaround=turnaround)
        else:
            host = r.get(b, "host", where, "str")
            tcp_port = r.get(b, "tcp_port", where, "int", 502, check=lambda v: 1 <= v <= 65535,
                             expected="a TCP port in 1..65535")
            transport = r.get(b, "transport", where, "str", "tcp",
                              check=lambda v: v in ("tcp", "rtu-over-tcp"),
                              expected="'tcp' (Modbus TCP) or 'rtu-over-tcp' (a serial device "
                                       "server passing raw RTU frames)")
            if None not in (name, host, tcp_port, transport):
                buses[name] = BusConfig(name, host=host, tcp_port=tcp_port,
                                        turnaround=turnaround, transport=transport)
    devices: list[tuple[str, Device]] = []
    stranded: list[Device] = []
    names: set[str] = set()
    for i, d in enumerate(r.tables(doc, "device", "device")):
        where = f"device[{i}]"
        d = r.table(d, where, {"name", "bus", "profile", "unit", "interval", "channels"})
        name = r.get(d, "name", where, "str", check=bool,
                     expected="a device name (a string, not empty)")
        if name is not None and name in names:
            r.fail(f"{where}.name", name, "a device name not used before")
        names.add(name)
        bus = r.get(d, "bus", where, "str")
        if bus is not None and bus not in named:
            r.fail(f"{where}.bus", bus, f"the name of a [[bus]] (known: "
                                        f"{', '.join(map(escape_controls, named)) or 'none'})")
        ref = r.get(d, "profile", where, "str")
        profile: Profile | None = None
        if ref is not None:
            try:
                profile = resolve_profile(ref, source)
            except ProfileError as exc:
                r.fail(f"{where}.profile", ref, f"a built-in profile or a profile file ({exc})")
            except (OSError, ValueError) as exc:
                r.fail(f"{where}.profile", ref, f"a built-in profile or a profile file ({exc})")
        unit = r.get(d, "unit", where, "int", check=lambda v: 1 <= v <= 247,
                     expected="a Modbus unit id in 1..247")
        interval = r.get(d, "interval", where, "number", 10.0, check=lambda v: 0.1 <= v <= 3600,
                         expected="seconds in 0.1..3600")
        chosen = _chosen_channels(r, d.get("channels"), f"{where}.channels", profile,
                                  every_channel)
        if name is None or profile is None or chosen is None:
            continue
        device = Device(name, profile, unit or 1, tuple(chosen), interval or 10.0)
        if None in (bus, unit, interval) or bus not in buses:
            stranded.append(device)  # its channels still count, so no cascade of problems
        else:
            devices.append((bus, device))
    return PollConfig(policy, tuple(buses.values()), tuple(devices)), stranded


def _chosen_channels(r: _Reader, value: Any, path: str, profile: Profile | None,
                     every_channel: bool = False) -> list[str] | None:
    """The profile channel names a device's ``channels`` selects (None after a problem)."""
    if value is None:
        if profile is None:
            return None
        return [n for n in profile.channel_names if every_channel or n in CIRCULAR10_SYMBOLS]
    if isinstance(value, list):
        names = value
    elif isinstance(value, Mapping):
        names = list(value)
    else:
        r.fail(path, value, "an array of channel names or a table of channels")
        return None
    ok = True
    for n in names:
        if not isinstance(n, str):
            r.fail(path, n, "channel names (strings)")
            ok = False
        elif profile is not None and n not in profile.channel_names:
            r.fail(f"{path}", n, f"a channel of profile {profile.name!r} "
                                 f"({', '.join(profile.channel_names)})")
            ok = False
    if not names:
        r.fail(path, value, "at least one channel")
        ok = False
    return names if ok and profile is not None else None


def _channels(r: _Reader, doc: Mapping[str, Any],
              devices: list[Device]) -> tuple[ChannelMap, ...]:
    """Each polled channel's Circular 10 symbol and unit; a symbol is reported by one device."""
    out: list[ChannelMap] = []
    taken: dict[str, str] = {}
    vectors: dict[str, tuple[str, str]] = {}  # direction symbol -> (key, vector speed symbol)
    # only named devices reach here; a name of the wrong type (``name = ["flow"]``) was already
    # reported by _poll, and cannot be a dict key
    raw_devices = {d["name"]: (i, d) for i, d in enumerate(doc.get("device", []))
                   if isinstance(d, Mapping) and isinstance(d.get("name"), str)}
    for device in sorted(devices, key=lambda d: raw_devices[d.name][0]):
        i, raw = raw_devices[device.name]
        spec = raw.get("channels")
        mine: list[ChannelMap] = []
        speeds: dict[str, tuple[str, str]] = {}  # symbol -> (key, speed symbol)
        for ch in device.channel_names:
            where = f"device[{i}].channels.{ch}"
            symbol, unit = ch, device.profile.channel(ch).unit
            average: str | None = None
            if isinstance(spec, Mapping):
                t = r.table(spec[ch], where, {"symbol", "unit", "average", "speed",
                                              "vector_speed"})
                symbol = r.get(t, "symbol", where, "str", ch)
                unit = r.get(t, "unit", where, "str", unit)
                average = r.get(t, "average", where, "str", None, check=lambda v: v in AVERAGES,
                                expected=" or ".join(map(repr, AVERAGES)))
                speed = r.get(t, "speed", where, "str", None)
                key = f"{where}.symbol" if "symbol" in t else where
                unit_key = f"{where}.unit" if "unit" in t else ""
                if isinstance(symbol, str) and isinstance(speed, str):
                    speeds[symbol] = (f"{where}.speed", speed)
                vector = r.get(t, "vector_speed", where, "str", None)
                if isinstance(symbol, str) and isinstance(vector, str):
                    vectors[symbol] = (f"{where}.vector_speed", vector)
            else:
                key = f"device[{i}].channels"
                unit_key = ""
            if isinstance(symbol, str) and symbol.partition("_")[0] == "WD":
                if average == "mean":
                    r.fail(f"{where}.average", average, "'direction': an arithmetic mean of "
                           "wind directions is wrong across north (350 and 10 deg give 180)")
                average = "direction"
            why = unit_problem(unit) if isinstance(unit, str) else None
            if why is not None:
                if unit_key:
                    r.fail(unit_key, unit, f"a unit label of {why}")
                else:  # the profile's own label: name the profile, and how to override it
                    r.fail(f"device[{i}].profile", device.profile.name,
                           f"a profile whose channel {ch!r} has a unit label of {why}; "
                           f"its unit is {_shown(unit)}; set [device.channels.{ch}] unit")
                continue
            if not is_symbol(symbol):
                r.fail(key, symbol, "a Circular 10 symbol (" + ", ".join(CIRCULAR10_SYMBOLS) +
                       "), or one with a _tag for a second point (Temp_inlet); map the "
                       "channel with [device.channels.NAME] symbol = ...")
                continue
            if symbol in taken:
                r.fail(key, symbol, f"a symbol not already reported by device {taken[symbol]!r}")
                continue
            taken[symbol] = device.name
            mine.append(ChannelMap(device.name, ch, symbol, unit, device.interval,
                                   average or "mean"))
        out += _paired_speeds(r, mine, speeds)
    return tuple(_vector_speeds(r, out, vectors, taken))


AVERAGES = ("mean", "direction")
"""How a channel's samples become a window's value: arithmetic, or a wind vane's vector mean."""


def _vector_speeds(r: _Reader, channels: list[ChannelMap],
                   vectors: Mapping[str, tuple[str, str]],
                   taken: dict[str, str]) -> list[ChannelMap]:
    """``vector_speed``: the symbol a speed-weighted direction's vector mean speed goes under
    (the scalar mean is the speed channel's own record). A symbol of its own, like any other
    (``WS_vector``: tagged, so the centre files it under ``WS``), reported by nobody else."""
    out: list[ChannelMap] = []
    for c in channels:
        if c.symbol in vectors:
            key, name = vectors[c.symbol]
            if c.speed is None:
                r.fail(key, name, "no vector_speed unless speed names the wind speed symbol")
            elif not is_symbol(name):
                r.fail(key, name, "a Circular 10 symbol with a tag, such as 'WS_vector'")
            elif name in taken:
                r.fail(key, name, f"a symbol not already reported by device {taken[name]!r}")
            else:
                taken[name] = c.device
                c = replace(c, vector_speed=name)
        out.append(c)
    return out


def _paired_speeds(r: _Reader, mine: list[ChannelMap],
                   speeds: Mapping[str, tuple[str, str]]) -> list[ChannelMap]:
    """Give each speed-weighted direction its speed symbol: one of the same device, because
    a direction sample is weighed by the speed polled with it (the same time stamp)."""
    by_symbol = {c.symbol: c for c in mine}
    out: list[ChannelMap] = []
    for c in mine:
        if c.symbol not in speeds:
            out.append(c)
            continue
        key, speed = speeds[c.symbol]
        other = by_symbol.get(speed)
        if c.average != "direction":
            r.fail(key, speed, "no speed unless average = 'direction'")
        elif other is None or other is c or other.average != "mean":
            r.fail(key, speed, f"a wind speed symbol reported by the same device {c.device!r} "
                   f"({', '.join(o.symbol for o in mine if o is not c) or 'none'})")
        else:
            c = replace(c, speed=speed)
        out.append(c)
    return out


def _rule(r: _Reader, t: Mapping[str, Any], path: str, default: ValidityRule) -> ValidityRule:
    name = r.get(t, "rule", path, "str", default.name, check=lambda v: v in RULES,
                 expected=f"one of {', '.join(RULES)}")
    rule = RULES.get(name, default)
    if "min_fraction" in t:
        frac = r.get(t, "min_fraction", path, "number", None, check=lambda v: 0 < v <= 1,
                     expected="a fraction in (0, 1]")
        if frac is not None and rule.parts == 1:
            rule = ValidityRule(f"coverage_{round(frac * 100)}", min_fraction=frac)
    return rule


def _width(r: _Reader, value: Any, key: str) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 \
            or DAY_S % value != 0:
        r.fail(key, value, "a window in whole seconds that divides a day (60, 300, 3600, ...)")
        return None
    return value


def _averaging(r: _Reader, value: Any, channels: tuple[ChannelMap, ...]) -> AveragingSettings:
    t = r.table(value, "averaging", {"windows", "rule", "min_fraction", "grace_s", "rollup",
                                     "rolling"})
    rule = _rule(r, t, "averaging", RULES["coverage_75"])
    raw = r.get(t, "windows", "averaging", "list", [300])
    widths = [w for i, v in enumerate(raw or [])
              if (w := _width(r, v, f"averaging.windows[{i}]")) is not None]
    if raw == []:
        r.fail("averaging.windows", raw, "at least one window")
    for i, w in enumerate(widths):
        if w % rule.parts:
            r.fail(f"averaging.windows[{i}]", w,
                   f"a window rule {rule.name!r} can cut into {rule.parts} whole-second parts")
        slow = [c for c in channels if c.period_s > w]
        if slow:
            r.fail(f"averaging.windows[{i}]", w,
                   f"a window at least as long as the poll interval of {slow[0].device!r} "
                   f"({slow[0].period_s:g} s)")
    grace = r.get(t, "grace_s", "averaging", "number", 30.0, check=lambda v: v >= 0,
                  expected="seconds >= 0")
    rollups: list[Rollup] = []
    known = set(widths)
    for i, ru in enumerate(r.tables(t, "rollup", "averaging.rollup")):
        where = f"averaging.rollup[{i}]"
        ru = r.table(ru, where, {"width", "from", "rule", "min_fraction"})
        width = _width(r, ru.get("width", _MISSING), f"{where}.width")
        child = r.get(ru, "from", where, "int", check=lambda v: v in known,
                      expected=f"the width of a window or an earlier roll-up "
                               f"({', '.join(map(str, sorted(known))) or 'none'})")
        rrule = _rule(r, ru, where, RULES["coverage_75"])
        if width is None or child is None:
            continue
        if width <= child or width % child:
            r.fail(f"{where}.width", width, f"a multiple of from = {child}")
            continue
        if width % rrule.parts:
            r.fail(f"{where}.width", width,
                   f"a width rule {rrule.name!r} can cut into {rrule.parts} parts")
            continue
        known.add(width)
        rollups.append(Rollup(width, child, rrule))
    rolling = _rolling(r, t, known, channels)
    return AveragingSettings(tuple(widths), rule, grace if grace is not None else 30.0,
                             tuple(rollups), rolling)


def _rolling(r: _Reader, t: Mapping[str, Any], known: set[int],
             channels: tuple[ChannelMap, ...]) -> tuple[RollingSettings, ...]:
    """``[[averaging.rolling]]``: rolling averages of child records (QCVN 05:2023's 8-hour CO
    and O3: 8 hourly means, valid with 6). Its records overlap, one per child window, and
    the store, the centre and the history tell a window by channel, width and start, so a
    rolling width must differ from every tiled window's (an 8-hour rolling average and an
    8-hour block average of one channel would be indistinguishable)."""
    out: list[RollingSettings] = []
    symbols = {c.symbol: c for c in channels}
    widths = set(known)
    for i, ro in enumerate(r.tables(t, "rolling", "averaging.rolling")):
        where = f"averaging.rolling[{i}]"
        ro = r.table(ro, where, {"channels", "from", "span", "min_valid"})
        chans = r.get(ro, "channels", where, "list") or []
        good = True
        for ch in chans:
            if not isinstance(ch, str) or ch not in symbols:
                r.fail(f"{where}.channels", ch, "a reported channel symbol")
                good = False
            elif symbols[ch].average != "mean":
                r.fail(f"{where}.channels", ch, "a channel averaged as a mean (a rolling mean "
                       "of wind directions is not a direction)")
                good = False
        if chans == []:
            r.fail(f"{where}.channels", chans, "at least one channel")
        child = r.get(ro, "from", where, "int", 3600, check=lambda v: v in known,
                      expected=f"the width of a window or roll-up "
                               f"({', '.join(map(str, sorted(known))) or 'none'})")
        span = r.get(ro, "span", where, "int", 8, check=lambda v: v >= 2,
                     expected="a number of child windows >= 2")
        most = span if isinstance(span, int) else 8
        min_valid = r.get(ro, "min_valid", where, "int", 6,
                          check=lambda v: 1 <= v <= most,  # noqa: B023 (called right here)
                          expected=f"a number of valid child windows in 1..span ({span})")
        if not good or chans == [] or None in (child, span, min_valid):
            continue
        try:
            rolling = Rolling(f"{span * child // 3600}h" if span * child % 3600 == 0
                              else f"{span * child}s", span, min_valid, child)
        except InputError as exc:
            r.fail(where, ro, str(exc))
            continue
        if rolling.width_s in widths:
            r.fail(f"{where}.span", span, f"a span whose width (span x from = "
                   f"{rolling.width_s} s) is not already a window, roll-up or rolling "
                   f"average's ({', '.join(map(str, sorted(widths)))})")
            continue
        widths.add(rolling.width_s)
        out.append(RollingSettings(rolling, tuple(chans)))
    return tuple(out)


def _normalise(r: _Reader, value: Any, where: str, symbols: set[str],
               units: Mapping[str, str]) -> NormaliseSettings | None:
    t = r.table(value, where, {"channels", "o2_channel", "o2_ref", "h2o_fraction", "to_mg_nm3",
                               "temp_c", "pressure_mmhg", "standard", "source", "h2o_channel",
                               "o2_max", "o2_basis"})
    n_before = len(r.problems)
    chans = r.get(t, "channels", where, "list") or []
    for ch in chans:
        if not isinstance(ch, str):
            r.fail(f"{where}.channels", ch, "channel symbols (strings)")
    chans = [ch for ch in chans if isinstance(ch, str)]
    for ch in chans:
        if ch not in symbols:
            r.fail(f"{where}.channels", ch, "a reported channel symbol "
                                            f"({', '.join(sorted(symbols)) or 'none'})")
        elif units.get(ch) not in ("ppm", "mg/Nm3"):
            r.fail(f"{where}.channels", ch,
                   f"a gas channel in ppm or mg/Nm3 (its unit is {units.get(ch)!r})")
    std, source = _standard(r, t, where)
    if std is not None:
        o2_ref = std.categories[source].o2_ref if source in std.categories else None
    else:
        o2_ref = r.get(t, "o2_ref", where, "number", None, check=lambda v: 0 <= v < 21,
                       expected="a reference O2 in [0, 21) %")
    o2_channel = r.get(t, "o2_channel", where, "str", None)
    if o2_ref is not None and o2_channel is None:
        r.fail(f"{where}.o2_channel", _MISSING, "the O2 channel's symbol when o2_ref is set"
               if std is None else f"the O2 channel's symbol: {std.name} refers source "
               f"{source!r} to {o2_ref:g} % O2")
    if o2_channel is not None and o2_channel not in symbols:
        r.fail(f"{where}.o2_channel", o2_channel, "a reported channel symbol")
    h2o = r.get(t, "h2o_fraction", where, "number", None, check=lambda v: 0 <= v < 1,
                expected="a water fraction in [0, 1)")
    h2o_channel = r.get(t, "h2o_channel", where, "str", None)
    if h2o_channel is not None:
        if h2o is not None:
            r.fail(f"{where}.h2o_channel", h2o_channel,
                   "either h2o_channel (measured) or h2o_fraction (fixed), not both")
        elif h2o_channel not in symbols:
            r.fail(f"{where}.h2o_channel", h2o_channel, "a reported channel symbol "
                                                       f"({', '.join(sorted(symbols))})")
        elif units.get(h2o_channel) != "%":
            r.fail(f"{where}.h2o_channel", h2o_channel,
                   f"a moisture channel in % by volume (its unit is {units.get(h2o_channel)!r})")
    o2_max = r.get(t, "o2_max", where, "number", 20.0, check=lambda v: 0 < v < 21,
                   expected="the highest measured O2 still referred, in (0, 21) %")
    if o2_ref is not None and o2_max <= o2_ref:
        r.fail(f"{where}.o2_max", o2_max, f"more than the reference O2 ({o2_ref:g} %)")
    o2_wet = r.choice(t, "o2_basis", where, ("dry", "wet"), "dry") == "wet"
    if o2_wet and h2o is None and h2o_channel is None:
        r.fail(f"{where}.o2_basis", "wet", "a water content to make the O2 dry with "
                                           "(h2o_channel or h2o_fraction)")
    to_mg = r.get(t, "to_mg_nm3", where, "bool", False)
    if to_mg:
        for ch in chans:
            if units.get(ch) == "ppm" and ch not in MOLAR_MASS_G_PER_MOL:
                r.fail(f"{where}.channels", ch,
                       f"a gas with a molar mass on file ({', '.join(MOLAR_MASS_G_PER_MOL)})")
    temp_c = r.get(t, "temp_c", where, "number", 25.0, check=lambda v: v > -273.15,
                   expected="a temperature in degC")
    pressure = r.get(t, "pressure_mmhg", where, "number", 760.0, check=lambda v: v > 0,
                     expected="a positive pressure in mmHg")
    if len(r.problems) > n_before:
        return None
    how = Normalisation(o2_ref=o2_ref, h2o_fraction=h2o, to_mg_nm3=to_mg, temp_c=temp_c,
                        pressure_mmhg=pressure, o2_max=o2_max,
                        h2o_measured=h2o_channel is not None, o2_wet=o2_wet)
    if std is not None:  # the standard's conditions, its molar volume as printed
        how = replace(how, temp_c=std.temp_c, pressure_mmhg=std.pressure_mmhg,
                      vm_l=std.molar_volume_l)
    return NormaliseSettings(tuple(chans), o2_channel if o2_ref is not None else None, how,
                             h2o_channel, std.name if std else None, source)


def _normalise_all(r: _Reader, doc: Mapping[str, Any], symbols: set[str],
                   units: Mapping[str, str]) -> tuple[NormaliseSettings, ...]:
    """Every [[normalise]] table; a channel in two is refused, since only the first would
    convert it and the second's standard would be silently ignored."""
    out: list[NormaliseSettings] = []
    first: dict[str, str] = {}
    for i, t in enumerate(r.tables(doc, "normalise", "normalise")):
        where = f"normalise[{i}]"
        n = _normalise(r, t, where, symbols, units)
        for ch in n.channels if n is not None else ():
            if ch in first:
                r.fail(f"{where}.channels", ch, f"a channel no other [[normalise]] converts "
                                                f"({first[ch]} does)")
            first.setdefault(ch, where)
        if n is not None:
            out.append(n)
    return tuple(out)


def _standard(r: _Reader, t: Mapping[str, Any], where: str) -> tuple[Standard | None, str]:
    """The ``standard`` and ``source`` of a [[normalise]] table, each checked against the
    standards on file (edge_agent/config/standards/*.toml); the standard fixes the reference
    O2 and conditions, so a table giving them too is refused (two truths would diverge)."""
    name = r.get(t, "standard", where, "str", None)
    source = r.get(t, "source", where, "str", None)
    if name is None:
        if source is not None:
            r.fail(f"{where}.standard", _MISSING, "the standard source = "
                   f"{source!r} belongs to ({', '.join(standards())})")
        return None, ""
    known = standards()
    std = known.get(name)
    if std is None:
        r.fail(f"{where}.standard", name, f"a standard on file ({', '.join(known)})")
        return None, ""
    cats = ", ".join(std.categories)
    if source is None:
        r.fail(f"{where}.source", _MISSING, f"the source category under {name} ({cats})")
    elif source not in std.categories:
        r.fail(f"{where}.source", source, f"a source category of {name} ({cats})")
    for key in ("o2_ref", "temp_c", "pressure_mmhg"):
        if key in t:
            r.fail(f"{where}.{key}", t[key],
                   f"no {key} with standard = {name!r}: the standard sets it")
    return std, source or ""


def _uplinks(r: _Reader, value: Any) -> MqttSettings | None:
    t = r.table(value, "uplink", {"mqtt", "circular10"})
    if "mqtt" not in t:
        return None
    m = r.table(t["mqtt"], "uplink.mqtt", {"window", "ack_timeout_s", "max_packets_per_s",
                                           "backoff_cap_s"})
    return MqttSettings(
        window=r.get(m, "window", "uplink.mqtt", "int", 8, check=lambda v: 1 <= v <= 100,
                     expected="packets in flight, 1..100"),
        ack_timeout_s=r.get(m, "ack_timeout_s", "uplink.mqtt", "number", 60.0,
                            check=lambda v: v > 0, expected="a positive number of seconds"),
        max_packets_per_s=r.get(m, "max_packets_per_s", "uplink.mqtt", "number", 0.0,
                                check=lambda v: v >= 0, expected="packets per second >= 0"),
        backoff_cap_s=r.get(m, "backoff_cap_s", "uplink.mqtt", "number", 60.0,
                            check=lambda v: v > 0, expected="a positive number of seconds"),
    )


# --------------------------------------------------------------------------- uplink.circular10



_C10 = "uplink.circular10"
_RX = "uplink.circular10.receiver"
def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


def _password(r: _Reader, t: Mapping[str, Any], base: Path) -> str:
    if "password" in t and "password_file" in t:
        r.fail(f"{_C10}.password", "<hidden>", "either password or password_file, not both")
    elif "password" in t:
        if not isinstance(t["password"], str):
            r.fail(f"{_C10}.password", "<hidden>", "a string")  # never echo a secret
        else:
            return str(t["password"])
    elif "password_file" in t:
        name = r.get(t, "password_file", _C10, "str")
        if name is not None:
            try:
                first: str = (base / name).read_text(encoding="utf-8").splitlines()[0]
                return first
            except (OSError, UnicodeDecodeError, IndexError) as exc:
                why = getattr(exc, "strerror", None) or "empty or not UTF-8 text"
                r.fail(f"{_C10}.password_file", name,
                       f"a readable file whose first line is the password ({why})")
    return ""


def _file(r: _Reader, t: Mapping[str, Any], key: str, base: Path, what: str) -> Path | None:
    name: str | None = r.get(t, key, _C10, "str", None)
    if name is None:
        return None
    if not (base / name).is_file():
        r.fail(f"{_C10}.{key}", name, what)
    return base / name


def _symbol_table(r: _Reader, t: Mapping[str, Any], key: str, units: Mapping[str, str],
                  check: Any, expected: Any) -> tuple[tuple[str, str], ...]:
    """``receiver.aliases`` / ``receiver.units``: configured symbol -> ASCII text."""
    if key not in t:
        return ()
    table = r.table(t[key], f"{_RX}.{key}", units.keys())
    out: list[tuple[str, str]] = []
    for symbol, value in table.items():
        if symbol not in units:
            continue  # reported by r.table: not a configured symbol
        if not isinstance(value, str) or not check(symbol, value):
            r.fail(f"{_RX}.{key}.{symbol}", value, expected(symbol))
        else:
            out.append((symbol, value))
    return tuple(out)


def _transport(r: _Reader, t: Mapping[str, Any], rx: Mapping[str, Any]) -> str:
    """``receiver.transport``; the old ``tls = true/false`` still means ftps/ftp."""
    tls = r.get(t, "tls", _C10, "bool", None)
    if tls is not None and "transport" in rx:
        r.fail(f"{_C10}.tls", tls, f"no tls key next to {_RX}.transport (tls is the old "
               "spelling of transport = 'ftps' / 'ftp'; keep transport)")
    default = "ftps" if tls in (None, True) else "ftp"
    return str(r.get(rx, "transport", _RX, "str", default, check=lambda v: v in TRANSPORTS,
                     expected=f"one of {', '.join(TRANSPORTS)}"))


def _receiver(r: _Reader, t: Mapping[str, Any], station: StationInfo,
              units: Mapping[str, str]) -> Circular10Receiver:
    rx = r.table(t.get("receiver", {}), _RX, {
        "file_prefix", "remote_dir", "stamp", "fields", "line_end", "missing_value",
        "omit_missing", "invalid", "empty_unit", "aliases", "units", "transport", "passive",
        "upload", "files_per_minute"})
    old = f"{station.province}_{station.facility}_{station.name}_"
    prefix = r.get(rx, "file_prefix", _RX, "str", check=lambda v: bool(FILE_PREFIX.fullmatch(v)),
                   expected="the file-name prefix exactly as the province issued it (e.g. "
                            "'HN_PHCH_NUOPCH_'): 1 to 64 ASCII letters, digits, '_', '-' or '.'"
                            f" (this station's files were named {old!r}+time before: use it "
                            "only if the province issued that)")
    fields = r.get(rx, "fields", _RX, "str", "tab", check=lambda v: v in ("tab", "whitespace"),
                   expected="tab or whitespace (how the receiver splits a line)")
    blank_ok = fields != "whitespace"
    placeholder_rule = ("" if blank_ok else "; not empty nor with a blank: the receiver "
                        "splits on whitespace (fields = 'whitespace')")
    missing = r.get(rx, "missing_value", _RX, "str", "",
                    check=lambda v: _not_a_number(v) and (v == "" or v.isascii())
                    and v.isprintable() and (blank_ok or (v != "" and " " not in v)),
                    expected="a placeholder that is not a number, e.g. '' or '---'"
                             + placeholder_rule)
    omit_missing = r.get(rx, "omit_missing", _RX, "bool", False)
    if not blank_ok and missing == "" and not omit_missing and "missing_value" not in rx:
        r.fail(f"{_RX}.missing_value", _MISSING, "a placeholder such as '---', or omit_missing "
               "= true: the receiver splits on whitespace, an empty value shifts the columns")
    empty_unit = r.get(rx, "empty_unit", _RX, "str", "",
                       check=lambda v: (v == "" and blank_ok) or is_ascii_unit(v),
                       expected="the unit field of a unitless parameter (pH): '' or ASCII "
                                "without blanks, e.g. '-'" + placeholder_rule)
    if not blank_ok and "empty_unit" not in rx and any(u == "" for u in units.values()):
        r.fail(f"{_RX}.empty_unit", _MISSING, "a placeholder such as '-': the receiver splits on "
               "whitespace and a channel has an empty unit "
               f"({', '.join(s for s, u in units.items() if u == '')})")
    aliases = _symbol_table(r, rx, "aliases", units, lambda _s, v: is_ascii_unit(v) and v != "",
                            lambda s: f"the name the province's files give {s}: 1 to 32 "
                                      "printable ASCII characters without blanks")
    transmit = _symbol_table(
        r, rx, "units", units,
        lambda s, v: is_ascii_unit(v) and conversion(units[s], v) is not None,
        lambda s: f"the ASCII unit the file carries for {s}, shown in {units[s]!r}: one of "
                  f"{', '.join(repr(u) for u in known_targets(units[s]))}")
    overridden = dict(transmit)
    for symbol, unit in units.items():
        if unit and symbol not in overridden and not is_ascii_unit(ascii_unit(unit)):
            r.fail(f"{_RX}.units.{symbol}", _MISSING, f"an ASCII unit for {symbol}: its display "
                   f"unit {unit!r} has no ASCII form (Circular 10 files carry ASCII units)")
    return Circular10Receiver(
        file_prefix=prefix or "",
        remote_dir=r.get(rx, "remote_dir", _RX, "str", "/{yyyy}/{MM}/{dd}",
                         check=lambda v: remote_dir_ok(v),
                         expected="a folder template under directory made of "
                                  + ", ".join("{" + f + "}" for f in REMOTE_DIR_FIELDS)
                                  + " and '/', e.g. '/{yyyy}/{MM}/{dd}', '/{yyyyMMdd}' or ''"),
        stamp=r.get(rx, "stamp", _RX, "str", "end", check=lambda v: v in ("end", "start"),
                    expected="end (the time the mean exists, the default) or start"),
        fields=fields,
        line_end={"crlf": "\r\n", "lf": "\n"}[
            r.get(rx, "line_end", _RX, "str", "crlf", check=lambda v: v in ("crlf", "lf"),
                  expected="crlf or lf") or "crlf"],
        missing_value=missing if missing is not None else "",
        omit_missing=bool(omit_missing),
        invalid=r.get(rx, "invalid", _RX, "str", "report",
                      check=lambda v: v in ("report", "omit"),
                      expected="report (the mean, with the instrument's status) or omit"),
        empty_unit=empty_unit if empty_unit is not None else "",
        aliases=aliases,
        units=transmit,
        transport=_transport(r, t, rx),
        passive=r.get(rx, "passive", _RX, "bool", True),
        upload=r.get(rx, "upload", _RX, "str", "rename",
                     check=lambda v: v in ("rename", "direct"),
                     expected="rename (temp name, then rename; falls back to direct by "
                              "itself) or direct"),
        files_per_minute=r.get(rx, "files_per_minute", _RX, "number", 0.0,
                               check=lambda v: v >= 0,
                               expected="files per minute >= 0 (0: as fast as the link "
                                        "allows)"),
    )


def _circular10(r: _Reader, value: Any, source: Path, station: StationInfo,
                averaging: AveragingSettings, channels: tuple[ChannelMap, ...]
                ) -> Circular10Settings | None:
    if not isinstance(value, Mapping) or "circular10" not in value:
        return None
    t = r.table(value["circular10"], _C10, {
        "host", "port", "user", "password", "password_file", "directory", "tls", "ca_file",
        "host_key", "known_hosts", "key_file", "interval_minutes", "allow_interval_over_5_min",
        "window", "retention_days", "timeout_s", "backoff_cap_s", "receiver"})
    base = source.resolve().parent
    receiver = _receiver(r, t, station, {c.symbol: c.unit for c in channels})
    sftp = receiver.transport == "sftp"
    host = r.get(t, "host", _C10, "str", check=lambda v: bool(v.strip()),
                 expected="the province's server host name or address")
    ca = _file(r, t, "ca_file", base, "a PEM file of the CA that signed the centre's "
               "certificate")
    known_hosts = _file(r, t, "known_hosts", base, "an OpenSSH known_hosts file with the "
                        "server's key")
    key_file = _file(r, t, "key_file", base, "a readable private key file (SFTP)")
    host_key = r.get(t, "host_key", _C10, "str", None,
                     check=lambda v: len(v.split()) >= 2
                     and v.split()[0].startswith(("ssh-", "ecdsa-")),
                     expected="the server's public key as the province's sheet gives it: "
                              "'ssh-ed25519 AAAA...' (type and base64)")
    if sftp and host_key is None and known_hosts is None and "host_key" not in t \
            and "known_hosts" not in t:
        r.fail(f"{_C10}.host_key", _MISSING, "the server's key (host_key = 'ssh-ed25519 "
               "AAAA...' from the province's sheet) or a known_hosts file: an SFTP server's "
               "key is pinned, never trusted on first use")
    for key in ("host_key", "known_hosts", "key_file"):
        if key in t and not sftp:
            r.fail(f"{_C10}.{key}", t[key], f"no {key} unless {_RX}.transport = 'sftp'")
    if "ca_file" in t and receiver.transport != "ftps":
        r.fail(f"{_C10}.ca_file", t["ca_file"], f"no ca_file unless {_RX}.transport = 'ftps'")
    window = r.get(t, "window", _C10, "int", 300,
                   check=lambda v: v in averaging.windows,
                   expected="the width of an averaging window (averaging.windows: "
                            f"{', '.join(map(str, averaging.windows))})")
    return Circular10Settings(
        host=host or "",
        receiver=receiver,
        port=r.get(t, "port", _C10, "int", 22 if sftp else 21, check=lambda v: 1 <= v <= 65535,
                   expected="a TCP port in 1..65535"),
        user=r.get(t, "user", _C10, "str", "anonymous", check=bool,
                   expected="a user name"),
        password=_password(r, t, base),
        directory=r.get(t, "directory", _C10, "str", "",
                        check=lambda v: not any(c in v for c in "\r\n\0"),
                        expected="a directory path on the server"),
        ca_file=ca,
        host_key=host_key,
        known_hosts=known_hosts,
        key_file=key_file,
        interval_minutes=r.get(t, "interval_minutes", _C10, "number", 5.0,
                               check=lambda v: 0 < v <= 60,
                               expected="minutes in (0, 60] (the circular wants 5)"),
        allow_interval_over_5_min=r.get(t, "allow_interval_over_5_min", _C10, "bool", False),
        window=window if window is not None else 300,
        retention_days=r.get(t, "retention_days", _C10, "number", 60.0,
                             check=lambda v: v >= 1, expected="at least 1 day"),
        timeout_s=r.get(t, "timeout_s", _C10, "number", 30.0, check=lambda v: 0 < v <= 600,
                        expected="seconds in (0, 600]"),
        backoff_cap_s=r.get(t, "backoff_cap_s", _C10, "number", 300.0,
                            check=lambda v: v > 0, expected="a positive number of seconds"),
    )


# --------------------------------------------------------------------------- the poll-only view


def load_poll_config(path: str | Path) -> PollConfig:
    """The [poll], [[bus]] and [[device]] of a config file (a full station config, or only
    those tables). The one loader is :func:`load_config`; this is its poll-only view, so
    ``diag watch`` reads the agent's own config the same way the agent does.
    """
    return load_config(path, station_required=False).poll


def parse_poll_config(doc: Mapping[str, Any], source: str | Path) -> PollConfig:
    return parse_config(doc, Path(source), station_required=False).poll
