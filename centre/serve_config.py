"""The ``quantrac centre serve`` / ``query`` configuration file (TOML), checked strictly.

Example::

    centre_dir = "/var/lib/quantrac-centre"   # keys and registry (`quantrac centre init`)
    store = "records.sqlite"                  # relative paths: relative to this file
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

Every error names the file, the key and the value at fault.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from centre.receiver import ReceiverSettings

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names file, key and value."""


@dataclass(frozen=True)
class ServeConfig:
    centre_dir: Path
    store: Path
    zone: str
    receiver: ReceiverSettings | None  # None when the [broker] table is absent (query only)


_TOP = {"centre_dir", "store", "zone", "broker", "receiver"}
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


def _fail(path: Path, key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{path}: key {key}: {value!r} {why}")


def _unknown(path: Path, table: dict[str, Any], allowed: set[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise _fail(path, prefix + key, table[key], f"is not a known key ({sorted(allowed)})")


def _path(path: Path, key: str, value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise _fail(path, key, value, "must be a non-empty path string")
    p = Path(value)
    return p if p.is_absolute() else path.parent / p


def load(path: Path) -> ServeConfig:
    """Read and check the file; ConfigError on anything wrong."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    _unknown(path, data, _TOP, "")
    if "centre_dir" not in data:
        raise ConfigError(f"{path}: key centre_dir: missing (the `quantrac centre init` dir)")
    centre_dir = _path(path, "centre_dir", data["centre_dir"])
    store = _path(path, "store", data.get("store", str(centre_dir / "records.sqlite")))
    zone = data.get("zone", DEFAULT_ZONE)
    if not isinstance(zone, str):
        raise _fail(path, "zone", zone, "must be an IANA zone name such as Asia/Ho_Chi_Minh")
    tuning: dict[str, Any] = {}
    receiver = data.get("receiver", {})
    if not isinstance(receiver, dict):
        raise _fail(path, "receiver", receiver, "must be a table")
    _unknown(path, receiver, set(_RECEIVER), "receiver.")
    for key, kind in _RECEIVER.items():
        if key not in receiver:
            continue
        value: Any = receiver[key]
        if kind == "name":
            if not isinstance(value, str) or not value or any(c in value for c in "/+#"):
                raise _fail(path, f"receiver.{key}", value, "must be a name without / + #")
        else:
            number = (int,) if kind == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, number) or value < 0:
                raise _fail(path, f"receiver.{key}", value, f"must be a non-negative {kind}")
        tuning[key] = value
    broker = data.get("broker")
    if broker is None:
        return ServeConfig(centre_dir, store, zone, None)
    if not isinstance(broker, dict):
        raise _fail(path, "broker", broker, "must be a table")
    _unknown(path, broker, _BROKER, "broker.")
    host, port = broker.get("host"), broker.get("port")
    if host is None or port is None:
        default = _default_broker(centre_dir)
        if default is None:
            raise ConfigError(
                f"{path}: key broker.host/broker.port: missing and no broker was given at "
                "`quantrac centre init`"
            )
        host = default[0] if host is None else host
        port = default[1] if port is None else port
    if not isinstance(host, str) or not host:
        raise _fail(path, "broker.host", host, "must be a host name or address")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise _fail(path, "broker.port", port, "must be a port number 1-65535")
    for key in ("cert", "key"):
        if key not in broker:
            raise ConfigError(
                f"{path}: key broker.{key}: missing (the receiver's TLS client "
                "certificate and key, CN = centre)"
            )
    extra: dict[str, Any] = dict(tuning)
    if "client_id" in broker:
        if not isinstance(broker["client_id"], str) or not broker["client_id"]:
            raise _fail(path, "broker.client_id", broker["client_id"], "must be a string")
        extra["client_id"] = broker["client_id"]
    if "keepalive" in broker:
        if not isinstance(broker["keepalive"], int) or broker["keepalive"] < 5:
            raise _fail(path, "broker.keepalive", broker["keepalive"], "must be seconds >= 5")
        extra["keepalive"] = broker["keepalive"]
    settings = ReceiverSettings(
        host=host,
        port=port,
        ca_cert=_path(path, "broker.ca", broker.get("ca", str(centre_dir / "ca.crt"))),
        cert=_path(path, "broker.cert", broker["cert"]),
        tls_key=_path(path, "broker.key", broker["key"]),
        **extra,
    )
    return ServeConfig(centre_dir, store, zone, settings)


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
