"""The agent's local control socket: one JSON request per line, one JSON answer per line.

A Unix stream socket in the state directory (mode 0660, owned by the service user), so only
the service user, its group and root can ask. Requests::

    {"op": "status"}                               -> {"ok": true, "status": {...}}
    {"op": "read", "bus": "rs485-1", "unit": 1, "function": 3, "address": 0, "count": 2,
     "timeout": 1.0}                               -> {"ok": true, "words": [...]}
    {"op": "ping"}                                 -> {"ok": true}

``read`` runs on the agent's own bus between its transactions (the transports serialise every
transaction), so ``quantrac diag`` never fights the running agent for a serial port.

The server side is asyncio (it lives on the agent's event loop); ``request`` is the blocking
client the CLI uses.

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
import math
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("quantrac.edge_agent.control")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST = 64 * 1024


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in dicts, lists, tuples) replaced by None,
    so ``json.dumps(..., allow_nan=False)`` can write it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON of ``value`` (non-finite floats as null; other objects as ``str``)."""
    return json.dumps(json_safe(value), allow_nan=False, default=str, **kwargs)


class ControlError(RuntimeError):
    """The agent could not be asked (no socket, not running, refused)."""


def agent_running(path: Path, timeout: float = 1.0) -> bool:
    """True if an agent answers on ``path`` (a stale socket file answers nothing)."""
    try:
        return bool(request(path, {"op": "ping"}, timeout).get("ok"))
    except ControlError:
        return False


class ControlServer:
    """Serves ``handler`` on a Unix socket until ``close()``."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None

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
        try:
            while line := await reader.readline():
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

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def request(path: Path | str, msg: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One request/answer with a running agent; ControlError when it cannot be asked."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            sock.sendall(json.dumps(msg).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except FileNotFoundError:
            raise ControlError(f"{path}: no control socket (is the agent running?)") from None
        except PermissionError:
            raise ControlError(f"{path}: permission denied (run as the quantrac user or "
                               "root)") from None
        except (ConnectionRefusedError, TimeoutError) as exc:
            raise ControlError(f"{path}: the agent does not answer ({exc})") from None
        except OSError as exc:
            raise ControlError(f"{path}: {exc}") from None
    if not data:
        raise ControlError(f"{path}: the agent closed the connection without answering")
    answer: dict[str, Any] = json.loads(data)
    return answer
