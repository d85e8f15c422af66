"""A deeply nested enrolment request or bundle (issue 10, S9) is refused with a message naming
the file and the byte, not ``maximum recursion depth exceeded``; nothing is registered or
installed. Through the real CLI, as the installer and the centre operator run it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_provision_helpers import World, make_world, quantrac, snapshot

from provisioning.signed import MAX_DEPTH

DEEP = 100_000  # far beyond Python's recursion limit


def nested(document: bytes, depth: int) -> tuple[bytes, int]:
    """``document`` with ``depth`` nested arrays in its body's hardware_serial/broker field,
    and the byte offset of the bracket that goes one level too deep."""
    doc = json.loads(document)
    key = "hardware_serial" if "hardware_serial" in doc["body"] else "broker"
    doc["body"][key] = "@@"
    text = json.dumps(doc, indent=2, sort_keys=True)
    at = text.index('"@@"')
    text = text.replace('"@@"', "[" * depth + "]" * depth)
    # the document and its body are levels 1 and 2, so the first bracket opens level 3 and
    # the one opening level MAX_DEPTH + 1 is MAX_DEPTH - 2 brackets further
    return text.encode("ascii"), at + MAX_DEPTH - 2


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def test_a_deeply_nested_request_is_refused_naming_file_and_byte(world: World,
                                                                 tmp_path: Path) -> None:
    data, offset = nested(world.request, DEEP)
    request = tmp_path / "deep-request.json"
    request.write_bytes(data)
    r = quantrac("centre", "enrol", request, "--out", tmp_path / "bundle.json",
                 "--dir", world.centre_dir)
    assert r.returncode == 1, r.stderr
    assert f"{request}: byte {offset}: nested more than {MAX_DEPTH} levels deep" in r.stderr
    assert "recursion" not in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bundle.json").exists()


def test_a_deeply_nested_bundle_is_refused_and_nothing_installed(world: World,
                                                                 tmp_path: Path) -> None:
    data, offset = nested(world.bundle, DEEP)
    bundle = tmp_path / "deep-bundle.json"
    bundle.write_bytes(data)
    before = snapshot(world.state_dir)
    r = quantrac("provision", "import", bundle, "--centre-fingerprint",
                 world.centre.fingerprint, "--state-dir", world.state_dir, "--yes")
    assert r.returncode != 0
    assert f"{bundle}: byte {offset}: nested more than {MAX_DEPTH} levels deep" in r.stderr
    assert "recursion" not in r.stderr and "Traceback" not in r.stderr
    assert snapshot(world.state_dir) == before
