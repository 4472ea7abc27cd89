"""OPC UA server (asyncua) in its own thread with its own event loop, modelled on the concepts of
OPC 40100-1 (Machine Vision): a ``VisionSystem`` object with its state, the lot / recipe / expected
excipient, the last result, counters, a ``ResultReadyEventType`` event per decision, and the methods
``SetLot``, ``Pause`` and ``Resume``.

The supervisor never waits on this thread: it hands updates over with :meth:`OpcUaServer.post`
(``loop.call_soon_threadsafe`` into a bounded asyncio queue). Method calls travel the other way:
the method coroutine puts a request on :attr:`OpcUaServer.calls` (a thread-safe queue) and awaits a
``concurrent.futures.Future`` that the supervisor's hook completes in its own thread after running
the request through the control channel's validation, handler and audit.

Access: every session may browse, read and subscribe (the address space is read-only: writes and
node management are refused); the methods are refused for anonymous sessions unless
``opcua.allow_anonymous_control``. Users come from ``opcua.users_file`` (PBKDF2-SHA256 hashes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import hashlib
import hmac
import json
import logging
import queue
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from asyncua import Server, ua
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole

from inspector.errors import ConfigError, InspectorError
from inspector.line.settings import OpcUaConfig

log = logging.getLogger("inspector.opcua")

_CURRENT_USER: contextvars.ContextVar[User | None] = contextvars.ContextVar("opcua_user", default=None)
_READ_ONLY = {ua.NodeId(t) for t in USER_TYPES} - {ua.NodeId(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary)}
STATES = ("Preoperational", "Operational", "Halted", "Error")
COUNTERS = ("Acquired", "Inspected", "Dropped", "Lost", "Rejects")
METHOD_TIMEOUT_S = 10.0
APPLICATION_URI = "urn:inspector:server"


def hash_password(password: str, *, salt: bytes, iterations: int = 200_000) -> str:
    """The users_file format: ``pbkdf2_sha256$ITERATIONS$SALT_HEX$HASH_HEX``."""
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def load_users(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"opcua.users_file: cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"opcua.users_file: {path} must map user names to pbkdf2_sha256$… hashes")
    for name, h in data.items():
        parts = h.split("$")
        if len(parts) != 4 or parts[0] != "pbkdf2_sha256" or not parts[1].isdigit():
            raise ConfigError(f"opcua.users_file: user {name!r}: expected pbkdf2_sha256$ITERATIONS$SALT$HASH")
    return data


def _host_port(endpoint: str) -> tuple[str, int]:
    rest = endpoint[len("opc.tcp://"):].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"opcua.endpoint: expected opc.tcp://HOST:PORT, got {endpoint!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class _Users:
    """asyncua user manager: anonymous sessions are allowed (read-only); a user name must match."""

    def __init__(self, users: dict[str, str]):
        self.users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is None:
            return User(role=UserRole.Anonymous)
        stored = self.users.get(username)
        if stored is None or password is None:
            log.warning("OPC UA: refused login for user %r", username)
            return None
        _, iterations, salt, _digest = stored.split("$")
        pw = password.decode() if isinstance(password, bytes) else str(password)
        if not hmac.compare_digest(hash_password(pw, salt=bytes.fromhex(salt), iterations=int(iterations)), stored):
            log.warning("OPC UA: wrong password for user %r", username)
            return None
        return User(role=UserRole.User, name=username)


class _Rules(PermissionRuleset):
    """Read-only address space for everyone; remembers the session's user for the method call that
    follows in the same task (asyncua calls this just before dispatching each request)."""

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        _CURRENT_USER.set(user)
        return action_type_id in _READ_ONLY


class OpcUaServer:
    def __init__(self, ocfg: OpcUaConfig):
        self.cfg = ocfg
        self.users = load_users(ocfg.users_file)
        # asyncua logs every request (and its standard nodeset import) at INFO: keep the journal readable
        logging.getLogger("asyncua").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
        #: method calls for the supervisor: (cmd, args, caller, future)
        self.calls: queue.SimpleQueue[tuple[str, dict[str, Any], dict[str, Any], concurrent.futures.Future]] = \
            queue.SimpleQueue()
        self.dropped_updates = 0
        self._loop = asyncio.new_event_loop()
        self._updates: asyncio.Queue[tuple[str, Any]] | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._main, name="inspector-opcua", daemon=True)

    # ------------------------------------------------------------------ supervisor side
    def start(self) -> None:
        """Check that the endpoint's port is free (one-line error naming the key otherwise), then start
        the server thread without waiting for it (asyncua builds its address space in seconds)."""
        host, port = _host_port(self.cfg.endpoint)
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
        except OSError as e:
            raise InspectorError(f"opcua.endpoint: cannot listen on {self.cfg.endpoint}: {e.strerror or e}") from None
        self._thread.start()

    def failed(self) -> str | None:
        """The one-line reason the server thread failed to start or died, else None."""
        return self._error

    @property
    def running(self) -> bool:
        return self._ready.is_set() and self._error is None and self._thread.is_alive()

    def post(self, kind: str, data: Any) -> None:
        """Hand an update to the server thread; never blocks (drops and counts when it lags far behind)."""
        if self._updates is None or self._loop.is_closed():
            return
        try:
            self._loop.call_soon_threadsafe(self._enqueue, kind, data)
        except RuntimeError:  # loop closed while stopping
            pass

    def stop(self) -> None:
        if self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass
        self._thread.join(10)

    # ------------------------------------------------------------------ server thread
    def _enqueue(self, kind: str, data: Any) -> None:
        assert self._updates is not None
        try:
            self._updates.put_nowait((kind, data))
        except asyncio.QueueFull:
            self.dropped_updates += 1

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except Exception as e:
            self._error = self._error or f"opcua: server failed: {type(e).__name__}: {e}"
            log.exception("OPC UA server thread failed")
        finally:
            self._ready.set()
            self._loop.close()

    async def _serve(self) -> None:
        self._updates = asyncio.Queue(maxsize=10_000)
        self._stop = asyncio.Event()
        server = await self._build()
        try:
            await server.start()
        except OSError as e:
            self._error = f"opcua.endpoint: cannot listen on {self.cfg.endpoint}: {e.strerror or e}"
            return
        log.info("OPC UA server on %s (security %s, anonymous control %s)", self.cfg.endpoint,
                 ", ".join(self.cfg.security), "allowed" if self.cfg.allow_anonymous_control else "refused")
        self._ready.set()
        pump = asyncio.create_task(self._pump())
        try:
            await self._stop.wait()
        finally:
            pump.cancel()
            await server.stop()

    async def _build(self) -> Server:
        server = Server(user_manager=_Users(self.users))
        await server.init()
        server.set_endpoint(self.cfg.endpoint)
        server.set_server_name("inspector vision system")
        await server.set_application_uri(APPLICATION_URI)  # must match the certificate's subjectAltName URI
        policies = {"None": ua.SecurityPolicyType.NoSecurity,
                    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
                    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt}
        server.set_security_policy([policies[p] for p in self.cfg.security], permission_ruleset=_Rules())
        if self.cfg.certificate and self.cfg.private_key:
            await server.load_certificate(str(Path(self.cfg.certificate).expanduser()))
            await server.load_private_key(str(Path(self.cfg.private_key).expanduser()))
        server.set_security_IDs(["Anonymous", "Username"])
        idx = await server.register_namespace(self.cfg.namespace)
        self.idx = idx
        vs = await server.nodes.objects.add_object(idx, "VisionSystem")
        await vs.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
        self.nodes: dict[str, Any] = {}

        async def var(parent: Any, name: str, value: Any, vtype: ua.VariantType) -> None:
            self.nodes[name] = await parent.add_variable(idx, name, ua.Variant(value, vtype))

        await var(vs, "SystemState", "Preoperational", ua.VariantType.String)
        await var(vs, "Ready", False, ua.VariantType.Boolean)
        await var(vs, "NotReadyReasons", "", ua.VariantType.String)
        await var(vs, "RunId", "", ua.VariantType.String)
        await var(vs, "Lot", "", ua.VariantType.String)
        await var(vs, "Recipe", "", ua.VariantType.String)
        await var(vs, "ExpectedExcipient", "", ua.VariantType.String)
        last = await vs.add_object(idx, "LastResult")
        await var(last, "FrameId", -1, ua.VariantType.Int64)
        await var(last, "Time", datetime.fromtimestamp(0, timezone.utc), ua.VariantType.DateTime)
        await var(last, "Inspection", "", ua.VariantType.String)
        await var(last, "Verdict", "", ua.VariantType.String)
        await var(last, "ScoresJson", "{}", ua.VariantType.String)
        await var(last, "ModelVersion", "", ua.VariantType.String)
        counters = await vs.add_object(idx, "Counters")
        for name in COUNTERS:
            await var(counters, name, 0, ua.VariantType.UInt64)

        etype = await server.create_custom_event_type(idx, "ResultReadyEventType", ua.ObjectIds.BaseEventType, [
            ("FrameId", ua.VariantType.Int64), ("Inspection", ua.VariantType.String),
            ("Verdict", ua.VariantType.String), ("ScoresJson", ua.VariantType.String),
            ("ModelVersion", ua.VariantType.String), ("ResultTime", ua.VariantType.DateTime),
            ("Lot", ua.VariantType.String)])
        self.event = await server.get_event_generator(etype, vs)

        s = ua.VariantType.String
        await vs.add_method(idx, "SetLot", self._method("set_lot", ("lot", "recipe")), [s, s], [s])
        await vs.add_method(idx, "Pause", self._method("pause", ()), [], [s])
        await vs.add_method(idx, "Resume", self._method("resume", ()), [], [s])
        return server

    def _method(self, cmd: str, names: tuple[str, ...]) -> Any:
        async def call(parent: ua.NodeId, *args: Any) -> Any:
            user = _CURRENT_USER.get()
            values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
            cmd_args = {n: (v if v != "" else None) for n, v in zip(names, values)}
            caller = {"user": user.name if user is not None and user.name else None,
                      "anonymous": user is None or user.role == UserRole.Anonymous}
            fut: concurrent.futures.Future = concurrent.futures.Future()
            self.calls.put((cmd, cmd_args, caller, fut))
            try:
                ok, result, error, status = await asyncio.wait_for(asyncio.wrap_future(fut), METHOD_TIMEOUT_S)
            except asyncio.TimeoutError:
                return ua.StatusCode(ua.StatusCodes.BadTimeout)
            if not ok:
                log.warning("OPC UA %s refused: %s", cmd, error)
                return ua.StatusCode(getattr(ua.StatusCodes, status))
            return [ua.Variant(json.dumps(result, default=str), ua.VariantType.String)]

        return call

    async def _pump(self) -> None:
        assert self._updates is not None
        while True:
            kind, data = await self._updates.get()
            try:
                if kind == "state":
                    await self._state(data)
                elif kind == "result":
                    await self._result(data)
            except Exception:  # one bad update must not stop the feed
                log.exception("OPC UA: could not apply a %s update", kind)

    async def _write(self, name: str, value: Any, vtype: ua.VariantType) -> None:
        await self.nodes[name].write_value(ua.Variant(value, vtype))

    async def _state(self, snap: dict[str, Any]) -> None:
        S = ua.VariantType.String
        await self._write("SystemState", snap["machine_state"], S)
        await self._write("Ready", bool(snap["ready"]), ua.VariantType.Boolean)
        await self._write("NotReadyReasons", ", ".join(snap["reasons"]), S)
        await self._write("RunId", snap["run_id"], S)
        for key, name in (("lot", "Lot"), ("recipe", "Recipe"), ("expected_excipient", "ExpectedExcipient")):
            await self._write(name, str(snap.get(key) or ""), S)
        c = snap["counts"]
        for name, value in (("Acquired", c.get("acquired", 0)), ("Inspected", c.get("inspected", 0)),
                            ("Dropped", c.get("dropped", 0)), ("Lost", c.get("lost", 0)),
                            ("Rejects", snap.get("rejects", 0))):
            await self._write(name, int(value), ua.VariantType.UInt64)

    async def _result(self, headers: list[dict[str, Any]]) -> None:
        for h in headers:
            when = datetime.fromtimestamp(float(h.get("acquired_at") or 0.0), timezone.utc)
            scores = json.dumps(h.get("scores") or {}, default=str)
            version = str((h.get("model") or {}).get("version") or "")
            await self._write("FrameId", int(h["frame_id"]), ua.VariantType.Int64)
            await self._write("Time", when, ua.VariantType.DateTime)
            await self._write("Inspection", h["inspection"], ua.VariantType.String)
            await self._write("Verdict", h["verdict"], ua.VariantType.String)
            await self._write("ScoresJson", scores, ua.VariantType.String)
            await self._write("ModelVersion", version, ua.VariantType.String)
            ev = self.event.event
            ev.FrameId, ev.Inspection, ev.Verdict = int(h["frame_id"]), h["inspection"], h["verdict"]
            ev.ScoresJson, ev.ModelVersion, ev.ResultTime = scores, version, when
            ev.Lot = str((h.get("context") or {}).get("lot") or "")
            ev.Severity = 500 if h["verdict"] == "reject" else 100
            await self.event.trigger(message=f"frame {h['frame_id']} {h['inspection']} {h['verdict']}")
