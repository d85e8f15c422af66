"""The station's state dir: its identity, keys, and the installed bundle.

Everything the daemon and the MQTT uplink need comes from ``load(state_dir)``. Layout (the dir
is 0700, every file 0600)::

    station.json            station id, active and pending key ids, hardware serial
    request.json            the enrolment request ``init`` wrote, kept to write it again
    station-<keyid>.key     Ed25519 signing keys (PKCS#8 PEM), one file per key, never rewritten
    tls.key, tls.csr        the broker TLS client key (ECDSA P-256) and its CSR
    bundle.json             the centre's verified bundle, as received
    ca.crt, tls.crt         extracted from the bundle for the TLS client
    retired/                signing keys rotated out
    replaced-<time>/        a whole earlier identity moved aside by ``init --force``
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from protocol.clock import Clock
from protocol.envelope import key_id
from protocol.topics import Topics
from provisioning import certs
from provisioning.bundle import Bundle, read_bundle
from provisioning.errors import ProvisioningError
from provisioning.hardware import hardware_serial
from provisioning.keys import (
    fingerprint,
    load_ed25519_private,
    normalise_fingerprint,
    private_pem,
)
from provisioning.request import make_enrolment, make_rotation
from provisioning.securefs import (
    check_private_dir,
    check_private_file,
    ensure_private_dir,
    write_new,
    write_replace,
)
from provisioning.signed import check_station_id, iso

log = logging.getLogger("quantrac.provisioning.identity")

STATE_FORMAT = "quantrac-station/1"
DEFAULT_STATE_DIR = Path(os.environ.get("QUANTRAC_STATE_DIR", "/var/lib/quantrac"))

_IDENTITY_FILES = ("station.json", "tls.key", "tls.csr", "bundle.json", "ca.crt", "tls.crt",
                   "request.json")


@dataclass(frozen=True)
class StationIdentity:
    """What a provisioned station runs with. ``signing_key`` is never shown in a repr."""

    state_dir: Path
    station_id: str
    key_id: bytes
    signing_key: Ed25519PrivateKey = field(repr=False)
    centre_packet_public: X25519PublicKey = field(repr=False)
    centre_packet_key_id: bytes
    centre_signing_public: Ed25519PublicKey = field(repr=False)
    centre_fingerprint: str
    broker_host: str
    broker_port: int
    ca_cert_path: Path
    cert_path: Path
    tls_key_path: Path
    topics: Topics
    cert_not_after: float
    bundle_expires: float
    pending_key_id: bytes | None


@dataclass(frozen=True)
class InitResult:
    """What ``init`` did: the request to carry to the centre, and where an old identity went.

    ``key_fingerprint`` is the new station key's fingerprint: what the centre operator
    compares before approving a re-key (``quantrac centre rekey``).
    """

    request: bytes
    station_id: str
    key_id: bytes
    key_fingerprint: str
    hardware_serial: str | None
    moved_aside: Path | None
    written_again: bool = False  # the identity existed: its stored request, not a new one


@dataclass(frozen=True)
class Existing:
    """The identity a state dir holds now, as far as ``init --force`` must warn about it.

    ``enrolled``: a bundle was imported, so the centre knows this key and no other.
    """

    station_id: str | None
    key_id: str | None
    enrolled: bool
    centre_fingerprint: str | None
    files: tuple[str, ...]


def existing(state_dir: Path) -> Existing | None:
    """What ``init --force`` would move aside in ``state_dir``, or None if nothing.

    Reads only the public state file, and tolerates a damaged one: ``--force`` is also how an
    installer starts over from a half-written dir.
    """
    if not state_dir.is_dir():
        return None
    files = tuple(p.name for p in _existing_identity(state_dir))
    if not files:
        return None
    try:
        state = json.loads((state_dir / "station.json").read_text())
    except (OSError, ValueError):
        state = {}
    if not isinstance(state, dict):
        state = {}
    fp = state.get("centre_fingerprint")
    enrolled = bool(fp) and (state_dir / "bundle.json").exists()
    return Existing(
        station_id=state.get("station_id"),
        key_id=state.get("active_key_id"),
        enrolled=enrolled,
        centre_fingerprint=fp if isinstance(fp, str) else None,
        files=files,
    )


_REQUEST_FILE = "request.json"


def existing_identity_text(state_dir: Path) -> str:
    """``station X's identity, enrolled`` or ``..., not enrolled``: what a refusal must say so
    the installer can tell a typo (another id, not enrolled: ``--force`` is harmless) from a
    working station (enrolled: ``--force`` strands it)."""
    old = existing(state_dir)
    if old is None or old.station_id is None:
        return "a station identity"
    state = ("enrolled at the centre: --force strands it until the centre approves a re-key"
             if old.enrolled else "not enrolled here yet: --force is harmless unless the "
             "centre enrolled its request")
    return f"station {old.station_id}'s identity, {state}"


def _request_again(state_dir: Path, station_id: str) -> InitResult | None:
    """The stored request of a not yet enrolled identity of ``station_id``, or None.

    Why: the installer's stick with the request can be lost, or the request's folder was
    missing, after the keys were made. Nothing is wrong with those keys, and a *new* identity
    would make the centre see a second request for the same id; writing the very same request
    again (same nonce, same keys) is what the centre's re-issue recognises if it already
    enrolled the first copy. An enrolled dir (bundle imported) or another station id is left
    to the caller's refusal: those need a decision, not a copy.
    """
    old = existing(state_dir)
    stored = state_dir / _REQUEST_FILE
    if old is None or old.enrolled or old.station_id != station_id or not stored.is_file():
        return None
    state = _read_state(state_dir)
    kid, _ = _key_ids(state)
    signing = load_ed25519_private(_key_path(state_dir, kid))
    hw = state.get("hardware_serial")
    return InitResult(stored.read_bytes(), station_id, kid, fingerprint(signing.public_key()),
                      hw if isinstance(hw, str) else None, None, written_again=True)


def _key_path(state_dir: Path, kid: bytes) -> Path:
    return state_dir / f"station-{kid.hex()}.key"


def _existing_identity(state_dir: Path) -> list[Path]:
    found = [state_dir / n for n in _IDENTITY_FILES if (state_dir / n).exists()]
    found += sorted(state_dir.glob("station-*.key"))
    return found


def init(
    state_dir: Path,
    station_id: str,
    *,
    force: bool = False,
    clock: Clock = time.time,
    serial: Callable[[], str | None] = hardware_serial,
) -> InitResult:
    """Generate the station's keys on this device and return its enrolment request.

    Refuses on an existing identity unless ``force``; even then the old files are moved to
    ``replaced-<time>/`` beside the new ones, never deleted or overwritten.
    """
    check_station_id(station_id, "--station-id")
    ensure_private_dir(state_dir)
    existing = _existing_identity(state_dir)
    moved: Path | None = None
    if existing and not force:
        again = _request_again(state_dir, station_id)
        if again is not None:
            return again
    if existing:
        if not force:
            names = ", ".join(p.name for p in existing)
            held = existing_identity_text(state_dir)
            raise ProvisioningError(
                f"{state_dir}: already holds {held} ({names}); refusing to replace it. Use "
                "--force to start over (the old files are kept in replaced-<time>/)"
            )
        moved = state_dir / f"replaced-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(clock()))}"
        n = 0
        while moved.exists():
            n += 1
            moved = moved.with_name(f"{moved.name.split('.')[0]}.{n}")
        moved.mkdir(mode=0o700)
        for path in existing:
            os.rename(path, moved / path.name)
        log.warning("identity_moved_aside", extra={"state_dir": str(state_dir), "to": str(moved)})
    now = clock()
    signing = Ed25519PrivateKey.generate()
    kid = key_id(signing.public_key())
    tls_key = certs.new_tls_key()
    csr = certs.make_csr(tls_key, station_id)
    hw = serial()
    write_new(_key_path(state_dir, kid), private_pem(signing))
    write_new(state_dir / "tls.key", certs.tls_key_pem(tls_key))
    write_new(state_dir / "tls.csr", csr)
    _write_state(
        state_dir,
        {
            "format": STATE_FORMAT,
            "station_id": station_id,
            "active_key_id": kid.hex(),
            "pending_key_id": None,
            "hardware_serial": hw,
            "created": iso(now),
            "centre_fingerprint": None,
        },
    )
    request = make_enrolment(station_id, signing, csr, hw, now)
    write_new(state_dir / _REQUEST_FILE, request)
    log.info(
        "station_initialised",
        extra={"station_id": station_id, "key_id": kid.hex(), "hardware_serial": hw},
    )
    return InitResult(request, station_id, kid, fingerprint(signing.public_key()), hw, moved)


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    data = (json.dumps(state, indent=2, sort_keys=True) + "\n").encode("ascii")
    write_replace(state_dir / "station.json", data)


def _read_state(state_dir: Path) -> dict[str, Any]:
    check_private_dir(state_dir)
    path = state_dir / "station.json"
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProvisioningError(
            f"{path}: missing: this device has no station identity; run `quantrac provision "
            "init --station-id ID --out FILE` first"
        ) from None
    except (ValueError, OSError) as exc:
        raise ProvisioningError(f"{path}: unreadable ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ProvisioningError(f"{path}: field format: not a {STATE_FORMAT!r} file")
    return state


def _key_ids(state: dict[str, Any]) -> tuple[bytes, bytes | None]:
    pending = state.get("pending_key_id")
    return bytes.fromhex(state["active_key_id"]), bytes.fromhex(pending) if pending else None


def _check_key_files(state_dir: Path, state: dict[str, Any]) -> None:
    """Every private key file must be 0600 before anything is read or written."""
    active, pending = _key_ids(state)
    check_private_file(_key_path(state_dir, active))
    if pending is not None:
        check_private_file(_key_path(state_dir, pending))
    check_private_file(state_dir / "tls.key")


def _tls_public_pem(state_dir: Path) -> bytes:
    path = state_dir / "tls.key"
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError):
        raise ProvisioningError(f"{path}: not a readable PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ProvisioningError(f"{path}: not an ECDSA key")
    return certs.public_pem(key)


def import_bundle(
    state_dir: Path,
    data: bytes,
    source: str,
    centre_fingerprint: str,
    *,
    clock: Clock = time.time,
    confirm: Callable[[Bundle], None] | None = None,
) -> Bundle:
    """Verify a bundle against the fingerprint the installer typed, then install it.

    Every check runs before the first write, so a refused bundle installs nothing. A bundle
    naming the pending key (after ``rotate``) makes that key the active one. ``confirm`` is
    called with the verified bundle before the first write (the CLI shows the station id, the
    centre and the broker and asks); it raises to install nothing.
    """
    expected = normalise_fingerprint(centre_fingerprint)
    state = _read_state(state_dir)
    _check_key_files(state_dir, state)
    active, pending = _key_ids(state)
    ids = {active} | ({pending} if pending else set())
    bundle = read_bundle(
        data,
        source,
        expected_fingerprint=expected,
        station_id=state["station_id"],
        station_key_ids=ids,
        tls_public_pem=_tls_public_pem(state_dir),
        now=clock(),
    )
    if confirm is not None:
        confirm(bundle)
    write_replace(state_dir / "ca.crt", bundle.ca_pem.encode("ascii"))
    write_replace(state_dir / "tls.crt", bundle.station_cert_pem.encode("ascii"))
    write_replace(state_dir / "bundle.json", data)
    if pending is not None and bundle.station_key_id == pending:
        retired = state_dir / "retired"
        retired.mkdir(mode=0o700, exist_ok=True)
        os.rename(_key_path(state_dir, active), _key_path(retired, active))
        state["active_key_id"] = pending.hex()
        state["pending_key_id"] = None
        log.info(
            "station_key_activated",
            extra={"station_id": bundle.station_id, "key_id": pending.hex(),
                   "retired_key_id": active.hex()},
        )
    state["centre_fingerprint"] = bundle.fingerprint
    _write_state(state_dir, state)
    log.info(
        "bundle_installed",
        extra={"station_id": bundle.station_id, "centre_fingerprint": bundle.fingerprint,
               "broker": f"{bundle.broker_host}:{bundle.broker_port}",
               "expires": iso(bundle.expires)},
    )
    return bundle


def load(state_dir: Path = DEFAULT_STATE_DIR) -> StationIdentity:
    """The provisioned station: keys, centre keys, broker, certificate paths, topics.

    Refuses (ProvisioningError) if the dir or a key file is readable by others, or if no bundle
    has been imported yet.
    """
    state = _read_state(state_dir)
    _check_key_files(state_dir, state)
    active, pending = _key_ids(state)
    bundle_path = state_dir / "bundle.json"
    fp = state.get("centre_fingerprint")
    if fp is None or not bundle_path.exists():
        raise ProvisioningError(
            f"{bundle_path}: no bundle installed: the station is not enrolled yet; run "
            "`quantrac provision import BUNDLE --centre-fingerprint FP`"
        )
    bundle = read_bundle(
        bundle_path.read_bytes(),
        str(bundle_path),
        expected_fingerprint=fp,
        station_id=state["station_id"],
        station_key_ids={active},
        tls_public_pem=_tls_public_pem(state_dir),
        now=None,
    )
    log.debug(
        "identity_loaded",
        extra={"state_dir": str(state_dir), "station_id": bundle.station_id, "key_id": active.hex(),
               "centre_fingerprint": bundle.fingerprint},
    )
    return StationIdentity(
        state_dir=state_dir,
        station_id=bundle.station_id,
        key_id=active,
        signing_key=load_ed25519_private(_key_path(state_dir, active)),
        centre_packet_public=bundle.centre_packet,
        centre_packet_key_id=key_id(bundle.centre_packet),
        centre_signing_public=bundle.centre_signing,
        centre_fingerprint=bundle.fingerprint,
        broker_host=bundle.broker_host,
        broker_port=bundle.broker_port,
        ca_cert_path=state_dir / "ca.crt",
        cert_path=state_dir / "tls.crt",
        tls_key_path=state_dir / "tls.key",
        topics=bundle.topics,
        cert_not_after=bundle.station_cert.not_valid_after_utc.timestamp(),
        bundle_expires=bundle.expires,
        pending_key_id=pending,
    )


def public_key_pem(state_dir: Path = DEFAULT_STATE_DIR) -> bytes:
    """The active signing key's public half (SubjectPublicKeyInfo PEM): what an inspector
    gives ``quantrac verify --public-key`` when the centre's registry is not at hand. Public,
    so it may go on any stick; it is compared by its fingerprint (``show``) read out loud."""
    state = _read_state(state_dir)
    kid, _ = _key_ids(state)
    public = load_ed25519_private(_key_path(state_dir, kid)).public_key()
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def show(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, Any]:
    """Public facts about this station, for ``quantrac provision show`` (no secret in it)."""
    state = _read_state(state_dir)
    _check_key_files(state_dir, state)
    active, pending = _key_ids(state)
    signing = load_ed25519_private(_key_path(state_dir, active))
    info: dict[str, Any] = {
        "state_dir": str(state_dir),
        "station_id": state["station_id"],
        "key_id": active.hex(),
        "station_key_fingerprint": fingerprint(signing.public_key()),
        "pending_key_id": pending.hex() if pending else None,
        "hardware_serial": state.get("hardware_serial"),
        "created": state.get("created"),
        "enrolled": False,
    }
    if state.get("centre_fingerprint") and (state_dir / "bundle.json").exists():
        ident = load(state_dir)
        info.update(
            enrolled=True,
            centre_fingerprint=ident.centre_fingerprint,
            centre_packet_key_id=ident.centre_packet_key_id.hex(),
            broker=f"{ident.broker_host}:{ident.broker_port}",
            topics={"up": ident.topics.up, "down": ident.topics.down, "state": ident.topics.state},
            certificate=str(ident.cert_path),
            certificate_expires=iso(ident.cert_not_after),
            bundle_expires=iso(ident.bundle_expires),
        )
    return info


@dataclass(frozen=True)
class RotateResult:
    """A rotation request for the centre; ``reused`` when a rotation was already pending."""

    request: bytes
    old_key_id: bytes
    new_key_id: bytes
    reused: bool


def rotate(state_dir: Path = DEFAULT_STATE_DIR, *, clock: Clock = time.time) -> RotateResult:
    """Create a new signing key (pending) and the request that asks the centre to accept it.

    The station keeps signing with the current key until it imports the centre's answer (a
    bundle naming the new key), so no packet is ever signed by a key the centre does not know.
    Asked again while a rotation is pending, it re-issues the request for the same new key.
    """
    state = _read_state(state_dir)
    _check_key_files(state_dir, state)
    if not state.get("centre_fingerprint"):
        raise ProvisioningError(
            f"{state_dir / 'station.json'}: field centre_fingerprint: the station is not "
            "enrolled yet; import its bundle before rotating keys. Bundle lost? The centre "
            "writes it again for the same request: `quantrac centre enrol REQUEST --out BUNDLE` "
            "with the request this station wrote at `provision init`"
        )
    active, pending = _key_ids(state)
    old = load_ed25519_private(_key_path(state_dir, active))
    reused = pending is not None
    if pending is not None:
        new = load_ed25519_private(_key_path(state_dir, pending))
    else:
        new = Ed25519PrivateKey.generate()
        pending = key_id(new.public_key())
        write_new(_key_path(state_dir, pending), private_pem(new))
        state["pending_key_id"] = pending.hex()
        _write_state(state_dir, state)
    log.info(
        "rotation_requested",
        extra={"station_id": state["station_id"], "key_id": active.hex(),
               "new_key_id": pending.hex(), "reused": reused},
    )
    request = make_rotation(state["station_id"], old, new, clock())
    return RotateResult(request, active, pending, reused)
