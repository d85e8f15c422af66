"""The network page's tests against real sockets on loopback: a listening port is reached,
a closed one is refused with the reason, a name is resolved, an address is not looked up,
and the broker is taken from the agent's uplink status or else the enrolment bundle."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from edge_agent.console.screen.network import broker_of, dns, run_checks, tcp


def test_tcp_reached_and_refused() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        ok = tcp("broker", "127.0.0.1", port)
    assert ok.ok is True and ok.target == f"127.0.0.1:{port}" and "connected" in ok.detail
    refused = tcp("ftp", "127.0.0.1", port)  # closed now
    assert refused.ok is False and "refused" in refused.detail.lower()


def test_dns() -> None:
    found = dns("localhost")
    assert found is not None and found.ok and "127.0.0.1" in found.detail
    assert dns("127.0.0.1") is None  # an address: nothing to resolve
    missing = dns("no-such-host.invalid")
    assert missing is not None and missing.ok is False and "resolv.conf" in missing.detail


def test_broker_from_status_or_bundle(tmp_path: Path) -> None:
    assert broker_of({"uplink": {"detail": "mqtt.example:8883"}}, None) == ("mqtt.example",
                                                                            8883)
    assert broker_of({"uplink": {"detail": "no uplink"}}, tmp_path) is None
    (tmp_path / "bundle.json").write_text(json.dumps(
        {"body": {"broker": {"host": "centre.example", "port": 8884}}}))
    assert broker_of({}, tmp_path) == ("centre.example", 8884)
    checks = run_checks({"uplink": {"detail": "127.0.0.1:1"}}, None, ("localhost", 1))
    assert [c.name for c in checks] == ["broker", "ftp", "dns", "ntp"]
    assert checks[0].ok is False and checks[1].ok is False and checks[2].ok is True
