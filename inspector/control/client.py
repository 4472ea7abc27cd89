"""The control channel's client side: one request, one reply, with a timeout."""

from __future__ import annotations

import getpass
import socket as _socket
from typing import Any

import zmq

from inspector.control.protocol import decode_reply, encode_request
from inspector.errors import InspectorError, WireError
from inspector.transport.security import SecurityConfig, require_secure_for_tcp, secure_client


class ControlError(InspectorError):
    """The daemon did not answer, or answered something unreadable."""


def default_user() -> str:
    """``login@host``: who is asking, recorded in the audit trail."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return f"{login}@{_socket.gethostname()}"[:200]


def send_command(endpoint: str, cmd: str, args: dict[str, Any] | None = None, *, user: str | None = None,
                 timeout_s: float = 5.0, security: SecurityConfig | None = None) -> dict[str, Any]:
    """Send one command and return the reply as a dict ``{"v", "ok", "error", "result"}``.

    Raises WireError if the request is invalid (checked before sending), ControlError on timeout or
    an unreadable reply. A refused command is a normal reply with ``ok: false``."""
    data = encode_request(cmd, args, user=user or default_user())
    require_secure_for_tcp(endpoint, security)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, max(1, int(timeout_s * 1000)))
        sock.setsockopt(zmq.SNDTIMEO, max(1, int(timeout_s * 1000)))
        secure_client(sock, security, None)
        try:
            sock.connect(endpoint)
            sock.send(data)
            raw = sock.recv()
        except zmq.Again:
            raise ControlError(f"no reply from {endpoint} within {timeout_s:g} s (daemon not running, wrong "
                               "endpoint, or this client's CURVE key is not on the allow-list)") from None
        except zmq.ZMQError as e:
            raise ControlError(f"control channel {endpoint}: {e}") from None
        try:
            return decode_reply(raw).model_dump()
        except WireError as e:
            raise ControlError(f"unreadable reply from {endpoint}: {e}") from None
    finally:
        sock.close(linger=0)
        ctx.term()
