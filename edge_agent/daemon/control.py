"""The agent's local control socket: one JSON request per line, one JSON answer per line.

A Unix stream socket in the state directory (mode 0660, owned by the service user), so only
the service user, its group and root can ask. Requests::

    {"op": "status"}                               -> {"ok": true, "status": {...}}
    {"op": "read", "bus": "rs485-1", "unit": 1, "function": 3, "address": 0, "count": 2,
     "timeout": 1.0}                               -> {"ok": true, "words": [...]}
    {"op": "ping"}                                 -> {"ok": true}
    {"op": "scan", "bus": "rs485-1", "units": [1, 2, 12], "timeout": 0.1}
        -> {"ok": true, "bus": "rs485-1", "complete": true, "units": [1, 2, 12],
            "hits": [{"unit": 1, "answer": "data",            # or "exception 02", "bad frame"
                      "guesses": [["liquiline", 3, 3], ...]}],  # profile, plausible, channels
            "devices": [{"device": "liquiline", "unit": 1, "profile": "liquiline",
                         "channels": ["pH", ...]}]}          # the config's devices on that bus
    {"op": "scan_progress"}
        -> {"ok": true, "scans": {"rs485-1": {"done": 40, "total": 247, "found": 2}}}
    {"op": "watch"}
        -> {"ok": true, "devices": [{"device": "hach", "bus": "rs485-1",
            "port": "/dev/ttyUSB0" (or "host:port"), "unit": 2,
            "profile": "hach_sc", "last_good": 1780000000.0 | null, "last_error": str | null,
            "last_error_at": float | null, "consecutive_failures": 0,
            "channels": [{"channel": "COD", "unit": "mg/L", "value": 25.3 | null,
                          "status": "measuring" | null, "t": float | null}]}]}
    {"op": "sampler_trigger"}                      -> {"ok": true, "starts_today": ...}
    {"op": "recent", "seconds": 3600}              # the console's sparklines
        -> {"ok": true, "seconds": 3600, "left_out": 0,     # records failing their checksum
            "channels": {"pH": {"window_s": 300,             # the shortest width stored
                                "points": [[1780000000.0, 7.12 | null], ...],  # start, mean
                                "live": {"window_s": 30, "points": [...]}}}}  # raw samples

A refusal is ``{"ok": false, "error": "..."}`` (a second scan of a bus already being scanned,
a bad request: not JSON, a field of the wrong type or out of range, a line over
``MAX_REQUEST``, or a connection past ``MAX_CONNECTIONS`` open at once); a connection that
sends no whole line within ``REQUEST_TIMEOUT_S`` is closed; for a bus the agent does not
poll (not in its config, or without devices, so its port is free) ``read`` and ``scan`` add
``"not_polled": true``.

``read`` and ``scan`` run on the agent's own bus between its transactions (the transports
serialise every transaction; a scan pauses briefly after each unit so the bus worker's polls
interleave), so ``quantrac diag`` never fights the running agent for a serial port and the
other buses are not touched. ``scan`` blocks until the whole scan is done (units x timeout at
most, more for units that answer); ``scan_progress``, asked on another connection meanwhile,
says how far it has got. ``watch`` is the agent's own view (what it last decoded, when, and
each device's last error): never a second master's timeouts taken for an offline analyser.
``recent`` is the outbox's closed records of the last ``seconds`` (default 3600, at most a
day), each channel's shortest window width, at most 120 points a channel, and ``live``: means
of the raw samples since its last record (see :mod:`edge_agent.console.recent`): the hour a
console started a minute ago has not seen.

The server side is asyncio (it lives on the agent's event loop) and is this module; the
blocking client the CLI uses (``request``, ``agent_running``) and the wire rules both sides
share (strict JSON, ``ControlError``) are :mod:`edge_agent.console.control_client`: the
technician's tools talk to the daemon without importing it.

Answers are strict JSON (RFC 8259): Python's ``json`` writes a NaN float as ``NaN``, which no
other JSON parser accepts (jq, a monitoring script), and an offline channel's last value *is*
NaN. So every non-finite float is sent as ``null`` (:func:`json_safe`), meaning "no value",
as the status display shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edge_agent.console.control_client import ControlError, agent_running, dumps

log = logging.getLogger("quantrac.edge_agent.control")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST = 64 * 1024
#: how long a connection may take to send a whole request line (every client sends it at once)
REQUEST_TIMEOUT_S = 5.0
#: connections served at once: every tool opens one per request, so a few dozen is plenty,
#: and more would only spend file descriptors the agent needs for its ports and its outbox
MAX_CONNECTIONS = 32


class ControlServer:
    """Serves ``handler`` on a Unix socket until ``close()``."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._connections = 0

    async def start(self) -> None:
        if self.path.exists() or self.path.is_symlink():
            if agent_running(self.path):
                raise ControlError(f"{self.path}: another agent is already running here")
            self.path.unlink()  # stale: left by an agent that was killed
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o117)  # the socket is created 0660, never briefly wider
        try:
            self._server = await asyncio.start_unix_server(self._serve, str(self.path),
                                                           limit=MAX_REQUEST)
        finally:
            os.umask(old)
        self.path.chmod(0o660)
        log.info("control_listening", extra={"socket": str(self.path)})

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= MAX_CONNECTIONS:  # each is a descriptor the agent needs
            writer.write(dumps({"ok": False, "error": f"{MAX_CONNECTIONS} connections are "
                                "open already; try again"}).encode() + b"\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        self._connections += 1
        try:
            await self._answer(reader, writer)
        finally:
            self._connections -= 1

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await self._request_line(reader, writer):
                try:
                    msg = json.loads(line)
                    if not isinstance(msg, dict):
                        raise ValueError("a request is a JSON object")
                    answer = await self.handler(msg)
                except (ValueError, KeyError, TypeError) as exc:
                    answer = {"ok": False, "error": str(exc)}
                except Exception as exc:  # a bug in one request must not stop the server
                    log.exception("control_request_failed")
                    answer = {"ok": False, "error": f"internal error: {exc}"}
                writer.write(dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _request_line(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> bytes:
        """The next request line, or b"" to close: at the end, after ``REQUEST_TIMEOUT_S``
        without a whole line (a client that sends part of one and stops would otherwise hold
        its connection, and a descriptor the agent needs, for ever), or past ``MAX_REQUEST``
        (answered with the reason first: a client should learn why it was cut off)."""
        try:
            return await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
        except TimeoutError:
            return b""
        except ValueError:  # readline's form of LimitOverrunError
            writer.write(dumps({"ok": False, "error": f"a request is one line of at most "
                                f"{MAX_REQUEST} bytes"}).encode() + b"\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return b""

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
