"""What the Circular 10 uplink is told: the server, the receiver profile and the tunables.

A module of its own because the transport factory
(:mod:`~edge_agent.uplinks.circular10.connect`) and the uplink both read it, and neither
should import the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.config.model import Circular10Receiver, StationConfig


@dataclass(frozen=True)
class Circular10Settings:
    """Everything the uplink needs; :meth:`from_config` builds it from the station config.

    Tests and tools change a field with :func:`dataclasses.replace` (checked by mypy)."""

    host: str
    receiver: Circular10Receiver
    port: int = 21
    user: str = "anonymous"
    password: str = field(default="", repr=False)
    directory: str = ""
    ca_file: Path | None = None
    host_key: str | None = None
    known_hosts: Path | None = None
    key_file: Path | None = None
    interval_s: float = 300.0
    window_s: int = 300
    grace_s: float = 30.0
    timezone: str = "Asia/Ho_Chi_Minh"
    retention_s: float = 60 * 86400.0
    timeout_s: float = 30.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    refused_retry_s: float = 600.0  # a permanent refusal is retried this slowly

    @property
    def transport(self) -> str:
        return self.receiver.transport

    @property
    def server(self) -> str:
        """Which server and account: the remembered upload mode is valid for this one only."""
        return f"{self.transport}://{self.user}@{self.host}:{self.port}"

    @classmethod
    def from_config(cls, cfg: StationConfig) -> Circular10Settings:
        """From a station config with ``[uplink.circular10]`` set (ValueError if not)."""
        c = cfg.circular10
        if c is None:
            raise ValueError(f"{cfg.source}: no [uplink.circular10] table")
        return cls(
            host=c.host, receiver=c.receiver, port=c.port, user=c.user, password=c.password,
            directory=c.directory, ca_file=c.ca_file, host_key=c.host_key,
            known_hosts=c.known_hosts, key_file=c.key_file,
            interval_s=c.interval_minutes * 60.0, window_s=c.window,
            grace_s=cfg.averaging.grace_s, timezone=cfg.station.timezone,
            retention_s=c.retention_days * 86400.0, timeout_s=c.timeout_s,
            backoff_cap_s=c.backoff_cap_s,
        )  # fmt: skip
