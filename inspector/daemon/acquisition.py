"""Acquisition process: camera thread → bounded queue → load-balanced dispatch to workers.

* The camera thread (:mod:`inspector.daemon.camera_thread`) reads, stamps and hands frames over.
* The broker loop owns the bounded queue. A worker asks for work with a ``Ready`` credit on its
  DEALER socket; the ROUTER sends the oldest queued frame to the worker that asked, so frames go to
  whichever worker is free, not round-robin. ``when_full`` decides: ``block`` (stop reading the
  camera: back-pressure to the driver's own buffers), ``drop_oldest`` or ``drop_newest``; each drop
  is reported to the supervisor with its reason, so acquired = inspected + dropped + lost holds.
* Each incarnation of this process has a *generation* (given by the supervisor). Frames go out as
  ``[identity, generation, header, pixels]`` and credits carry the generation they are for; a
  credit meant for a dead predecessor is ignored. After binding, the broker announces itself
  (``broker_ready``); the supervisor then tells the workers, which renew their credit — so a
  restart of this process never leaves the workers waiting on a ROUTER that no longer exists.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from typing import Any

import zmq

from inspector.config import Config
from inspector.daemon.camera_thread import CameraThread
from inspector.daemon.endpoints import Endpoints
from inspector.daemon.proc import ParentWatch, child_setup
from inspector.daemon.runstate import StateCopy
from inspector.errors import WireError
from inspector.transport import wire
from inspector.transport.messages import Command, Ready, event
from inspector.transport.security import (require_secure_for_tcp, secure_server, security_config,
                                          stop_authenticator)

log = logging.getLogger("inspector.acquisition")


class EventSender:
    """Thread-safe event PUSH (the camera thread and the broker loop both report)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, generation: int):
        self.sock = ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.connect(endpoint)
        self.lock = threading.Lock()
        self.generation = generation

    def send(self, name: str, **fields: Any) -> None:
        if name in ("acquired", "dispatched", "dropped", "stats", "camera", "broker_ready"):
            fields.setdefault("generation", self.generation)
        with self.lock:
            self.sock.send_multipart(event(name, **fields))


def run_acquisition(cfg_data: dict[str, Any], endpoints: dict[str, str], snapshot: dict[str, Any],
                    generation: int, parent_pid: int) -> None:
    """Process entry point (spawned by the supervisor)."""
    # Ctrl-C reaches the whole process group: the supervisor coordinates the drain. SIGTERM stays
    # fatal so that the supervisor (and systemd's final kill) can always stop a child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cfg = Config(**cfg_data)
    child_setup(f"acquisition {cfg.camera_id()}", parent_pid)
    logging.basicConfig(level=cfg.log.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Broker(cfg, Endpoints(**endpoints), snapshot, generation, parent_pid).run()


class Broker:
    def __init__(self, cfg: Config, ep: Endpoints, snapshot: dict[str, Any], generation: int = 0,
                 parent_pid: int | None = None):
        self.cfg, self.ep, self.generation = cfg, ep, generation
        self.state = StateCopy()
        self.state.apply(snapshot)
        self.ctx = zmq.Context()
        self.events = EventSender(self.ctx, ep.events, generation)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, 4096)  # workers only send small credit messages
        self.router.bind(ep.frames)
        self.routers = [self.router]
        if ep.remote:  # remote inspection workers: a second ROUTER on tcp, CURVE when keys are configured
            sec = security_config(cfg)
            require_secure_for_tcp(ep.remote[0], sec)
            remote = self.ctx.socket(zmq.ROUTER)
            remote.setsockopt(zmq.ROUTER_MANDATORY, 1)
            remote.setsockopt(zmq.LINGER, 0)
            remote.setsockopt(zmq.MAXMSGSIZE, 4096)
            secure_server(remote, sec, self.ctx)
            remote.bind(ep.remote[0])
            self.routers.append(remote)
        self.cmd = self.ctx.socket(zmq.SUB)
        self.cmd.setsockopt(zmq.SUBSCRIBE, b"")
        self.cmd.connect(ep.commands)
        self.pair = self.ctx.socket(zmq.PAIR)
        self.pair.setsockopt(zmq.RCVHWM, 1)
        self.pair.bind("inproc://camera")
        self.gen_part = str(generation).encode()
        self.queue: deque[tuple[int, list[Any]]] = deque()
        self.idle: deque[tuple[zmq.Socket, bytes]] = deque()  # (router, worker identity) with a credit
        self.gone: set[bytes] = set()
        self.capacity = cfg.queue.capacity
        self.policy = cfg.queue.when_full
        self.camera = CameraThread(cfg, self.ctx, str(snapshot.get("run_id", "")), self.events.send,
                                   first_frame_id=self.state.next_frame_id, context=self.state.context,
                                   paused=self.state.paused)
        self.stopping = False
        self.parent = ParentWatch(parent_pid)

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        self.camera.start()
        self.events.send("broker_ready")
        last_stats = 0.0
        deadline = None
        try:
            while True:
                poller = zmq.Poller()
                for r in self.routers:
                    poller.register(r, zmq.POLLIN)
                poller.register(self.cmd, zmq.POLLIN)
                if not self.stopping and (self.policy != "block" or len(self.queue) < self.capacity):
                    poller.register(self.pair, zmq.POLLIN)
                for sock, _ in poller.poll(100):
                    if sock is self.pair:
                        self._on_camera()
                    elif sock in self.routers:
                        self._on_worker(sock)
                    elif sock is self.cmd:
                        deadline = self._on_command() or deadline
                now = time.monotonic()
                if not self.stopping and not self.camera.is_alive() and not self.camera.finished:
                    log.error("camera thread ended unexpectedly; acquisition exits to be restarted")
                    raise SystemExit(1)
                if now - last_stats > 0.5:
                    self.events.send("stats", queue_depth=len(self.queue), idle_workers=len(self.idle))
                    last_stats = now
                    if self.parent.gone():  # fallback where PR_SET_PDEATHSIG is unavailable
                        log.error("supervisor exited; acquisition stops")
                        return
                if self.stopping and (not self.queue or (deadline is not None and now > deadline)):
                    for fid, _ in self.queue:
                        self.events.send("dropped", frame_id=fid, reason="shutdown")
                    self.queue.clear()
                    self.events.send("stats", queue_depth=0, idle_workers=len(self.idle), stopped=True)
                    return
        finally:
            self.camera.stop_evt.set()
            self.camera.join(timeout=5)
            for s in (*self.routers, self.cmd, self.pair):
                s.close(0)
            stop_authenticator(self.ctx)
            self.events.sock.close()
            self.ctx.term()

    def _on_camera(self) -> None:
        parts = self.pair.recv_multipart(copy=False)
        frame_parts, acquire_s = parts[:2], float(bytes(parts[2]))
        head = wire.decode_header(frame_parts[0].buffer, expect="frame")
        meta = head["meta"]
        fid = int(meta["frame_id"])
        self.events.send("acquired", frame_id=fid, acquired_at=meta["acquired_at"], camera=meta["camera"],
                         acquire_s=acquire_s, meta=meta)
        self.queue.append((fid, frame_parts))
        if len(self.queue) > self.capacity:  # only reachable for the drop policies
            if self.policy == "drop_newest":
                victim, _ = self.queue.pop()
            else:
                victim, _ = self.queue.popleft()
            self.events.send("dropped", frame_id=victim, reason="queue_full")
        self._dispatch()

    def _on_worker(self, router: zmq.Socket) -> None:
        try:
            ident, *rest = router.recv_multipart()
            credit = Ready.from_wire(rest[0] if len(rest) == 1 else b"")
        except (WireError, ValueError) as e:
            self.events.send("bad_input", input_kind="malformed_message", message=f"from a worker: {e}")
            return
        if credit.generation != self.generation:  # meant for a predecessor of this process
            return
        if ident not in self.gone and all(i != ident for _, i in self.idle):
            self.idle.append((router, ident))
        self._dispatch()

    def _dispatch(self) -> None:
        while self.queue and self.idle:
            router, ident = self.idle.popleft()
            fid, parts = self.queue.popleft()
            try:
                router.send_multipart([ident, self.gen_part, *parts], copy=False)
            except zmq.ZMQError as e:  # EHOSTUNREACH: the worker went away; keep the frame
                if e.errno != zmq.EHOSTUNREACH:
                    raise
                self.gone.add(ident)
                self.queue.appendleft((fid, parts))
                continue
            self.events.send("dispatched", frame_id=fid, worker=ident.decode())

    def _on_command(self) -> float | None:
        try:
            cmd = Command.from_wire(self.cmd.recv())
        except WireError as e:
            log.error("ignoring malformed command: %s", e)
            return None
        if cmd.op == "stop":
            if cmd.get("target") not in (None, "acquisition", "all"):
                return None
            self.stopping = True
            self.camera.stop_evt.set()
            return time.monotonic() + float(cmd.get("drain_s", 5.0))
        if cmd.op == "state" and self.state.apply(cmd.fields["state"]):
            self.camera.context = self.state.context
            (self.camera.paused.set if self.state.paused else self.camera.paused.clear)()
        elif cmd.op == "worker_gone":
            ident = cmd.fields["worker"].encode()
            self.gone.add(ident)
            self.idle = deque((r, i) for r, i in self.idle if i != ident)
            while len(self.gone) > 4096:  # restarted workers get new names: forget the oldest
                self.gone.pop()
        return None


__all__ = ["run_acquisition", "Broker"]
