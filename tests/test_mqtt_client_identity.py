"""Over the real Mosquitto with ``centre.broker``'s config: a client id is tied to the certificate,
so no station can close another station's connection (or take over its session) by claiming
its client id, and receivers with their own identities do not close each other's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.mqtt_world import StationHandle, World, wait_for, world_at


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from world_at(tmp_path)


class Client:
    """A paho client with a station's certificate; records its CONNACKs and disconnects."""

    def __init__(self, world: World, station: StationHandle, client_id: str) -> None:
        self.connacks: list[bool] = []
        self.disconnects: list[str] = []
        self.mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
            protocol=mqtt.MQTTv311,
        )  # fmt: skip
        sd = station.state_dir
        self.mqtt.tls_set(
            ca_certs=str(world.broker.ca_path), certfile=str(sd / "tls.crt"),
            keyfile=str(sd / "tls.key"),
        )  # fmt: skip
        self.mqtt.on_connect = lambda c, u, f, rc, p: self.connacks.append(not rc.is_failure)
        self.mqtt.on_disconnect = lambda c, u, f, rc, p: self.disconnects.append(str(rc))
        self.mqtt.connect(world.broker.host, world.broker.port)
        self.mqtt.loop_start()
        wait_for(lambda: self.connacks == [True], 10, f"the CONNACK of {client_id}")

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def test_a_station_cannot_close_another_stations_connection_with_its_client_id(
    world: World,
) -> None:
    a = world.add_station("HCM-A01")
    b = world.add_station("HCM-OTHER-02")
    victim = Client(world, b, "HCM-OTHER-02")
    attacker = Client(world, a, "HCM-OTHER-02")  # A's certificate, B's client id
    try:
        # The broker handles A's CONNECT (closing the old session holder, if any) before it
        # sends A's CONNACK; B's PUBACK afterwards proves B's connection is still the same.
        info = victim.mqtt.publish("quantrac/v1/HCM-OTHER-02/state", b"online", qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
        assert victim.disconnects == [], "B's connection was closed by A"
        assert "already connected, closing old connection" not in world.broker.log()
        # the broker knows A by its certificate, whatever client id A sent
        assert "as HCM-A01 " in world.broker.log()
    finally:
        attacker.close()
        victim.close()
