"""Shared pieces of the provisioning tests (no tests here): real files, real keys, real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from centre import authority
from protocol.envelope import (
    SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305,
    VERSION,
    Header,
    encode_records,
    key_id,
    seal,
)
from protocol.model import Record, Status
from provisioning import identity

T0 = 1_790_000_000.0  # 2026-09-21, a fixed "now" for the API-level tests


def quantrac(
    *args: str | Path, cwd: Path | None = None, stdin: int = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point with DEBUG logging; never raises on failure.

    stdin is /dev/null unless given (a pty, to answer a question): a command that asks must
    never find the terminal of whoever runs the tests and wait on it.
    """
    env = dict(os.environ, QUANTRAC_LOG_LEVEL="DEBUG")
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.daemon.cli", "--log-level", "DEBUG", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=60, stdin=stdin,
    )


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``directory`` with its mode and content: 'nothing installed' means equal."""
    out: dict[str, tuple[int, bytes]] = {}
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(directory))] = (
            st.st_mode, path.read_bytes() if path.is_file() else b""
        )
    return out


@dataclass
class World:
    """A centre and a station that has sent its request, bundle not imported yet."""

    centre_dir: Path
    state_dir: Path
    centre: authority.Centre
    request: bytes
    bundle: bytes


def make_world(tmp_path: Path, station_id: str = "HN-WW-001", now: float = T0) -> World:
    """Centre init, station init, centre enrol, through the Python API."""
    centre = authority.init(tmp_path / "centre", "broker.test:8883", clock=lambda: now)
    state_dir = tmp_path / "station"
    result = identity.init(state_dir, station_id, clock=lambda: now, serial=lambda: "pi:00c0ffee")
    issued = authority.enrol(centre, result.request, "request.json", clock=lambda: now)
    return World(tmp_path / "centre", state_dir, centre, result.request, issued.bundle)


def packet(ident: identity.StationIdentity, seq: int, t: float = T0) -> bytes:
    """A real sealed packet from this station, carrying one record."""
    record = Record(
        channel="pH", start=int(t) - 300, end=int(t), mean=7.1, min=7.0, max=7.2, std=0.05,
        n_valid=60, n_expected=60, valid=True, status=Status.MEASURING, unit="pH",
    )
    header = Header(
        version=VERSION,
        suite=SUITE_ED25519_X25519_SHA256_CHACHA20POLY1305,
        station_id=ident.station_id,
        key_id=ident.key_id,
        centre_key_id=key_id(ident.centre_packet_public),
        first_seq=seq,
        last_seq=seq,
        created=int(t * 1000),
    )
    return seal(header, encode_records([(seq, record)]), ident.signing_key,
                ident.centre_packet_public)
