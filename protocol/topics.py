"""The MQTT topic names station and centre agree on: built here, and nowhere else.

A topic is part of the wire contract, like the envelope: the station publishes its packets on
``quantrac/v1/<station id>/up`` and its retained ``online``/``offline`` state on ``.../state``,
and reads the centre's signed commands on ``.../down``. The enrolment bundle carries the three
names (``provisioning.bundle``), the station's uplink uses what the bundle says, the centre's
receiver subscribes to every station's ``up`` and ``state`` and publishes to one ``down``, and
the broker's ACL (``centre.broker``) lets a certificate use only its own station's names. Four
places spelling ``f"quantrac/v1/{...}/up"`` apart would drift the day one of them changes; the
ACL pattern in particular must be the very same name with ``%u`` (Mosquitto's "user name",
the certificate CN) for the station id, which is what :meth:`Topics.for_station` gives.

Why the station id is the topic's third level and nothing else: the broker's ACL is the
first proof of who sent a packet (the receiver compares the id in the topic with the one the
packet's signed header names), so :func:`station_of` reads it only from a four-level
``quantrac/v1/<id>/<kind>`` and refuses anything else.

Pure (strings in, strings out; on the ``sans-io`` list), so both sides and the provisioning
tools import it without a network stack.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the first two levels of every topic: the name space and the protocol version
PREFIX = "quantrac/v1"
#: every station's packets / state messages / commands (the receiver's and the ACL's view)
UP_FILTER = f"{PREFIX}/+/up"
STATE_FILTER = f"{PREFIX}/+/state"
DOWN_FILTER = f"{PREFIX}/+/down"
#: the station id in a Mosquitto ACL ``pattern`` line
ACL_USER = "%u"


@dataclass(frozen=True)
class Topics:
    """The station's MQTT topics; the broker ACL lets it use only these."""

    up: str
    down: str
    state: str

    @classmethod
    def for_station(cls, station_id: str) -> Topics:
        base = f"{PREFIX}/{station_id}"
        return cls(up=f"{base}/up", down=f"{base}/down", state=f"{base}/state")


def down_topic(station_id: str) -> str:
    """Where the centre publishes commands for ``station_id``."""
    return Topics.for_station(station_id).down


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 / Mosquitto shared subscription: the group's members split the messages."""
    return f"$share/{group}/{topic_filter}"


def station_of(topic: str) -> str | None:
    """The station id in ``quantrac/v1/<id>/<kind>`` (None for anything else)."""
    parts = topic.split("/")
    if len(parts) == 4 and "/".join(parts[:2]) == PREFIX and parts[2]:
        return parts[2]
    return None
