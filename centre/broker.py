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

**Federated brokers** (a provincial broker in front of a national centre). The stations are
enrolled with the national centre (they seal to its packet key and trust its signed
commands) but connect to their province's broker, which enforces the same per-station ACL.
That broker carries a Mosquitto bridge (:class:`Bridge`, rendered into its config): every
station's ``up`` and ``state`` go out to the national broker, every ``down`` comes back in,
all at QoS 1 over one TLS connection with a persistent session (``cleansession false``), so
a national outage queues in the provincial broker (``max_queued_messages 0``: unbounded)
instead of being dropped. The national broker knows the bridge by its certificate
(``bridge:<name>``, issued by ``--bridge-identity NAME``; like a receiver's CN it contains a
``:``, which no station id can): the ACL lets it write any station's ``up``/``state`` and
read any ``down``, but never a receiver's rights. A province can therefore only pass on
what its stations sealed: the bridge sees ciphertext, cannot read or forge a record (each
packet is signed by its station and encrypted to the national centre), and a packet it moved
to another station's topic is refused by the receiver as ``station_mismatch``.
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


def bridge_cn(name: str) -> str:
    """The certificate CN (= MQTT username) of the provincial bridge called ``name``."""
    if not _RECEIVER_NAME.fullmatch(name):
        raise UsageError(f"bridge name {name!r}: 1-32 of A-Z a-z 0-9 _ -")
    return f"bridge:{name}"


def render_acl(
    receiver_cns: Sequence[str] = (RECEIVER_CN,), bridge_cns: Sequence[str] = ()
) -> str:
    """The ACL: the station patterns, the same rights for each receiver identity, and a
    station's rights over every station for each provincial bridge that may connect."""
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
    for cn in bridge_cns:
        text += (
            f"\nuser {cn}\ntopic write {UP_FILTER}\ntopic write {STATE_FILTER}\n"
            f"topic read {DOWN_FILTER}\n"
        )
    return text


ACL = render_acl()


@dataclass(frozen=True)
class Bridge:
    """This broker's bridge to a national broker: where it is, how it is trusted, who we are.

    ``ca`` checks the national broker's certificate (hostname included); ``cert``/``key`` are
    the bridge identity the national centre issued (CN ``bridge:<name>``)."""

    name: str
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path


def render_bridge(bridge: Bridge) -> str:
    """The ``connection`` section: station traffic out, commands back in, QoS 1, kept."""
    return "\n".join([
        f"connection {bridge.name}",
        f"address {bridge.host}:{bridge.port}",
        "bridge_protocol_version mqttv311",
        # the national broker keeps the bridge's subscription to the commands, and this one
        # its queue of station packets, across a dropped link
        "cleansession false",
        f"remote_clientid {bridge_cn(bridge.name)}",
        f"local_clientid bridge-local-{bridge.name}",
        # $SYS notifications would be refused by the national ACL; the log says the same
        "notifications false",
        "try_private true",
        "start_type automatic",
        "restart_timeout 1 30",
        f"topic {UP_FILTER} out 1",
        f"topic {STATE_FILTER} out 1",
        f"topic {DOWN_FILTER} in 1",
        f"bridge_cafile {bridge.ca}",
        f"bridge_certfile {bridge.cert}",
        f"bridge_keyfile {bridge.key}",
        "bridge_insecure false",
    ]) + "\n"


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
    #: provincial bridges that may connect here: ``(name, cert, key)`` issued for them
    bridge_identities: tuple[tuple[str, Path, Path], ...] = ()
    #: this broker's own bridge to a national broker, if it forwards there
    bridge: Bridge | None = None


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
    text = "\n".join(lines) + "\n"
    return text if setup.bridge is None else text + "\n" + render_bridge(setup.bridge)


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
    bridge_identities: Sequence[str] = (),
    bridge: Bridge | None = None,
) -> BrokerSetup:
    """Issue the broker's server certificate and one client certificate per receiver
    (``<name>.crt``/``<name>.key``, CN ``centre:<name>``) and per provincial bridge that may
    connect (``bridge-<name>.crt``/``.key``, CN ``bridge:<name>``, to hand to that province),
    write ACL and config (with ``bridge``'s section when this broker forwards to a national
    one). Existing keys are never replaced (a second run refuses, naming the file)."""
    names = list(dict.fromkeys(receivers))
    if not names:
        raise UsageError("at least one receiver")
    cns = [receiver_cn(n) for n in names]  # UsageError naming a bad one, before any file
    bridge_names = list(dict.fromkeys(bridge_identities))
    bridge_cns = [bridge_cn(n) for n in bridge_names]
    if bridge is not None:
        bridge_cn(bridge.name)
        for what, path in (("--bridge-ca", bridge.ca), ("--bridge-cert", bridge.cert),
                           ("--bridge-key", bridge.key)):  # fmt: skip
            if not path.is_file():
                raise UsageError(f"{what} {path}: no such file")
    ensure_private_dir(directory, "broker dir")
    files = issue_broker_cert(centre, hostnames or [host], directory, days=days, clock=clock)
    identities = tuple((n, directory / f"{n}.crt", directory / f"{n}.key") for n in names)
    bridged = tuple(
        (n, directory / f"bridge-{n}.crt", directory / f"bridge-{n}.key") for n in bridge_names
    )
    setup = BrokerSetup(
        directory=directory, host=host, port=port, conf=directory / "mosquitto.conf",
        acl=directory / "acl", server_key=files.key, server_cert=files.cert, ca=files.ca,
        crl=files.crl, receiver_key=identities[0][2],
        receiver_cert=identities[0][1], data_dir=directory / "data",
        log_file=directory / "mosquitto.log", receivers=identities,
        bridge_identities=bridged, bridge=bridge,
    )
    for (_, cert_path, key_path), cn in zip(identities + bridged, cns + bridge_cns, strict=True):
        key = certs.new_tls_key()
        cert = certs.issue_client_cert(
            centre.ca_key, centre.ca_pem, key.public_key(), cn, clock(), days
        )
        write_new(key_path, certs.tls_key_pem(key))
        write_replace(cert_path, cert.public_bytes(certs.PEM), mode=0o644)
    setup.data_dir.mkdir(mode=0o700, exist_ok=True)
    write_replace(setup.acl, render_acl(cns, bridge_cns).encode(), mode=0o644)
    write_replace(setup.conf, render_config(setup, user=user).encode(), mode=0o644)
    log.info("broker_config_written", extra={"dir": str(directory), "port": port})
    return setup
