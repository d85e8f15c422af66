"""The one place a paho MQTT client with TLS client certificates is made.

Station uplink (``edge_agent.uplinks.mqtt.uplink``), centre receiver (``centre.receiver``) and
the drain benchmark (``bench/drain.py``) all speak to the same Mosquitto listener, which
requires a client certificate and maps its CN to the user name and client id. What such a
client must be is one decision, made here:

* MQTT 3.1.1 and paho's version-2 callback API (the signatures the callers implement);
* TLS with the provisioned certificate and key, the broker checked against the given CA,
  ``CERT_REQUIRED`` and ``PROTOCOL_TLS_CLIENT`` (so the broker's hostname is checked too);
  paho's own defaults say the same today, but the security of the link should not rest on a
  library's default staying put;
* a persistent session (``clean_session`` false) unless asked otherwise: the uplink and the
  receiver rely on the broker keeping their subscriptions and QoS 1 messages across a
  reconnect; only a throw-away client (the benchmark's raw baseline) asks for a clean one.

What differs per caller stays with the caller: callbacks, last will, connect timeout, and how
the connection is (re)tried.

Where it lives, and why here: both ``edge_agent`` and ``centre`` must import it, and they are
siblings that never import each other, so it belongs one floor down. ``provisioning`` owns the
certificate *files*, but it is the offline side (keys, enrolment, bundles; it runs on an
installer's laptop with no broker in reach) and has no business opening connections.
``protocol`` is the wire contract both sides share (envelope, topics), and the session
parameters above are part of that contract. It is ``protocol``'s one module that may do I/O:
it is not on the import-linter ``sans-io`` list (it imports paho and ssl), and
``tests/test_architecture.py`` names it as ``protocol``'s one edge, so no pure module can
import it without the lint failing.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def tls_client(
    client_id: str,
    *,
    ca_cert: Path,
    cert: Path,
    key: Path,
    persistent: bool = True,
    max_inflight: int | None = None,
) -> mqtt.Client:
    """A paho client, not yet connected, with TLS set from these files (see the module doc).

    ``max_inflight``: QoS 1 messages paho keeps unacknowledged by the broker at once (paho's
    default, 20, when None)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=not persistent,
        protocol=mqtt.MQTTv311,
    )
    client.tls_set(
        ca_certs=str(ca_cert),
        certfile=str(cert),
        keyfile=str(key),
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    if max_inflight is not None:
        client.max_inflight_messages_set(max_inflight)
    return client
