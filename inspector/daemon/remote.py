"""Remote inspection workers: the supervisor's side.

``transport.remote_listen: tcp://ADDR:PORT`` opens, besides the local ipc sockets, a ROUTER for
frames (PORT, in the acquisition process), a PULL for results and events (PORT+1) and a PUB for
commands (PORT+2), all CURVE servers with the ZAP allow-list when keys are configured (required
off loopback). A remote worker (``inspector worker --connect tcp://HOST:PORT``) speaks the same
typed messages as a local one and says it is alive every second (``worker_heartbeat``); one that
is silent for ``transport.remote_timeout_s`` is gone: the frame it held ends
``lost (remote_worker_gone)``, exactly like a local worker that died.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import zmq

from inspector.transport.security import require_secure_for_tcp, secure_server, security_config

if TYPE_CHECKING:
    from inspector.daemon.supervisor import Supervisor

log = logging.getLogger("inspector.remote")

PREFIX = "r-"  # remote worker names start with this (local ones are w<index>-<generation>)


class RemoteWorkers:
    def __init__(self, sup: Supervisor, endpoints: tuple[str, str, str]):
        sec = security_config(sup.cfg)
        for ep in endpoints:
            require_secure_for_tcp(ep, sec)
        self.timeout_s = sup.cfg.transport.remote_timeout_s
        self.events = sup.ctx.socket(zmq.PULL)
        self.events.setsockopt(zmq.MAXMSGSIZE, sup.cfg.transport.max_message_bytes)
        self.commands = sup.ctx.socket(zmq.PUB)
        self.commands.setsockopt(zmq.LINGER, 0)
        for sock, ep, key in ((self.events, endpoints[1], "events"), (self.commands, endpoints[2], "commands")):
            secure_server(sock, sec, sup.ctx)
            try:
                sock.bind(ep)
            except zmq.ZMQError as e:
                from inspector.errors import ConfigError

                raise ConfigError(f"transport.remote_listen: cannot bind {ep} ({key}): {e.strerror}") from None
        self.seen: dict[str, float] = {}  # remote worker -> last time heard (monotonic)
        self.gone: set[str] = set()
        log.info("remote workers: frames %s, events %s, commands %s%s", *endpoints,
                 " (CURVE)" if sec.enabled else "")

    @staticmethod
    def is_remote(worker: str) -> bool:
        return worker.startswith(PREFIX)

    def heard(self, worker: str) -> bool:
        """Record a sign of life; False if that worker was already declared gone (it must re-register)."""
        if worker in self.gone:
            return False
        if worker not in self.seen:
            log.info("remote worker %s connected", worker)
        self.seen[worker] = time.monotonic()
        return True

    def expired(self) -> list[str]:
        now = time.monotonic()
        out = [w for w, t in self.seen.items() if now - t > self.timeout_s]
        for w in out:
            del self.seen[w]
            self.gone.add(w)
        return out

    def close(self) -> None:
        self.events.close(0)
        self.commands.close(0)
