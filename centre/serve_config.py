"""The ``quantrac centre serve`` / ``query`` configuration file (TOML), checked strictly.

Example::

    centre_dir = "/var/lib/quantrac-centre"   # keys and registry (`quantrac centre init`)
    store = "records.sqlite"                  # relative paths: relative to this file
    # store = "postgresql://quantrac@db.example:5432/centre"   # or a PostgreSQL database
    zone = "Asia/Ho_Chi_Minh"                 # how `query` shows times

    [broker]
    host = "mqtt.example"                     # default: the broker given at `centre init`
    port = 8883
    ca = "ca.crt"                             # CA of the broker's certificate (default: centre CA)
    cert = "receiver.crt"                     # this receiver's client certificate, CN = centre
    key = "receiver.key"
    client_id = "quantrac-centre-1"           # fixed: the broker keeps its session

    [receiver]
    group = "quantrac-centre"                 # receivers of one group split the packets
    gap_grace_s = 10
    gap_retry_s = 30
    gap_max_requests = 5
    reconnect_max_s = 30                      # longest wait between reconnect attempts
    drop_acks = 0                             # drills only: drop the first N acks
    lose_packets = 0                          # drills only: lose the first N packets

    [web]                                     # `quantrac centre web`: centre/web_config.py
    listen = "0.0.0.0:8090"

    [station."THA-AQ-0001"]                   # published without login (default: nothing)
    public = true
    public_channels = ["PM10", "PM2,5", "SO2", "NO2", "CO", "O3"]

``store``: a SQLite file (the default, ``<centre_dir>/records.sqlite``), or a PostgreSQL database
as a ``postgresql://user@host:port/dbname`` URL, for a centre with several receivers on one
store (``centre.store_backends.postgresql``). Keep its password out of this file: libpq reads
``~/.pgpass`` (or the file ``PGPASSFILE`` names) for the receiver's user; a password in the URL
works but is never shown in a message or log line.

Every error names the file, the key and the value at fault, in the one style of every config
file (:mod:`protocol.config_file`, which also does the reading and the type checks); the first
mistake raises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from centre import web_config as web_settings
from centre.receiver import ReceiverSettings
from centre.store_backends import is_dsn
from protocol.config_file import MISSING, Reader, read_toml
from protocol.config_file import ConfigError as _ConfigBase

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"


class ConfigError(_ConfigBase):
    """A configuration file that cannot be used; the message names file, key and value."""


@dataclass(frozen=True)
class ServeConfig:
    centre_dir: Path
    store: Path | str  # a SQLite file, or a ``postgresql://`` URL (``store_backends.is_dsn``)
    zone: str
    receiver: ReceiverSettings | None  # None when the [broker] table is absent (query only)
    #: [web] and [station."ID"]: the dashboard and what is public (centre/web_config.py)
    web: web_settings.WebSettings = field(default_factory=web_settings.WebSettings)


_TOP = {"centre_dir", "store", "zone", "broker", "receiver", "web", "station"}
_BROKER = {"host", "port", "ca", "cert", "key", "client_id", "keepalive"}
_RECEIVER = {  # key -> "name", "int" or "number"
    "group": "name",
    "gap_grace_s": "number",
    "gap_retry_s": "number",
    "gap_max_requests": "int",
    "gap_scan_every_s": "number",
    "reconnect_max_s": "number",
    "drop_acks": "int",
    "lose_packets": "int",
}


def _path(r: Reader, base: Path, key: str, value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise r.error(key, value, "a non-empty path string")
    p = Path(value)
    return p if p.is_absolute() else base.parent / p


def load(path: Path) -> ServeConfig:
    """Read and check the file; ConfigError on anything wrong."""
    data = read_toml(path, ConfigError)
    r = Reader(path, ConfigError, collect=False)
    r.table(data, "", _TOP)
    centre_dir = _path(r, path, "centre_dir", r.get(
        data, "centre_dir", "", "str", expected="the `quantrac centre init` directory"))
    given = data.get("store", str(centre_dir / "records.sqlite"))
    store: Path | str = given if is_dsn(given) else _path(r, path, "store", given)
    zone = r.get(data, "zone", "", "str", DEFAULT_ZONE,
                 expected="an IANA zone name such as Asia/Ho_Chi_Minh")
    tuning: dict[str, Any] = {}
    receiver = r.table(data.get("receiver", {}), "receiver", _RECEIVER)
    for key, kind in _RECEIVER.items():
        if key not in receiver:
            continue
        if kind == "name":
            r.get(receiver, key, "receiver", "str",
                  check=lambda v: bool(v) and not any(c in v for c in "/+#"),
                  expected="a name without / + #")
        else:
            r.get(receiver, key, "receiver", kind, check=lambda v: v >= 0,
                  expected=f"a non-negative {kind}")
        tuning[key] = receiver[key]  # as written: an int stays an int
    web = web_settings.read(r, path, data)
    broker = data.get("broker")
    if broker is None:
        return ServeConfig(centre_dir, store, zone, None, web)
    broker = r.table(broker, "broker", _BROKER)
    host, port = broker.get("host"), broker.get("port")
    if host is None or port is None:
        default = _default_broker(centre_dir)
        if default is None:
            raise r.error("broker.host/broker.port", MISSING,
                          "a broker (none was given at `quantrac centre init`)")
        host = default[0] if host is None else host
        port = default[1] if port is None else port
    host = r.get({"host": host}, "host", "broker", "str", check=bool,
                 expected="a host name or address")
    port = r.get({"port": port}, "port", "broker", "int", check=lambda v: 0 < v < 65536,
                 expected="a port number 1-65535")
    for key in ("cert", "key"):
        r.get(broker, key, "broker", "str",
              expected="the receiver's TLS client certificate and key, CN = centre")
    extra: dict[str, Any] = dict(tuning)
    if "client_id" in broker:
        extra["client_id"] = r.get(broker, "client_id", "broker", "str", check=bool,
                                   expected="a non-empty string")
    if "keepalive" in broker:
        extra["keepalive"] = r.get(broker, "keepalive", "broker", "int", check=lambda v: v >= 5,
                                   expected="seconds >= 5")
    settings = ReceiverSettings(
        host=host,
        port=port,
        ca_cert=_path(r, path, "broker.ca", broker.get("ca", str(centre_dir / "ca.crt"))),
        cert=_path(r, path, "broker.cert", broker["cert"]),
        tls_key=_path(r, path, "broker.key", broker["key"]),
        **extra,
    )
    return ServeConfig(centre_dir, store, zone, settings, web)


def _default_broker(centre_dir: Path) -> tuple[str, int] | None:
    try:
        info = json.loads((centre_dir / "centre.json").read_text())
    except (OSError, ValueError):
        return None
    text = info.get("broker") if isinstance(info, dict) else None
    if not isinstance(text, str):
        return None
    host, _, port = text.rpartition(":")
    return (host.strip("[]"), int(port)) if port.isdigit() and host else None
