"""Reject channel protocol (daemon ROUTER <-> line controller DEALER): one UTF-8 JSON frame per message.

Controller -> daemon::

    {"v": 1, "kind": "hello", "controller": "plc-1"}     on connect, and as a heartbeat (every ~1 s)
    {"v": 1, "kind": "ack", "seq": 17, "frame_id": 4711, "run_id": "…"}

Daemon -> controller::

    {"v": 1, "kind": "reject", "seq": 17, "run_id": "…", "frame_id": 4711, "camera": "…",
     "acquired_at": 1764600000.12, "issued_at": 1764600000.31, "deadline": 1764600000.81,
     "attempt": 1, "decisions": [{"inspection": "quality", "verdict": "reject", "reason": …}]}

``seq`` increases by one per command within a run (``run_id``); a resent command has the same
``seq`` and a higher ``attempt``: controllers act on ``(run_id, seq)`` once and acknowledge every copy.
Decoding validates everything and raises :class:`WireError` with a one-line reason.
"""

from __future__ import annotations

import json
from typing import Any

from inspector.errors import WireError

VERSION = 1
MAX_BYTES = 16 * 1024


def encode(kind: str, **fields: Any) -> bytes:
    return json.dumps({"v": VERSION, "kind": kind, **fields}, separators=(",", ":"), allow_nan=False,
                      default=str).encode()


def _decode(data: bytes, kinds: tuple[str, ...]) -> dict[str, Any]:
    if len(data) > MAX_BYTES:
        raise WireError(f"message of {len(data)} bytes exceeds the {MAX_BYTES}-byte limit")
    try:
        obj = json.loads(bytes(data).decode("utf-8"))
    except UnicodeDecodeError:
        raise WireError("message is not UTF-8") from None
    except (ValueError, RecursionError) as e:
        raise WireError(f"message is not valid JSON: {str(e).splitlines()[0][:120]}") from None
    if not isinstance(obj, dict):
        raise WireError(f"message must be a JSON object, got {type(obj).__name__}")
    if obj.get("v") != VERSION or type(obj.get("v")) is not int:
        raise WireError(f"unsupported protocol version {obj.get('v')!r} (expected {VERSION})")
    if obj.get("kind") not in kinds:
        raise WireError(f"unknown message kind {obj.get('kind')!r} (expected one of {', '.join(kinds)})")
    return obj


def _int(obj: dict[str, Any], key: str) -> int:
    v = obj.get(key)
    if type(v) is not int or v < 0:
        raise WireError(f"{obj['kind']}.{key} must be a non-negative integer, got {v!r}")
    return v


def decode_from_controller(data: bytes) -> dict[str, Any]:
    """``hello`` or ``ack`` (validated)."""
    obj = _decode(data, ("hello", "ack"))
    if obj["kind"] == "ack":
        _int(obj, "seq")
    else:
        name = obj.get("controller", "")
        if not isinstance(name, str) or len(name) > 200:
            raise WireError("hello.controller must be a string of at most 200 characters")
    return obj


def decode_from_daemon(data: bytes) -> dict[str, Any]:
    """``reject`` (validated)."""
    obj = _decode(data, ("reject",))
    for key in ("seq", "frame_id", "attempt"):
        _int(obj, key)
    for key in ("deadline", "issued_at"):
        if not isinstance(obj.get(key), (int, float)):
            raise WireError(f"reject.{key} must be a number")
    if not isinstance(obj.get("decisions"), list):
        raise WireError("reject.decisions must be a list")
    return obj
