"""The client side of the agent's control socket, and the wire rules both sides share.

One JSON request per line, one JSON answer per line, on a Unix stream socket in the state
directory (the server, and the list of requests, is :mod:`edge_agent.daemon.control`). The
technician's tools (``quantrac status``, ``diag read`` through a running agent) use
:func:`request`; they import this module, never the daemon.

Answers are strict JSON (RFC 8259): Python's ``json`` writes a NaN float as ``NaN``, which no
other JSON parser accepts (jq, a monitoring script), and an offline channel's last value *is*
NaN. So every non-finite float is sent as ``null`` (:func:`json_safe`), meaning "no value",
as the status display shows it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
from pathlib import Path
from typing import Any

from protocol.cli_error import UserError


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


class ControlError(UserError, RuntimeError):
    """The agent could not be asked (no socket, not running, refused)."""


def agent_running(path: Path, timeout: float = 1.0) -> bool:
    """True if an agent answers on ``path`` (a stale socket file answers nothing)."""
    try:
        return bool(request(path, {"op": "ping"}, timeout).get("ok"))
    except ControlError:
        return False


#: where the packaged service keeps its state (the systemd unit's StateDirectory)
DEFAULT_STATE_DIR = Path("/var/lib/quantrac")
DEFAULT_CONFIG = Path("/etc/quantrac/station.toml")


def socket_candidates(config: Path | None = None) -> list[Path]:
    """Where the agent's control socket may be, in the order they are tried.

    The one answer for every tool that talks to the agent (``status``, ``diag``, the
    console): ``--config``'s ``[agent]`` socket when a config is named (its state dir, or its
    ``control_socket``); else ``$QUANTRAC_STATE_DIR/control.sock``; else the socket of
    ``$QUANTRAC_CONFIG`` (default ``/etc/quantrac/station.toml``) when that file exists; else
    the packaged state dir's. A config that does not read raises its ConfigError: a
    technician who names a file wants to hear what is wrong with it.
    """
    from edge_agent.config.reader import load_config

    if config is not None:
        return [load_config(config, station_required=False).agent.control_socket]
    out: list[Path] = []
    if os.environ.get("QUANTRAC_STATE_DIR"):
        out.append(Path(os.environ["QUANTRAC_STATE_DIR"]) / "control.sock")
    default = Path(os.environ.get("QUANTRAC_CONFIG") or DEFAULT_CONFIG)
    if default.is_file():
        with contextlib.suppress(UserError):  # not the technician's file: try the next
            out.append(load_config(default, station_required=False).agent.control_socket)
    out.append(DEFAULT_STATE_DIR / "control.sock")
    return list(dict.fromkeys(out))


def find_socket(socket_path: Path | None = None, config: Path | None = None) -> Path:
    """The control socket to ask: ``socket_path`` if given, else the first candidate
    (:func:`socket_candidates`) that exists, else the first candidate (whose absence the
    request then names)."""
    if socket_path is not None:
        return Path(socket_path)
    places = socket_candidates(config)
    return next((p for p in places if p.exists()), places[0])


def running_agent(socket_path: Path | None = None, config: Path | None = None
                  ) -> Path | None:
    """The socket of an agent that answers now, or None (the tool then opens ports itself).

    A socket this user may not use is a ControlError, not None: the agent is there, and
    opening its port instead would only fail on the port lock and point the wrong way."""
    places = [Path(socket_path)] if socket_path is not None else socket_candidates(config)
    for p in places:
        if not p.exists():
            continue
        if not os.access(p, os.R_OK | os.W_OK):
            raise ControlError(f"{p}: permission denied (run as the quantrac user or root, "
                               "or join the socket's group)")
        if agent_running(p):
            return p
    return None


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
