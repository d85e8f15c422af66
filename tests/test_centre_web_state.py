"""The dashboard's online/offline comes from the station's own birth and will, end to end.

A real Mosquitto, the real receiver (``quantrac centre serve``) and the station's real MQTT
uplink process: the uplink's retained birth message makes the station ``online`` on the
overview; killed with SIGKILL (a power cut: no DISCONNECT, no goodbye), the broker publishes
its will and the overview says ``offline`` and puts the station first. The page is the
dashboard application itself (``centre.web.app.build`` on the receiver's store, logged in),
so what is asserted is what the operator reads, not a store row.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from centre.serve_config import load
from centre.web.app import build
from protocol import web_app
from tests.mqtt_world import World, make_records, wait_for, world_at


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from world_at(tmp_path)


def _overview_row(app: web_app.App, cookie: dict[str, str], station: str) -> list[str]:
    """The overview's cells for ``station`` as text (tags stripped)."""
    resp = web_app.respond(app, "GET", "/", cookie, b"", "127.0.0.1", time.time())
    assert resp.status == 200, resp.body[:300]
    page = resp.body.decode()
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", page) if f">{station}<" in r)
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def test_birth_and_will_make_the_overview_online_then_offline(world: World) -> None:
    station = world.add_station("HCM-WILL-01")
    station.fill(make_records(20))
    config = world.centre_config()
    world.start_centre(config)
    uplink = world.start_uplink(station)
    app = build(load(config), None)
    cookie = {"cookie": f"{app.cookie}={app.sessions.start(time.time())}"}

    def state() -> str:
        if world.stored_count(station.station_id) < 20:
            return ""
        return _overview_row(app, cookie, station.station_id)[2]

    wait_for(lambda: state().startswith("online since"), 30, "the birth message on the page")
    assert _overview_row(app, cookie, station.station_id)[1] == "ok"
    uplink.send_signal(signal.SIGKILL)
    uplink.wait(10)
    wait_for(lambda: state().startswith("offline since"), 30, "the will on the page")
    assert _overview_row(app, cookie, station.station_id)[1] == "not online"
