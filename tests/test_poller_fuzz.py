"""Random bytes as a response never crash the transport or the poller (hypothesis).

The bytes come through a real pty from the test's side of the pair (and through a loopback
TCP connection), exactly where an analyser's answer would, in answer to the poller's request.
"""

from __future__ import annotations

import math
import os
import select
import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import modbus
from drivers.profile import builtin_profile
from drivers.transport import RtuTransport, SerialSettings, TcpTransport, Transport
from edge_agent.config.model import Device, PollPolicy
from edge_agent.poll.poller import DevicePoller
from protocol.model import Status

PROFILE = builtin_profile("hach_sc")
POLICY = PollPolicy(timeout=0.05, retries=0)


class Responder:
    """Answers every request arriving on ``fd`` with ``self.reply`` (a frame or noise)."""

    def __init__(self, read: object, write: object) -> None:
        self.reply = b""
        self._read = read
        self._write = write
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._read()  # type: ignore[operator]
            except OSError:
                return
            if data and self.reply:
                try:
                    self._write(self.reply)  # type: ignore[operator]
                except OSError:
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _pty_read(fd: int) -> bytes:
    ready, _, _ = select.select([fd], [], [], 0.05)
    return os.read(fd, 256) if ready else b""


@pytest.fixture(scope="module")
def pty_bus() -> Iterator[tuple[Transport, Responder]]:
    master, slave = os.openpty()
    transport = RtuTransport(SerialSettings(os.ttyname(slave), 19200), silence=0.005,
                             drain_limit=0.05)
    responder = Responder(lambda: _pty_read(master), lambda b: os.write(master, b))
    yield transport, responder
    responder.stop()
    transport.close()
    os.close(master)
    os.close(slave)


@pytest.fixture(scope="module")
def tcp_bus() -> Iterator[tuple[Transport, Responder]]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    conns: list[socket.socket] = []
    current: dict[str, socket.socket] = {}

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conns.append(conn)
            current["c"] = conn

    threading.Thread(target=accept, daemon=True).start()

    def read() -> bytes:
        conn = current.get("c")
        if conn is None:
            select.select([], [], [], 0.01)
            return b""
        ready, _, _ = select.select([conn], [], [], 0.05)
        try:
            return conn.recv(256) if ready else b""
        except OSError:
            current.pop("c", None)
            return b""

    def write(b: bytes) -> None:
        conn = current.get("c")
        if conn is not None:
            try:
                conn.sendall(b)
            except OSError:
                current.pop("c", None)

    transport = TcpTransport("127.0.0.1", port)
    responder = Responder(read, write)
    yield transport, responder
    server.close()
    responder.stop()
    transport.close()
    for c in conns:
        c.close()


def _check(poller: DevicePoller, transport: Transport, responder: Responder,
           reply: bytes) -> None:
    responder.reply = reply
    samples = poller.poll(transport)
    assert [s.channel for s in samples] == PROFILE.channel_names
    for s in samples:
        if s.status is Status.OFFLINE:
            assert math.isnan(s.value)
        else:  # bytes that happened to form a valid frame decode like any answer
            assert math.isfinite(s.value) or s.status is Status.FAULT
    h = poller.health
    assert h.polls_ok + h.polls_failed >= 1


noise = st.one_of(
    st.binary(min_size=1, max_size=120),
    # near misses: the right unit and function, then noise
    st.binary(max_size=120).map(lambda b: bytes((1, 3)) + b),
    st.binary(max_size=100).map(lambda b: modbus.rtu_read_response(1, 3, [0] * 49)[:-2] + b),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=noise)
def test_random_bytes_on_the_pty_never_crash_the_poller(
    pty_bus: tuple[Transport, Responder], reply: bytes
) -> None:
    transport, responder = pty_bus
    poller = DevicePoller(Device("hach", PROFILE, 1, interval=1.0), "pty", lambda: 1.0, POLICY)
    _check(poller, transport, responder, reply)


tcp_noise = st.one_of(
    st.binary(min_size=1, max_size=80),
    st.binary(max_size=110).map(lambda b: bytes((0, 1, 0, 0, 0, len(b) + 1, 1)) + b),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=tcp_noise)
def test_random_bytes_over_tcp_never_crash_the_poller(
    tcp_bus: tuple[Transport, Responder], reply: bytes
) -> None:
    transport, responder = tcp_bus
    poller = DevicePoller(Device("hach", PROFILE, 1, interval=1.0), "tcp", lambda: 1.0, POLICY)
    _check(poller, transport, responder, reply)
