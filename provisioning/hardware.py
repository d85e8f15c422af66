"""The device's hardware serial, so the centre can tell a swapped gateway from the enrolled one.

On a Raspberry Pi this is the SoC serial from /proc/cpuinfo. Elsewhere it is derived from
/etc/machine-id; systemd asks that the machine id itself stay confidential, so what leaves the
device is an application-specific HMAC of it (the systemd ``app-specific`` idea), stable per
machine but useless for correlating with anything else.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

_APP_ID = b"quantrac-edge hardware serial v1"


def hardware_serial(
    cpuinfo: Path = Path("/proc/cpuinfo"), machine_id: Path = Path("/etc/machine-id")
) -> str | None:
    """``"pi:<serial>"``, ``"machine-id:<hmac>"``, or None when the device has neither."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            name, _, value = line.partition(":")
            value = value.strip()
            if name.strip() == "Serial" and value.strip("0"):
                return f"pi:{value.lower()}"
    except OSError:
        pass
    try:
        mid = machine_id.read_text().strip()
    except OSError:
        return None
    if not mid:
        return None
    digest = hmac.new(mid.encode(), _APP_ID, hashlib.sha256).hexdigest()
    return f"machine-id:{digest[:32]}"
