"""Acknowledged reject delivery: the daemon's ROUTER socket towards the line controller(s).

The :class:`RejectChannel` runs its socket in its own thread, so resends and deadlines keep their
timing whatever the supervisor's main loop is doing, and acknowledgement latency is measured when
the ack arrives, not when the main loop next looks. The supervisor side (:meth:`issue`, called from
``on_published``) hands commands over a queue plus an inproc wake-up socket and never blocks;
outcomes (acknowledged, deadline missed, controller seen/gone, bad input) come back over another
queue that the hook drains into the audit trail, the metrics, the log and the PUB alarm topic.

Every issued command ends exactly once: acknowledged (``require: any`` — one controller's ack;
``all`` — every controller connected when it was issued) or missed its deadline (an alarm). On
close, pending commands are still resent until their deadlines, then alarmed: none is dropped.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import zmq

from inspector.errors import InspectorError, WireError
from inspector.line import protocol
from inspector.line.settings import LineConfig
from inspector.transport.security import SecurityConfig, require_secure_for_tcp, secure_server

log = logging.getLogger("inspector.line")
_wake_ids = itertools.count()


@dataclass
class Pending:
    seq: int
    msg: dict[str, Any]
    issued: float            # monotonic
    deadline: float          # monotonic
    required: set[bytes]     # controllers that must ack (empty: any one)
    acked_by: set[bytes] = field(default_factory=set)
    attempts: int = 0
    next_send: float = 0.0
    sent_to: set[bytes] = field(default_factory=set)


@dataclass
class Controller:
    name: str
    last_seen: float


class RejectChannel:
    """Owns the ROUTER socket (bound here, in the caller's thread: a bind error is raised at once)."""

    def __init__(self, ctx: zmq.Context, lcfg: LineConfig, security: SecurityConfig | None, run_id: str):
        assert lcfg.reject_endpoint is not None
        self.cfg = lcfg
        self.run_id = run_id
        self.ctx = ctx
        require_secure_for_tcp(lcfg.reject_endpoint, security)
        self.router = ctx.socket(zmq.ROUTER)
        try:
            self.router.setsockopt(zmq.LINGER, 0)
            self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)   # an unknown peer raises instead of dropping
            self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)    # a restarted controller takes its name back
            self.router.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_BYTES * 4)
            self.router.setsockopt(zmq.SNDHWM, 10_000)
            secure_server(self.router, security, ctx)
            self.router.bind(lcfg.reject_endpoint)
        except zmq.ZMQError as e:
            self.router.close(0)
            raise InspectorError(f"line.reject_endpoint: cannot bind {lcfg.reject_endpoint}: {e}") from None
        except BaseException:
            self.router.close(0)
            raise
        self.endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        wake = f"inproc://inspector-line-wake-{next(_wake_ids)}"
        self._wake_rx = ctx.socket(zmq.PULL)
        self._wake_rx.bind(wake)
        self._wake_tx = ctx.socket(zmq.PUSH)
        self._wake_tx.setsockopt(zmq.LINGER, 0)
        self._wake_tx.connect(wake)
        self._inbox: queue.SimpleQueue[Pending] = queue.SimpleQueue()
        self.outcomes: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self._seq = 0
        self._pending: dict[int, Pending] = {}
        self._settled: OrderedDict[int, None] = OrderedDict()  # recent seqs: duplicate acks are expected
        self._controllers: dict[bytes, Controller] = {}
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inspector-line-reject", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ supervisor side
    def issue(self, frame: dict[str, Any], decisions: list[dict[str, Any]]) -> int:
        """Queue one command for a frame's actionable decisions; returns its sequence number."""
        self._seq += 1
        now, wall = time.monotonic(), time.time()
        dl = self.cfg.deadline_ms / 1000.0
        msg = {"seq": self._seq, "run_id": self.run_id, "frame_id": frame["frame_id"], "camera": frame.get("camera"),
               "acquired_at": frame.get("acquired_at"), "issued_at": wall, "deadline": wall + dl,
               "decisions": decisions}
        self._inbox.put(Pending(self._seq, msg, now, now + dl, set()))
        try:
            self._wake_tx.send(b"", zmq.NOBLOCK)
        except zmq.Again:  # the thread is already awake with a full wake queue
            pass
        return self._seq

    def close(self) -> None:
        """Stop accepting; let pending commands run to their ack or deadline; join the thread."""
        self._closing.set()
        try:
            self._wake_tx.send(b"", zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        self._thread.join(self.cfg.deadline_ms / 1000.0 + 5.0)
        self._wake_tx.close(0)

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self._wake_rx, zmq.POLLIN)
        try:
            while True:
                now = time.monotonic()
                due = [p.deadline for p in self._pending.values()] + [p.next_send for p in self._pending.values()]
                timeout = 200.0 if not due else max(0.0, min(200.0, (min(due) - now) * 1000.0))
                for sock, _ in poller.poll(timeout):
                    if sock is self._wake_rx:
                        while self._wake_rx.poll(0):
                            self._wake_rx.recv()
                    else:
                        self._read()
                self._take_new()
                self._service(time.monotonic())
                if self._closing.is_set() and not self._pending and self._inbox.empty():
                    break
        except Exception as e:  # never silent: whatever was pending is alarmed
            log.exception("reject channel thread failed")
            for p in list(self._pending.values()):
                self._alarm(p, time.monotonic(), f"channel failed: {type(e).__name__}: {e}")
        finally:
            self.router.close(0)
            self._wake_rx.close(0)

    def _take_new(self) -> None:
        while True:
            try:
                p = self._inbox.get_nowait()
            except queue.Empty:
                return
            if self.cfg.require == "all":
                p.required = set(self._controllers)
            self._pending[p.seq] = p
            self._send(p, time.monotonic())

    def _service(self, now: float) -> None:
        timeout = self.cfg.controller_timeout_ms / 1000.0
        for ident, c in list(self._controllers.items()):
            if now - c.last_seen > timeout:
                self._gone(ident, "silent")
        for p in list(self._pending.values()):
            if now >= p.deadline:
                self._alarm(p, now, "deadline")
            elif now >= p.next_send:
                self._send(p, now)

    def _send(self, p: Pending, now: float) -> None:
        targets = [c for c in self._controllers if c not in p.acked_by]
        if targets:
            p.attempts += 1
            data = protocol.encode("reject", **p.msg, attempt=p.attempts)
            for ident in targets:
                try:
                    self.router.send_multipart([ident, data], zmq.NOBLOCK)
                    p.sent_to.add(ident)
                except zmq.Again:  # its queue is full: it is not keeping up; try at the next resend
                    pass
                except zmq.ZMQError as e:  # EHOSTUNREACH: disconnected since we last heard from it
                    self._gone(ident, f"unreachable ({e})")
            if p.attempts > 1:
                self.outcomes.put(("resend", {"seq": p.seq}))
        p.next_send = now + self.cfg.resend_ms / 1000.0

    def _read(self) -> None:
        while True:
            try:
                parts = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            now = time.monotonic()
            ident = parts[0]
            if len(parts) != 2:
                self._bad(ident, f"expected one frame, got {len(parts) - 1}")
                continue
            try:
                msg = protocol.decode_from_controller(parts[1])
            except WireError as e:
                self._bad(ident, str(e))
                continue
            c = self._controllers.get(ident)
            if c is None:
                c = self._controllers[ident] = Controller(str(msg.get("controller") or _name(ident)), now)
                self.outcomes.put(("controller", {"controller": c.name, "state": "connected"}))
                for p in self._pending.values():  # connected while commands wait: send them now
                    p.next_send = now
            c.last_seen = now
            if msg["kind"] == "ack":
                self._ack(ident, c, msg, now)

    def _ack(self, ident: bytes, c: Controller, msg: dict[str, Any], now: float) -> None:
        seq = msg["seq"]
        p = self._pending.get(seq)
        if p is None:
            if seq not in self._settled and (msg.get("run_id") in (None, self.run_id)):
                self._bad(ident, f"ack for unknown sequence number {seq}")
            return
        if msg.get("run_id") not in (None, self.run_id):
            self._bad(ident, f"ack for another run {msg.get('run_id')!r}")
            return
        p.acked_by.add(ident)
        if p.required and not p.required <= p.acked_by:
            return
        self._settle(p)
        self.outcomes.put(("ack", {
            "seq": p.seq, "frame_id": p.msg["frame_id"], "controller": c.name,
            "controllers": sorted(self._controllers[i].name for i in p.acked_by if i in self._controllers),
            "latency_ms": round((now - p.issued) * 1000.0, 3), "attempts": p.attempts}))

    def _alarm(self, p: Pending, now: float, reason: str) -> None:
        self._settle(p)
        missing = sorted(self._controllers[i].name if i in self._controllers else _name(i)
                         for i in (p.required or set(self._controllers)) - p.acked_by)
        self.outcomes.put(("alarm", {
            "alarm": "reject_deadline", "reason": reason, "seq": p.seq, "frame_id": p.msg["frame_id"],
            "camera": p.msg.get("camera"), "deadline": p.msg["deadline"], "attempts": p.attempts,
            "require": self.cfg.require, "controllers_connected": len(self._controllers),
            "acked_by": sorted(_name(i) for i in p.acked_by), "missing": missing,
            "decisions": p.msg["decisions"], "late_ms": round((now - p.deadline) * 1000.0, 3)}))

    def _settle(self, p: Pending) -> None:
        self._pending.pop(p.seq, None)
        self._settled[p.seq] = None
        while len(self._settled) > 100_000:
            self._settled.popitem(last=False)

    def _gone(self, ident: bytes, why: str) -> None:
        c = self._controllers.pop(ident, None)
        if c is not None:
            self.outcomes.put(("controller", {"controller": c.name, "state": "gone", "reason": why}))

    def _bad(self, ident: bytes, reason: str) -> None:
        self.outcomes.put(("bad_input", {"controller": _name(ident), "reason": reason}))

    # ------------------------------------------------------------------ introspection (tests, status)
    def controllers(self) -> list[str]:
        return sorted(c.name for c in list(self._controllers.values()))

    def pending(self) -> int:
        return len(self._pending) + self._inbox.qsize()


def _name(ident: bytes) -> str:
    try:
        s = ident.decode("ascii")
        if s.isprintable() and s:
            return s
    except UnicodeDecodeError:
        pass
    return ident.hex()
