"""sd_notify datagrams reach a real Unix datagram socket, as systemd would read them."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from edge_agent.daemon.sdnotify import Notifier


def test_ready_and_watchdog_reach_the_notify_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
        notifier = Notifier(env)
        assert notifier.watchdog_interval == 20.0
        assert notifier.ready("polling 3 devices")
        assert server.recv(1024) == b"READY=1\nSTATUS=polling 3 devices"
        assert notifier.watchdog()
        assert server.recv(1024) == b"WATCHDOG=1"


def test_outside_systemd_every_call_is_a_quiet_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready() is False


def test_watchdog_meant_for_another_pid_is_ignored() -> None:
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}
    notifier = Notifier(env)
    assert notifier.watchdog_interval is None
    assert notifier.ready() is False  # socket missing: reported, not raised
