"""The Mosquitto broker a centre runs: its ACL, its config, and the receiver's certificate.

One definition of who may use which topic, used by the centre operator's broker, by the demo
and by the tests: a station (certificate CN = station id, turned into the MQTT username by
``use_identity_as_username``) writes only its own ``up``/``state`` and reads only its own
``down``; the centre's receivers read every ``up``/``state`` and write every ``down``.

The receivers' certificate CNs (``centre:<name>``, :data:`RECEIVER_CN` for the default one)
contain a ``:``, which no station id may contain (``provisioning.signed``), so no enrolled
station can ever be given the centre's rights. The topic names in the ACL come from
``protocol.topics`` (a station's own with ``%u`` for its id), the very names the bundle gives
a station and the receiver subscribes to, so the three cannot drift apart. Rendering is pure
(text out); writing files and issuing certificates happen in :func:`write_broker_dir`.

**The MQTT client id is the certificate too** (``use_username_as_clientid``): the broker
replaces whatever client id a client sends by its username, the CN. Without it, a client id
is a free string, and MQTT gives a client id one session: station A's certificate connecting
as ``HCM-OTHER-02`` made Mosquitto close B's connection ("already connected, closing old
connection") and take over B's persistent session, as often as A liked. With it, a
certificate can only ever replace its own earlier connection. The price: two clients with one
certificate now take turns, so **every receiver has its own certificate** (``centre:receiver``,
``centre:receiver-2``, ...; ``--receiver NAME`` of ``broker-config``), each listed in the ACL.
They still split the load through one ``$share`` group, and each keeps its own session (the
acks it has in flight) across reconnects. The ``client_id`` in a receiver's config is then
only what it asks for; the broker's name for it is its CN.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from centre.authority import Centre, issue_broker_cert
from protocol.cli_error import UsageError
from protocol.topics import ACL_USER, DOWN_FILTER, STATE_FILTER, UP_FILTER, Topics
from provisioning import certs
from provisioning.securefs import ensure_private_dir, write_new, write_replace

log = logging.getLogger("quantrac.centre.broker")

#: the default receiver's name, and its certificate CN
RECEIVER_NAME = "receiver"
RECEIVER_CN = "centre:receiver"
_RECEIVER_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


def receiver_cn(name: str) -> str:
    """The certificate CN (= MQTT username = client id) of the receiver called ``name``."""
    if not _RECEIVER_NAME.fullmatch(name):
        raise UsageError(f"receiver name {name!r}: 1-32 of A-Z a-z 0-9 _ -")
    return f"centre:{name}"


def render_acl(receiver_cns: Sequence[str] = (RECEIVER_CN,)) -> str:
    """The ACL: the station patterns, then the same rights for each receiver identity."""
    own = Topics.for_station(ACL_USER)  # the station's own names, %u for its id
    text = (
        "# quantrac-edge: a station may write only its own up/state and read only its own down.\n"
        f"pattern write {own.up}\npattern write {own.state}\npattern read {own.down}\n"
    )
    for cn in receiver_cns:
        text += (
            f"\nuser {cn}\ntopic read {UP_FILTER}\ntopic read {STATE_FILTER}\n"
            f"topic write {DOWN_FILTER}\n"
        )
    return text


ACL = render_acl()


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
    #: every receiver identity: ``(name, cert, key)``; the first is receiver_cert/receiver_key
    receivers: tuple[tuple[str, Path, Path], ...] = ()


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
        # the client id is the CN too: no certificate can close another's session
        "use_username_as_clientid true",
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
    receivers: Sequence[str] = (RECEIVER_NAME,),
) -> BrokerSetup:
    """Issue the broker's server certificate and one client certificate per receiver
    (``<name>.crt``/``<name>.key``, CN ``centre:<name>``), write ACL and config. Existing keys
    are never replaced (a second run refuses, naming the file)."""
    names = list(dict.fromkeys(receivers))
    if not names:
        raise UsageError("at least one receiver")
    cns = [receiver_cn(n) for n in names]  # ValueError naming a bad one, before any file
    ensure_private_dir(directory, "broker dir")
    files = issue_broker_cert(centre, hostnames or [host], directory, days=days, clock=clock)
    identities = tuple((n, directory / f"{n}.crt", directory / f"{n}.key") for n in names)
    setup = BrokerSetup(
        directory=directory, host=host, port=port, conf=directory / "mosquitto.conf",
        acl=directory / "acl", server_key=files.key, server_cert=files.cert, ca=files.ca,
        crl=files.crl, receiver_key=identities[0][2],
        receiver_cert=identities[0][1], data_dir=directory / "data",
        log_file=directory / "mosquitto.log", receivers=identities,
    )
    for (_, cert_path, key_path), cn in zip(identities, cns, strict=True):
        key = certs.new_tls_key()
        cert = certs.issue_client_cert(
            centre.ca_key, centre.ca_pem, key.public_key(), cn, clock(), days
        )
        write_new(key_path, certs.tls_key_pem(key))
        write_replace(cert_path, cert.public_bytes(certs.PEM), mode=0o644)
    setup.data_dir.mkdir(mode=0o700, exist_ok=True)
    write_replace(setup.acl, render_acl(cns).encode(), mode=0o644)
    write_replace(setup.conf, render_config(setup, user=user).encode(), mode=0o644)
    log.info("broker_config_written", extra={"dir": str(directory), "port": port})
    return setup
