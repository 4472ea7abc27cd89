"""Reference line controller: a PLC stand-in on the reject channel, for demos, tests and benchmarks.

Connects a DEALER (routing id = ``name``) to the daemon's ROUTER, says hello every second (the
daemon's liveness check), ejects each ``(run_id, seq)`` once, acknowledges every copy it receives —
after ``delay_ms``, or never — and writes one JSON line per event to ``out``.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from typing import IO, Any

import zmq

from inspector.errors import WireError
from inspector.line import protocol
from inspector.transport.security import SecurityConfig, require_secure_for_tcp, secure_client

log = logging.getLogger("inspector.line.controller")

HELLO_EVERY_S = 1.0


def run_controller(endpoint: str, *, name: str = "plc-1", delay_ms: float = 0.0, never_ack: bool = False,
                   security: SecurityConfig | None = None, out: IO[str] | None = None, count: int = 0,
                   duration: float | None = None, stop: Any = None) -> int:
    """Serve until ``count`` commands were handled, ``duration`` elapsed, ``stop.is_set()``, or Ctrl-C.
    Returns the number of distinct commands ejected."""
    require_secure_for_tcp(endpoint, security)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, name.encode())
    sock.setsockopt(zmq.LINGER, 0)
    secure_client(sock, security, None)
    sock.connect(endpoint)
    seen: set[tuple[str, int]] = set()
    acks: list[tuple[float, int, bytes]] = []  # (due, seq, data)
    end = None if duration is None else time.monotonic() + duration
    next_hello = 0.0
    ejected = 0

    def emit(event: str, **fields: Any) -> None:
        if out is not None:
            out.write(json.dumps({"event": event, "controller": name, "t": time.time(), **fields}) + "\n")
            out.flush()

    emit("start", endpoint=endpoint, delay_ms=delay_ms, never_ack=never_ack)
    log.info("line controller %s on %s (ack %s)", name, endpoint,
             "never" if never_ack else f"after {delay_ms:g} ms" if delay_ms else "at once")
    try:
        while (not count or ejected < count) and (end is None or time.monotonic() < end) \
                and not (stop is not None and stop.is_set()):
            now = time.monotonic()
            if now >= next_hello:
                _send(sock, protocol.encode("hello", controller=name))
                next_hello = now + HELLO_EVERY_S
            while acks and acks[0][0] <= now:
                _, seq, data = heapq.heappop(acks)
                if _send(sock, data):
                    emit("ack", seq=seq)
            wait = min(next_hello, acks[0][0] if acks else next_hello) - time.monotonic()
            if not sock.poll(max(0, int(wait * 1000)) if wait > 0 else 0):
                continue
            raw = sock.recv()
            try:
                msg = protocol.decode_from_daemon(raw)
            except WireError as e:
                log.warning("ignoring a malformed message: %s", e)
                emit("malformed", error=str(e))
                continue
            key = (str(msg.get("run_id")), msg["seq"])
            duplicate = key in seen
            if not duplicate:
                seen.add(key)
                ejected += 1
                log.info("eject frame %d (seq %d, attempt %d)", msg["frame_id"], msg["seq"], msg["attempt"])
            emit("reject", seq=msg["seq"], frame_id=msg["frame_id"], attempt=msg["attempt"], duplicate=duplicate,
                 run_id=msg.get("run_id"))
            if never_ack:
                continue
            ack = protocol.encode("ack", seq=msg["seq"], frame_id=msg["frame_id"], run_id=msg.get("run_id"))
            if delay_ms > 0:
                heapq.heappush(acks, (time.monotonic() + delay_ms / 1000.0, msg["seq"], ack))
            else:
                if _send(sock, ack):
                    emit("ack", seq=msg["seq"])
    except KeyboardInterrupt:
        pass
    finally:
        emit("stop", ejected=ejected)
        sock.close(0)
        ctx.term()
    return ejected


def _send(sock: zmq.Socket, data: bytes) -> bool:
    """Non-blocking send; False while the daemon is not connected (the next hello/resend retries)."""
    try:
        sock.send(data, zmq.NOBLOCK)
        return True
    except zmq.Again:
        return False
