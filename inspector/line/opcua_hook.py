"""Supervisor hook for the OPC UA server: posts state and results to the server thread (never
waits on it) and runs OPC UA method calls through the control channel's ``ControlServer.execute``
(same validation, handler and ``control`` audit record; the OPC UA user is the caller)."""

from __future__ import annotations

import logging
import queue
import time
from typing import TYPE_CHECKING, Any

from inspector.control.protocol import decode_request, encode_request
from inspector.control.server import ControlServer
from inspector.errors import InspectorError, WireError
from inspector.line import state as run_state
from inspector.line.opcua_server import OpcUaServer
from inspector.line.settings import opcua_config

if TYPE_CHECKING:
    from inspector.daemon.supervisor import Supervisor

log = logging.getLogger("inspector.opcua")


class OpcUaHook:
    def __init__(self, sup: Supervisor):
        self.cfg = opcua_config(sup.cfg)
        self.server = OpcUaServer(self.cfg)
        self.server.start()
        self.control: ControlServer | None = None
        self._next_state = 0.0
        self._rejects = 0

    def on_published(self, sup: Supervisor, headers: list[dict[str, Any]], attachments: list[Any]) -> None:
        self._rejects += any(h["verdict"] == "reject" for h in headers)
        self.server.post("result", headers)

    def tick(self, sup: Supervisor) -> None:
        if self.server.failed():
            raise InspectorError(self.server.failed())
        now = time.monotonic()
        if now >= self._next_state:
            snap = run_state.snapshot(sup)
            snap["machine_state"] = run_state.machine_state(snap)
            snap["rejects"] = self._rejects
            self.server.post("state", snap)
            self._next_state = now + 0.5
        while True:
            try:
                cmd, args, caller, fut = self.server.calls.get_nowait()
            except queue.Empty:
                break
            fut.set_result(self._execute(sup, cmd, args, caller))

    def _execute(self, sup: Supervisor, cmd: str, args: dict[str, Any], caller: dict[str, Any]) -> tuple:
        m = sup.metrics
        control = self._control(sup)
        name = caller["user"] or "anonymous"
        try:
            req = decode_request(encode_request(cmd, args, user=f"opcua:{name}"[:200]))
        except WireError as e:
            m.bad_input.labels(kind="opcua_malformed").inc()
            m.opcua_calls.labels(method=cmd, outcome="invalid").inc()
            log.warning("OPC UA %s: invalid arguments: %s", cmd, e)
            return False, None, str(e), "BadInvalidArgument"
        if control is None:
            m.opcua_calls.labels(method=cmd, outcome="refused").inc()
            return False, None, "control channel not running", "BadInvalidState"
        deny = None
        if caller["anonymous"] and not self.cfg.allow_anonymous_control:
            deny = "anonymous OPC UA sessions may not control the daemon (log in, or set opcua.allow_anonymous_control)"
        peer = {"channel": "opcua", "opcua_user": name}
        ok, result, error = control.execute(req, peer, deny=deny)
        m.opcua_calls.labels(method=cmd, outcome="ok" if ok else "refused").inc()
        status = "Good" if ok else "BadUserAccessDenied" if deny else "BadInvalidState"
        return ok, result, error, status

    def _control(self, sup: Supervisor) -> ControlServer | None:
        if self.control is None:
            for hook in sup.hooks:
                if isinstance(getattr(hook, "server", None), ControlServer):
                    self.control = hook.server
        return self.control

    def close(self) -> None:
        while True:  # callers waiting on a future get an answer rather than a timeout
            try:
                *_, fut = self.server.calls.get_nowait()
            except queue.Empty:
                break
            fut.set_result((False, None, "daemon stopping", "BadShutdown"))
        self.server.stop()
