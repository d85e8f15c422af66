"""The network page's tests: can this gateway reach its broker and FTP server, resolve their
names, and is its clock synchronised?

What is tested comes from what the station uses: the MQTT broker (from the running agent's
uplink status, else from the enrolment bundle's public ``broker`` entry in the state dir,
never from the private keys the technician account cannot read), the Circular 10 server of
``[uplink.circular10]``, a DNS lookup of every such name that is not an address, and NTP
(``timedatectl``'s ``NTPSynchronized`` when systemd is there, else the agent's own verdict).
A TCP connect proves the route and the port are open, without logging in: the console
holds no credentials. Each test has a short timeout so the page fills within seconds even
with no network at all.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_agent.console.screen.view import Check

TIMEOUT = 3.0


def _find_broker(doc: Any) -> tuple[str, int] | None:
    if isinstance(doc, dict):
        b = doc.get("broker")
        if isinstance(b, dict) and isinstance(b.get("host"), str) and isinstance(
                b.get("port"), int):
            return b["host"], b["port"]
        for v in doc.values():
            found = _find_broker(v)
            if found:
                return found
    return None


def broker_of(status: Mapping[str, Any], state_dir: Path | None) -> tuple[str, int] | None:
    """The broker's (host, port): the agent's uplink says it; else the enrolment bundle."""
    detail = str((status.get("uplink") or {}).get("detail") or "")
    host, sep, port = detail.rpartition(":")
    if sep and host and port.isdigit():
        return host, int(port)
    if state_dir is None:
        return None
    try:
        return _find_broker(json.loads((state_dir / "bundle.json").read_text("utf-8")))
    except (OSError, ValueError):
        return None


def tcp(name: str, host: str, port: int) -> Check:
    """Connect and close: the route and the port answer (no login)."""
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT):
            pass
    except OSError as exc:
        return Check(name, f"{host}:{port}", False, exc.strerror or str(exc) or "failed")
    return Check(name, f"{host}:{port}", True,
                 f"connected in {(time.monotonic() - start) * 1000:.0f} ms")


def dns(host: str) -> Check | None:
    """A lookup of ``host``; None when it is an address (nothing to resolve)."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        return Check("dns", host, False, f"{exc.strerror or exc}; check /etc/resolv.conf "
                     "and the router")
    addrs = sorted({str(i[4][0]) for i in infos})
    return Check("dns", host, True, ", ".join(addrs[:3]))


def ntp(status: Mapping[str, Any]) -> Check:
    """Is the clock synchronised: timedatectl when there, else what the agent found."""
    timedatectl = shutil.which("timedatectl")
    if timedatectl is not None:
        try:
            done = subprocess.run([timedatectl, "show", "-p", "NTPSynchronized", "-p",
                                   "NTP", "--value"], capture_output=True, timeout=TIMEOUT,
                                  check=False)
            synced, *rest = done.stdout.decode().split() or ["?"]
            if done.returncode == 0 and synced in ("yes", "no"):
                enabled = rest[0] if rest else "?"
                return Check("ntp", "timedatectl", synced == "yes",
                             "synchronised" if synced == "yes" else
                             f"not synchronised (NTP service {'on' if enabled == 'yes' else 'off'}"
                             "); the NTP server must be reachable on UDP 123")
        except (OSError, subprocess.TimeoutExpired):
            pass
    sync = (status.get("clock") or {}).get("synchronised")
    if sync is None:
        return Check("ntp", "agent", None if not status else False,
                     "unknown: no timedatectl here and the agent does not say")
    return Check("ntp", "agent", bool(sync),
                 "synchronised" if sync else "not synchronised; the NTP server must be "
                 "reachable on UDP 123")


def run_checks(status: Mapping[str, Any], state_dir: Path | None,
               ftp: tuple[str, int] | None) -> list[Check]:
    """Every test, in the order the page shows them."""
    out: list[Check] = []
    names: list[str] = []
    broker = broker_of(status, state_dir)
    if broker is not None:
        out.append(tcp("broker", *broker))
        names.append(broker[0])
    if ftp is not None:
        out.append(tcp("ftp", *ftp))
        names.append(ftp[0])
    for host in dict.fromkeys(names):
        found = dns(host)
        if found is not None:
            out.append(found)
    out.append(ntp(status))
    return out
