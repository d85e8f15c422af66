"""The station's own web page (``[web]``): where it listens, and how long a login lasts.

Off unless the table is there: a page is one more open port on the plant's network, so the
installer turns it on by choosing the LAN address it binds to (never ``0.0.0.0`` by default:
a station with a 4G modem on another interface must not show its page there)::

    [web]
    listen = "192.168.1.10:8080"   # HOST:PORT, the LAN address of the station
    session_hours = 8.0            # a login lasts this long from its last use

The password is not in the config (the config is often copied around for support): its
scrypt hash is set by ``quantrac web passwd`` in the state directory (``edge_agent.web``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol.cli_error import UsageError
from protocol.config_file import Reader
from protocol.web_app import parse_listen


@dataclass(frozen=True, slots=True)
class WebSettings:
    host: str
    port: int
    session_hours: float = 8.0


_KEYS = {"listen", "session_hours"}


def _listen_ok(v: str) -> bool:
    try:
        parse_listen(v, "web.listen")
    except UsageError:
        return False
    return True


def parse_web(r: Reader, doc: Mapping[str, Any]) -> WebSettings | None:
    """``[web]``, or None without one; each mistake names its key and value."""
    if "web" not in doc:
        return None
    where = "web"
    before = len(r.problems)
    t = r.table(doc["web"], where, _KEYS)
    listen = r.get(t, "listen", where, "str", check=_listen_ok,
                   expected="HOST:PORT, the station's LAN address (e.g. 192.168.1.10:8080)")
    hours = r.get(t, "session_hours", where, "number", 8.0, check=lambda v: 0.1 <= v <= 720,
                  expected="hours in 0.1..720 a login lasts from its last use")
    if len(r.problems) > before or listen is None:
        return None
    host, port = parse_listen(listen, "web.listen")
    return WebSettings(host, port, hours)
