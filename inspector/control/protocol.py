"""Control channel protocol: versioned JSON requests and replies, strictly validated.

Request (one ZeroMQ frame, UTF-8 JSON, at most 64 KiB)::

    {"v": 1, "cmd": "reload_model" | "set_lot" | "set_expected" | "pause" | "resume" | "status",
     "args": {...}, "user": "who asked (attribution)"}

    reload_model  {"inspection": str, "version": str | null}
    set_lot       {"lot": str, "recipe": str | null}
    set_expected  {"excipient": str}
    pause, resume, status   {}

Reply::

    {"v": 1, "ok": bool, "error": str | null, "result": {...}}

Decoding never unpickles or evaluates anything; every defect (size, encoding, JSON syntax,
duplicate keys, nesting depth, NaN, unknown keys, wrong types) raises :class:`WireError` with a
one-line reason.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from inspector.errors import WireError

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
COMMANDS = ("reload_model", "set_lot", "set_expected", "pause", "resume", "status")

# printable, no control characters, bounded: ids and names end up in logs and audit records
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ReloadModelArgs(_Args):
    inspection: Name
    version: Name | None = None


class SetLotArgs(_Args):
    lot: Name
    recipe: Name | None = None


class SetExpectedArgs(_Args):
    excipient: Name


class NoArgs(_Args):
    pass


ARGS_MODELS: dict[str, type[_Args]] = {
    "reload_model": ReloadModelArgs,
    "set_lot": SetLotArgs,
    "set_expected": SetExpectedArgs,
    "pause": NoArgs,
    "resume": NoArgs,
    "status": NoArgs,
}


class ControlRequest(BaseModel):
    """A validated request; ``args`` is the command's own model (e.g. :class:`SetLotArgs`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    cmd: Literal["reload_model", "set_lot", "set_expected", "pause", "resume", "status"]
    args: _Args
    user: Name

    def audit_payload(self) -> dict[str, Any]:
        """Plain data for the audit trail."""
        return {"cmd": self.cmd, "args": self.args.model_dump(), "user": self.user}


class ControlReply(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    ok: bool
    error: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)


# ---- JSON with limits ----------------------------------------------------------------------------
def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise WireError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise WireError(f"{name} is not valid JSON")


def _loads_limited(data: bytes, what: str) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"{what} is {len(data)} bytes, over the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError(f"{what} is not UTF-8 (byte {e.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except WireError as e:
        raise WireError(f"{what}: {e}") from None
    except RecursionError:
        raise WireError(f"{what} is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, huge integer literals
        raise WireError(f"{what} is not valid JSON: {str(e).splitlines()[0][:200]}") from None


def _first_error(e: ValidationError, prefix: str) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    where = f"{prefix}.{loc}" if loc else prefix
    return f"{where}: {msg}"


def decode_request(data: bytes) -> ControlRequest:
    """Parse and validate one request frame. Raises WireError (only) on anything malformed."""
    obj = _loads_limited(data, "control request")
    if not isinstance(obj, dict):
        raise WireError(f"control request must be a JSON object, got {type(obj).__name__}")
    if obj.get("v") != PROTOCOL_VERSION or type(obj.get("v")) is not int:
        raise WireError(f"control request: unsupported protocol version {obj.get('v')!r} (expected {PROTOCOL_VERSION})")
    cmd = obj.get("cmd")
    if not isinstance(cmd, str) or cmd not in ARGS_MODELS:
        raise WireError(f"control request: unknown command {cmd!r} (expected one of {', '.join(COMMANDS)})")
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise WireError(f"control request: args must be an object, got {type(args).__name__}")
    try:
        parsed = ARGS_MODELS[cmd].model_validate(args)
    except ValidationError as e:
        raise WireError(f"control request {cmd}: {_first_error(e, 'args')}") from None
    try:
        return ControlRequest.model_validate({**obj, "args": parsed})
    except ValidationError as e:
        raise WireError(f"control request: {_first_error(e, 'request')}") from None


def encode_request(cmd: str, args: dict[str, Any] | None = None, *, user: str) -> bytes:
    """Build (and validate, so a bad command fails before it is sent) a request frame."""
    data = json.dumps({"v": PROTOCOL_VERSION, "cmd": cmd, "args": args or {}, "user": user},
                      ensure_ascii=False, allow_nan=False).encode("utf-8")
    decode_request(data)
    return data


def encode_reply(ok: bool, result: dict[str, Any] | None = None, error: str | None = None) -> bytes:
    """One reply frame. A result that is not JSON data (or too big) becomes an ``ok=False`` reply
    saying so, rather than an exception: the REP socket must always answer."""
    msg = {"v": PROTOCOL_VERSION, "ok": bool(ok), "error": error, "result": result or {}}
    try:
        data = json.dumps(msg, ensure_ascii=False, allow_nan=False, sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as e:
        return encode_reply(False, None, f"internal error: reply is not JSON data ({e})")
    if len(data) > MAX_MESSAGE_BYTES:
        return encode_reply(False, None, f"internal error: reply of {len(data)} bytes exceeds the limit")
    return data


def decode_reply(data: bytes) -> ControlReply:
    """Parse a reply frame (client side). Raises WireError on anything malformed."""
    obj = _loads_limited(data, "control reply")
    if not isinstance(obj, dict):
        raise WireError(f"control reply must be a JSON object, got {type(obj).__name__}")
    try:
        return ControlReply.model_validate(obj)
    except ValidationError as e:
        raise WireError(f"control reply: {_first_error(e, 'reply')}") from None
