"""Every refusal of the provisioning flow: a clear message, and nothing installed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_provision_helpers import T0, World, make_world, quantrac, snapshot

from centre import authority
from protocol.envelope import key_id
from provisioning import identity
from provisioning.bundle import read_bundle
from provisioning.errors import ProvisioningError
from provisioning.keys import raw_public
from provisioning.signed import b64


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _import(w: World, bundle: Path, fp: str) -> tuple[int, str]:
    """Run the real import (``--yes``: every refusal here comes before the question); the exit
    code and all it printed, stdout and stderr."""
    r = quantrac("provision", "import", bundle, "--centre-fingerprint", fp,
                 "--state-dir", w.state_dir, "--yes")
    return r.returncode, r.stdout + r.stderr


def _assert_nothing_installed(w: World, before: dict[str, tuple[int, bytes]]) -> None:
    assert snapshot(w.state_dir) == before
    for name in ("bundle.json", "ca.crt", "tls.crt"):
        assert not (w.state_dir / name).exists()
    assert json.loads((w.state_dir / "station.json").read_text())["centre_fingerprint"] is None


def test_bundle_with_one_byte_changed_is_rejected(world: World, tmp_path: Path) -> None:
    data = world.bundle
    pos = data.index(b'"port": 8883') + len(b'"port": 888')
    bad = tmp_path / "bundle.json"
    bad.write_bytes(data[:pos] + b"4" + data[pos + 1 :])  # 8883 -> 8884
    before = snapshot(world.state_dir)
    code, err = _import(world, bad, world.centre.fingerprint)
    assert code == 1
    assert f"{bad}: field signatures: the signature by the centre signing key" in err
    assert "does not match the content" in err
    _assert_nothing_installed(world, before)


def test_every_single_byte_change_of_a_bundle_is_rejected(world: World) -> None:
    """Not only the bytes a signature covers: separators, the signature, its base64 padding."""
    tls_public = identity._tls_public_pem(world.state_dir)
    state = json.loads((world.state_dir / "station.json").read_text())
    kid = bytes.fromhex(state["active_key_id"])

    def read(data: bytes) -> object:
        return read_bundle(
            data, "b.json", expected_fingerprint=world.centre.fingerprint,
            station_id="HN-WW-001", station_key_ids={kid}, tls_public_pem=tls_public, now=T0,
        )

    read(world.bundle)  # the untouched bundle verifies
    accepted = []
    for pos in range(len(world.bundle)):
        for flip in (0x01, 0x20):
            changed = bytearray(world.bundle)
            changed[pos] ^= flip
            try:
                read(bytes(changed))
            except ProvisioningError:
                continue
            accepted.append((pos, flip))
    assert accepted == []


def test_bundle_for_another_station_is_rejected(world: World, tmp_path: Path) -> None:
    other = identity.init(tmp_path / "other", "HN-WW-002", clock=lambda: T0,
                          serial=lambda: None)
    issued = authority.enrol(world.centre, other.request, "r2.json", clock=lambda: T0)
    bundle = tmp_path / "other-bundle.json"
    bundle.write_bytes(issued.bundle)
    before = snapshot(world.state_dir)
    code, err = _import(world, bundle, world.centre.fingerprint)
    assert code == 1
    assert f"{bundle}: field body.station_id: this bundle is for another station" in err
    assert "'HN-WW-002'" in err and "'HN-WW-001'" in err
    _assert_nothing_installed(world, before)


def test_wrong_fingerprint_is_rejected(world: World, tmp_path: Path) -> None:
    elsewhere = authority.init(tmp_path / "elsewhere", "b:1", clock=lambda: T0)
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(world.bundle)
    before = snapshot(world.state_dir)
    code, err = _import(world, bundle, elsewhere.fingerprint)
    assert code == 1
    assert f"not signed by the centre whose fingerprint was given ({elsewhere.fingerprint})" in err
    # Which step to redo, and never the bundle's real fingerprint: it would be pasted back.
    assert "ask the centre operator to read `quantrac centre fingerprint` aloud" in err
    assert "check the bundle came from that centre" in err
    assert world.centre.fingerprint not in err
    assert world.centre.fingerprint.replace("-", "") not in err.replace("-", "")
    _assert_nothing_installed(world, before)


def test_bundle_from_an_impostor_centre_is_rejected_by_the_real_fingerprint(
    world: World, tmp_path: Path
) -> None:
    """A forged bundle, perfect in every other way (same station, key, its own CA)."""
    impostor = authority.init(tmp_path / "impostor", "evil.test:8883", clock=lambda: T0)
    forged = authority.enrol(impostor, world.request, "request.json", clock=lambda: T0)
    bundle = tmp_path / "forged.json"
    bundle.write_bytes(forged.bundle)
    before = snapshot(world.state_dir)
    code, err = _import(world, bundle, world.centre.fingerprint)
    assert code == 1
    assert f"whose fingerprint was given ({world.centre.fingerprint})" in err
    assert impostor.fingerprint not in err
    _assert_nothing_installed(world, before)


def test_malformed_fingerprint_is_rejected(world: World, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(world.bundle)
    before = snapshot(world.state_dir)
    code, err = _import(world, bundle, "0BCD-EFGH")
    assert code == 1
    assert "--centre-fingerprint: '0BCD-EFGH' is not a centre fingerprint" in err
    _assert_nothing_installed(world, before)


def test_expired_bundle_is_rejected(world: World) -> None:
    before = snapshot(world.state_dir)
    later = T0 + 731 * 86400  # past the default 730 days
    with pytest.raises(ProvisioningError) as err:
        identity.import_bundle(world.state_dir, world.bundle, "bundle.json",
                               world.centre.fingerprint, clock=lambda: later)
    message = str(err.value)
    assert message.startswith("bundle.json: field body.expires: the bundle expired")
    assert "2028-09-20T" in message  # the expiry it names
    _assert_nothing_installed(world, before)


def test_request_whose_signature_does_not_match_its_key_is_rejected(tmp_path: Path) -> None:
    centre = authority.init(tmp_path / "centre", "b.test:8883", clock=lambda: T0)
    result = identity.init(tmp_path / "s", "HN-WW-009", clock=lambda: T0, serial=lambda: None)
    doc = json.loads(result.request)
    other = Ed25519PrivateKey.generate().public_key()  # someone else's key, self-consistent id
    doc["body"]["station_key"]["public"] = b64(raw_public(other))
    doc["body"]["station_key"]["key_id"] = key_id(other).hex()
    request = tmp_path / "request.json"
    request.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    r = quantrac("centre", "enrol", request, "--out", tmp_path / "bundle.json",
                 "--dir", tmp_path / "centre")
    assert r.returncode == 1
    assert f"{request}: field signatures: no signature by the station key" in r.stderr
    assert not (tmp_path / "bundle.json").exists()
    with centre.registry() as registry:
        assert registry.stations() == []


def test_request_with_a_bad_signature_value_is_rejected(tmp_path: Path) -> None:
    centre = authority.init(tmp_path / "centre", "b.test:8883", clock=lambda: T0)
    result = identity.init(tmp_path / "s", "HN-WW-009", clock=lambda: T0, serial=lambda: None)
    doc = json.loads(result.request)
    doc["body"]["hardware_serial"] = "pi:1234"  # content changed after signing
    request = tmp_path / "request.json"
    request.write_text(json.dumps(doc))
    r = quantrac("centre", "enrol", request, "--out", tmp_path / "bundle.json",
                 "--dir", tmp_path / "centre")
    assert r.returncode == 1
    assert "the signature by the station key named in station_key" in r.stderr
    assert "does not match the content" in r.stderr
    assert not (tmp_path / "bundle.json").exists()
    with centre.registry() as registry:
        assert registry.stations() == []


@pytest.mark.parametrize("mode", [0o755, 0o644, 0o640])
def test_state_dir_with_readable_keys_is_refused(world: World, tmp_path: Path, mode: int) -> None:
    key = next(world.state_dir.glob("station-*.key"))
    os.chmod(key, mode)
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(world.bundle)
    before = snapshot(world.state_dir)
    code, err = _import(world, bundle, world.centre.fingerprint)
    assert code == 1
    assert f"{key}: key file has mode {mode:04o}, readable or writable by other users" in err
    _assert_nothing_installed(world, before)
    for args in (("show",), ("rotate", "--out", str(tmp_path / "rot.json"))):
        r = quantrac("provision", *args, "--state-dir", world.state_dir)
        assert r.returncode == 1 and f"key file has mode {mode:04o}" in r.stderr
    assert not (tmp_path / "rot.json").exists()


def test_readable_tls_key_is_refused(world: World, tmp_path: Path) -> None:
    os.chmod(world.state_dir / "tls.key", 0o755)
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(world.bundle)
    before = snapshot(world.state_dir)
    code, err = _import(world, bundle, world.centre.fingerprint)
    assert code == 1 and "tls.key: key file has mode 0755" in err
    _assert_nothing_installed(world, before)


def test_state_dir_mode_0755_is_refused(world: World, tmp_path: Path) -> None:
    os.chmod(world.state_dir, 0o755)
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(world.bundle)
    before = snapshot(world.state_dir)
    code, err = _import(world, bundle, world.centre.fingerprint)
    assert code == 1
    assert f"{world.state_dir}: state dir has mode 0755" in err and "chmod 700" in err
    assert snapshot(world.state_dir) == before


def test_init_into_an_existing_0755_dir_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    r = quantrac("provision", "init", "--station-id", "S1", "--out", tmp_path / "r.json",
                 "--state-dir", state)
    assert r.returncode == 1 and "state dir has mode 0755" in r.stderr
    assert list(state.iterdir()) == [] and not (tmp_path / "r.json").exists()


def test_a_request_is_not_a_bundle(world: World, tmp_path: Path) -> None:
    wrong = tmp_path / "request.json"
    wrong.write_bytes(world.request)
    before = snapshot(world.state_dir)
    code, err = _import(world, wrong, world.centre.fingerprint)
    assert code == 1
    assert "field body.format: 'quantrac-enrolment-request/1' but a 'quantrac-bundle/1'" in err
    _assert_nothing_installed(world, before)


def test_enrolling_the_same_station_twice_is_refused(world: World) -> None:
    again = identity.init(world.state_dir, "HN-WW-001", force=True, clock=lambda: T0,
                          serial=lambda: None)
    with pytest.raises(ProvisioningError, match="'HN-WW-001' is already enrolled"):
        authority.enrol(world.centre, again.request, "again.json", clock=lambda: T0)


def test_bad_station_id_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    r = quantrac("provision", "init", "--station-id", "a/b", "--out", tmp_path / "r.json",
                 "--state-dir", tmp_path / "s")
    assert r.returncode == 1 and "--station-id: station id 'a/b'" in r.stderr
    assert not (tmp_path / "s").exists()
