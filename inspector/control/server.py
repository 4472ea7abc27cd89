"""The control channel's server side: a REP socket the supervisor polls.

The supervisor registers :attr:`ControlServer.socket` in its ``zmq.Poller`` and calls
:meth:`ControlServer.handle_one` when it is readable. Every received message gets exactly one
reply (so the REP state machine never wedges), bad messages are counted through ``on_bad_message``,
and every command that reached the handler is audited before its reply is sent.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol

import zmq

from inspector.control.protocol import MAX_MESSAGE_BYTES, ControlRequest, decode_request, encode_reply
from inspector.errors import ConfigError, InspectorError, WireError
from inspector.transport.security import SecurityConfig, require_secure_for_tcp, secure_server

log = logging.getLogger(__name__)

#: hard per-message cap enforced by libzmq (bigger messages drop the connection without reaching us);
#: messages between MAX_MESSAGE_BYTES and this are answered with an error and counted
HARD_LIMIT_BYTES = 4 * MAX_MESSAGE_BYTES


class AuditSink(Protocol):
    """What the server needs from the audit store (``inspector.audit.store.AuditStore`` fits)."""

    def append(self, kind: str, record: dict[str, Any]) -> int: ...


class ControlServer:
    """REP server for control commands.

    ``handler(request) -> dict`` performs the command and returns the reply's ``result``; it raises
    an :class:`InspectorError` to refuse (the reply says ``ok: false`` with its message).
    ``audit``: every decoded command (accepted or refused) is appended as a ``control`` record,
    with the claimed ``user`` and, under CURVE, the authenticated client key.
    ``on_bad_message(kind)``: called with ``"control_oversized"`` / ``"control_malformed"`` for
    every rejected message (wire it to ``inspector_bad_input_total{kind}``).
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, handler: Callable[[ControlRequest], dict],
                 security: SecurityConfig | None = None, *, audit: AuditSink | None = None,
                 on_bad_message: Callable[[str], None] | None = None):
        require_secure_for_tcp(endpoint, security)
        self.endpoint = endpoint
        self._handler = handler
        self._audit = audit
        self._on_bad = on_bad_message
        self.socket: zmq.Socket = ctx.socket(zmq.REP)
        try:
            self.socket.setsockopt(zmq.LINGER, 0)
            self.socket.setsockopt(zmq.MAXMSGSIZE, HARD_LIMIT_BYTES)
            secure_server(self.socket, security, ctx)
            self.socket.bind(endpoint)
        except zmq.ZMQError as e:
            self.socket.close(linger=0)
            raise ConfigError(f"control.endpoint: cannot bind {endpoint}: {e.strerror}") from None
        except BaseException:
            self.socket.close(linger=0)
            raise
        if endpoint.endswith(":0") or endpoint.endswith(":*"):
            self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def handle_one(self) -> None:
        """Receive one message if one is waiting (non-blocking) and answer it."""
        try:
            frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        reply = self._reply_for(frames)
        try:
            self.socket.send(reply, zmq.NOBLOCK)
        except zmq.ZMQError as e:  # peer gone: REP drops the reply and is ready for the next request
            log.warning("control: could not send reply: %s", e)

    # ------------------------------------------------------------------------------------------
    def _bad(self, kind: str, reason: str) -> bytes:
        log.warning("control: rejected message (%s): %s", kind, reason)
        if self._on_bad is not None:
            try:
                self._on_bad(kind)
            except Exception:  # a metrics callback must never break the channel
                log.exception("control: on_bad_message callback failed")
        return encode_reply(False, None, reason)

    def _reply_for(self, frames: list[zmq.Frame]) -> bytes:
        if len(frames) != 1:
            return self._bad("control_malformed", f"expected one frame, got {len(frames)}")
        frame = frames[0]
        size = len(frame.buffer)
        if size > MAX_MESSAGE_BYTES:
            return self._bad("control_oversized", f"message of {size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
        try:
            req = decode_request(frame.bytes)
        except WireError as e:
            return self._bad("control_malformed", str(e))
        ok, result, error = self.execute(req, _peer(frame))
        return encode_reply(ok, result if ok else None, error)

    def execute(self, req: ControlRequest, peer: dict[str, str] | None = None, *,
                deny: str | None = None) -> tuple[bool, dict[str, Any] | None, str | None]:
        """Run one validated request through the handler and the audit: ``(ok, result, error)``.

        The one path for every control surface (this REP socket, the OPC UA methods): ``peer`` says
        who called (``peer_key``/``peer_address`` here, ``channel``/``opcua_user`` for OPC UA) and goes
        into the ``control`` audit record. ``deny``: refuse without calling the handler (e.g. an
        anonymous OPC UA session), still audited. Call it from the supervisor's thread only."""
        ok, result, error = True, None, None
        if deny is not None:
            ok, error = False, deny
        else:
            try:
                result = self._handler(req)
                if result is not None and not isinstance(result, dict):
                    raise TypeError(f"handler returned {type(result).__name__}, not a dict")
            except InspectorError as e:
                ok, error = False, str(e)
            except Exception as e:  # a handler bug must not take the channel (or the daemon) down
                log.exception("control: handler failed on %s", req.cmd)
                ok, error = False, f"internal error: {type(e).__name__}: {e}"
        if self._audit is not None:
            record = {**req.audit_payload(), **(peer or {}), "ok": ok, "error": error}
            try:
                self._audit.append("control", record)
            except Exception as e:
                log.error("control: audit write failed for %s: %s", req.cmd, e)
                return False, None, (f"{req.cmd} was {'applied' if ok else 'refused'} but could "
                                     f"not be audited: {e}")
        log.info("control: %s %s by %s -> %s", req.cmd, req.args.model_dump(), req.user, "ok" if ok else error)
        return ok, result if ok else None, error

    def close(self) -> None:
        self.socket.close(linger=0)


def _peer(frame: zmq.Frame) -> dict[str, str]:
    """The authenticated client key (CURVE, via ZAP User-Id) and peer address, when known."""
    out: dict[str, str] = {}
    for key, prop in (("peer_key", "User-Id"), ("peer_address", "Peer-Address")):
        try:
            v = frame.get(prop)
        except (zmq.ZMQError, AttributeError, UnicodeDecodeError):
            continue
        if v:
            out[key] = str(v)
    return out
