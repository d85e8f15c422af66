"""The centre config's ``[web]`` and ``[station."ID"]`` tables: the dashboard and what is public.

Example (in the same file as ``quantrac centre serve`` reads)::

    [web]
    listen = "0.0.0.0:8090"              # default for `quantrac centre web --listen`
    password_file = "web.passwd"         # the operator's password hash (`centre web passwd`)
    public_requests_per_min = 60         # per client, on the page and the feed without login

    [station."THA-AQ-0001"]
    public = true                        # default false: nothing of a station is public
    name = "Thanh Hoa, Hac Thanh park"   # shown to the public instead of the id only
    public_channels = ["PM10", "PM2,5", "SO2", "NO2", "CO", "O3"]

Nothing leaves without login unless a station says ``public = true`` *and* names the channels
(an allow-list: a channel added at the station later is not published by accident). The
VN_AQI of a public station is computed from its public channels only, so an index never
carries a value that is not public itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.config_file import Reader

DEFAULT_PUBLIC_PER_MIN = 60
_WEB = {"listen", "password_file", "public_requests_per_min"}
_STATION = {"public", "name", "public_channels"}


@dataclass(frozen=True)
class PublicStation:
    """A station the province publishes: its id, shown name and the channels allowed out."""

    station: str
    name: str
    channels: tuple[str, ...]


@dataclass(frozen=True)
class WebSettings:
    listen: str | None = None
    password_file: Path | None = None  # None: <centre_dir>/web.passwd
    public_per_min: int = DEFAULT_PUBLIC_PER_MIN
    public: Mapping[str, PublicStation] = field(default_factory=dict)

    def password_path(self, centre_dir: Path) -> Path:
        return self.password_file or centre_dir / "web.passwd"


def read(r: Reader, config: Path, data: Mapping[str, Any]) -> WebSettings:
    """The two tables of ``data`` (the whole config document); ``r`` raises on a mistake."""
    web = r.table(data.get("web", {}), "web", _WEB)
    listen = r.get(web, "listen", "web", "str", None, check=lambda v: ":" in v,
                   expected="HOST:PORT, e.g. 0.0.0.0:8090")
    password = r.get(web, "password_file", "web", "str", None, check=bool,
                     expected="a path to the password hash file")
    per_min = r.get(web, "public_requests_per_min", "web", "int", DEFAULT_PUBLIC_PER_MIN,
                    check=lambda v: v > 0, expected="a positive integer")
    public: dict[str, PublicStation] = {}
    given = data.get("station", {})
    stations = r.table(given, "station", set(given) if isinstance(given, Mapping) else ())
    for sid, table in stations.items():
        where = f'station."{sid}"'
        t = r.table(table, where, _STATION)
        is_public = r.get(t, "public", where, "bool", False)
        name = r.get(t, "name", where, "str", sid)
        channels = r.get(t, "public_channels", where, "list", [],
                         check=lambda v: all(isinstance(c, str) and c for c in v),
                         expected="an array of channel symbols such as [\"PM10\", \"SO2\"]")
        if is_public:
            public[sid] = PublicStation(sid, name, tuple(channels))
    pw = None if password is None else Path(password)
    if pw is not None and not pw.is_absolute():
        pw = config.parent / pw
    return WebSettings(listen, pw, per_min, public)
