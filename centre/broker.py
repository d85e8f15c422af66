"""The Mosquitto broker a centre runs: its ACL, its config, and the receiver's certificate.

One definition of who may use which topic, used by the centre operator's broker, by the demo
and by the tests: a station (certificate CN = station id, turned into the MQTT username by
``use_identity_as_username``) writes only its own ``up``/``state`` and reads only its own
``down``; the centre's receivers read every ``up``/``state`` and write every ``down``.

The receivers' certificate CN, :data:`RECEIVER_CN`, contains a ``:``, which no station id may
contain (``provisioning.signed``), so no enrolled station can ever be given the centre's rights.
Rendering is pure (text out); writing files and issuing certificates happen in
:func:`write_broker_dir`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from centre.authority import Centre, issue_broker_cert
from provisioning import certs
from provisioning.securefs import ensure_private_dir, write_new, write_replace

log = logging.getLogger("quantrac.centre.broker")

RECEIVER_CN = "centre:receiver"

ACL = f"""\
# quantrac-edge: a station may write only its own up/state and read only its own down.
pattern write quantrac/v1/%u/up
pattern write quantrac/v1/%u/state
pattern read quantrac/v1/%u/down

user {RECEIVER_CN}
topic read quantrac/v1/+/up
topic read quantrac/v1/+/state
topic write quantrac/v1/+/down
"""


@dataclass(frozen=True)
class BrokerSetup:
    """Where everything a broker needs lives (all in one private directory)."""

    directory: Path
    host: str
    port: int
    conf: Path
    acl: Path
    server_key: Path
    server_cert: Path
    ca: Path
    crl: Path
    receiver_key: Path
    receiver_cert: Path
    data_dir: Path
    log_file: Path


def render_config(setup: BrokerSetup, *, user: str | None = None) -> str:
    """mosquitto.conf text: one TLS listener, client certificates required, ACL, persistence."""
    lines = [
        "# written by `quantrac centre broker-config`",
        "per_listener_settings false",
        "allow_anonymous false",
        "persistence true",
        f"persistence_location {setup.data_dir}/",
        "autosave_interval 60",
        "max_queued_messages 0",  # a station's backlog must never be dropped by the broker
        "max_inflight_messages 100",
        f"acl_file {setup.acl}",
        f"log_dest file {setup.log_file}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        f"listener {setup.port} {setup.host}",
        f"cafile {setup.ca}",
        f"certfile {setup.server_cert}",
        f"keyfile {setup.server_key}",
        f"crlfile {setup.crl}",
        "require_certificate true",
        "use_identity_as_username true",
    ]
    if user is not None:
        lines.insert(1, f"user {user}")
    return "\n".join(lines) + "\n"


def write_broker_dir(
    centre: Centre,
    directory: Path,
    host: str,
    port: int,
    *,
    hostnames: list[str] | None = None,
    user: str | None = None,
    days: int = 730,
    clock: Callable[[], float] = time.time,
) -> BrokerSetup:
    """Issue the broker's server certificate and the receivers' client certificate, write ACL
    and config. Existing keys are never replaced (a second run refuses, naming the file)."""
    ensure_private_dir(directory, "broker dir")
    files = issue_broker_cert(centre, hostnames or [host], directory, days=days, clock=clock)
    setup = BrokerSetup(
        directory=directory, host=host, port=port, conf=directory / "mosquitto.conf",
        acl=directory / "acl", server_key=files.key, server_cert=files.cert, ca=files.ca,
        crl=files.crl, receiver_key=directory / "receiver.key",
        receiver_cert=directory / "receiver.crt", data_dir=directory / "data",
        log_file=directory / "mosquitto.log",
    )
    key = certs.new_tls_key()
    cert = certs.issue_client_cert(
        centre.ca_key, centre.ca_pem, key.public_key(), RECEIVER_CN, clock(), days
    )
    write_new(setup.receiver_key, certs.tls_key_pem(key))
    write_replace(setup.receiver_cert, cert.public_bytes(certs.PEM), mode=0o644)
    setup.data_dir.mkdir(mode=0o700, exist_ok=True)
    write_replace(setup.acl, ACL.encode(), mode=0o644)
    write_replace(setup.conf, render_config(setup, user=user).encode(), mode=0o644)
    log.info("broker_config_written", extra={"dir": str(directory), "port": port})
    return setup
