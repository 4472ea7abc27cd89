"""Acquisition process: camera thread → bounded queue → load-balanced dispatch to workers.

* The camera thread reads frames (always with a timeout), stamps them, and hands them to the
  broker loop over an inproc PAIR socket (zero-copy). On a camera fault it closes the driver and
  re-creates it with exponential back-off, reporting ``camera`` events (up/down, reconnects).
* The broker loop owns the bounded queue. A worker asks for work by sending READY on its DEALER
  socket (credit 1); the ROUTER sends the oldest queued frame to the worker that asked, so frames go
  to whichever worker is free, not round-robin. ``when_full`` decides: ``block`` (stop reading the
  camera: back-pressure to the driver's own buffers), ``drop_oldest`` or ``drop_newest``; each drop
  is reported to the supervisor with its reason, so acquired = processed + dropped + lost holds.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from typing import Any

import zmq

from inspector.acquisition import make_camera
from inspector.config import Config
from inspector.daemon.endpoints import Endpoints
from inspector.errors import CameraError, InspectorError, SourceExhausted, WireError
from inspector.transport import wire

log = logging.getLogger("inspector.acquisition")


class _CameraThread(threading.Thread):
    def __init__(self, cfg: Config, ctx: zmq.Context, run_id: str, events: _EventSender):
        super().__init__(name="camera", daemon=True)
        self.cfg, self.ctx, self.run_id, self.events = cfg, ctx, run_id, events
        self.stop_evt = threading.Event()
        self.paused = threading.Event()
        self.finished = False  # a finite source delivered everything
        self.context: dict[str, Any] = {}
        self._next_id = 0

    def run(self) -> None:
        out = self.ctx.socket(zmq.PAIR)
        out.setsockopt(zmq.SNDHWM, 1)
        out.setsockopt(zmq.LINGER, 0)
        out.connect("inproc://camera")
        cam_cfg = self.cfg.camera
        backoff_min, backoff_max = cam_cfg.reconnect_backoff_s
        backoff = backoff_min
        cam = None
        try:
            while not self.stop_evt.is_set():
                if cam is None:
                    try:
                        cam = make_camera(cam_cfg, self.cfg.camera_id(), self._bad_input)
                        cam.run_id, cam._next_id = self.run_id, self._next_id
                        cam.open()
                        self.events.send("camera", state="up")
                        backoff = backoff_min
                    except CameraError as e:
                        log.error("camera unavailable: %s (retrying in %.1f s)", e, backoff)
                        cam = self._lost(cam, e)
                        backoff = self._back_off(backoff, backoff_max)
                        continue
                if self.paused.is_set():
                    self.stop_evt.wait(0.05)
                    continue
                t0 = time.perf_counter()
                try:
                    raw = cam.read(cam_cfg.fetch_timeout_s)
                except SourceExhausted as e:
                    log.info("%s", e)
                    self.finished = True
                    self.events.send("camera", state="finished", error=str(e))
                    return
                except Exception as e:  # CameraError, or a driver bug: same recovery
                    if not isinstance(e, CameraError):
                        log.exception("camera driver failed")
                    log.error("camera fault: %s — closing and re-creating the acquirer", e)
                    cam = self._lost(cam, e)
                    backoff = self._back_off(backoff, backoff_max)
                    continue
                if raw is None:
                    continue
                frame = cam.stamp(raw, self.context)
                self._next_id = cam._next_id
                acquire_s = time.perf_counter() - t0
                parts = wire.encode_frame(frame)
                # blocks when the broker stops reading (when_full: block): back-pressure
                while not self.stop_evt.is_set():
                    if out.poll(100, zmq.POLLOUT):
                        out.send_multipart([*parts, str(acquire_s).encode()], copy=False)
                        break
        finally:
            if cam is not None:
                cam.close()
            out.close()

    def _lost(self, cam: Any, error: Exception) -> None:
        """Report the camera down and close the driver (numbering continues on the next one)."""
        self.events.send("camera", state="down", error=str(error))
        if cam is not None:
            self._next_id = max(self._next_id, cam._next_id)
            cam.close()
        return None

    def _back_off(self, delay: float, maximum: float) -> float:
        self.stop_evt.wait(delay)
        self.events.send("camera", state="reconnecting")
        return min(delay * 2, maximum)

    def _bad_input(self, kind: str, message: str) -> None:
        self.events.send("bad_input", input_kind=kind, message=message)


class _EventSender:
    """Thread-safe event PUSH (the camera thread and the broker loop both report)."""

    def __init__(self, ctx: zmq.Context, endpoint: str):
        self.sock = ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.connect(endpoint)
        self.lock = threading.Lock()

    def send(self, event: str, **fields: Any) -> None:
        with self.lock:
            self.sock.send_multipart(wire.encode_event(event, **fields))


def run_acquisition(cfg_data: dict[str, Any], endpoints: dict[str, str], run_id: str,
                    first_frame_id: int = 0) -> None:
    """Process entry point (spawned by the supervisor)."""
    # Ctrl-C reaches the whole process group: the supervisor coordinates the drain. SIGTERM stays
    # fatal so that the supervisor (and systemd's final kill) can always stop a child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=cfg_data.get("log", {}).get("level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = Config(**cfg_data)
    ep = Endpoints(**endpoints)
    Broker(cfg, ep, run_id, first_frame_id).run()


class Broker:
    def __init__(self, cfg: Config, ep: Endpoints, run_id: str, first_frame_id: int = 0):
        self.cfg, self.ep, self.run_id = cfg, ep, run_id
        self.ctx = zmq.Context()
        self.events = _EventSender(self.ctx, ep.events)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, 4096)  # workers only send small READY messages
        self.router.bind(ep.frames)
        self.cmd = self.ctx.socket(zmq.SUB)
        self.cmd.setsockopt(zmq.SUBSCRIBE, b"")
        self.cmd.connect(ep.commands)
        self.pair = self.ctx.socket(zmq.PAIR)
        self.pair.setsockopt(zmq.RCVHWM, 1)
        self.pair.bind("inproc://camera")
        self.queue: deque[tuple[int, list[Any]]] = deque()
        self.idle: deque[bytes] = deque()
        self.gone: set[bytes] = set()
        self.capacity = cfg.queue.capacity
        self.policy = cfg.queue.when_full
        self.camera = _CameraThread(cfg, self.ctx, run_id, self.events)
        self.camera._next_id = first_frame_id
        self.camera.context = cfg.lot_context()  # stamped on every frame; replaced, never mutated
        self.stopping = False
        self.parent = os.getppid()

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        self.camera.start()
        last_stats = 0.0
        deadline = None
        try:
            while True:
                poller = zmq.Poller()
                poller.register(self.router, zmq.POLLIN)
                poller.register(self.cmd, zmq.POLLIN)
                if not self.stopping and (self.policy != "block" or len(self.queue) < self.capacity):
                    poller.register(self.pair, zmq.POLLIN)
                for sock, _ in poller.poll(100):
                    if sock is self.pair:
                        self._on_camera()
                    elif sock is self.router:
                        self._on_worker()
                    elif sock is self.cmd:
                        deadline = self._on_command() or deadline
                now = time.monotonic()
                if not self.stopping and not self.camera.is_alive() and not self.camera.finished:
                    log.error("camera thread ended unexpectedly; acquisition exits to be restarted")
                    raise SystemExit(1)
                if now - last_stats > 0.5:
                    self.events.send("stats", queue_depth=len(self.queue), idle_workers=len(self.idle))
                    last_stats = now
                    if os.getppid() != self.parent:  # supervisor gone: do not linger as an orphan
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
            for s in (self.router, self.cmd, self.pair):
                s.close(0)
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

    def _on_worker(self) -> None:
        try:
            ident, *rest = self.router.recv_multipart()
            wire.decode_header(rest[0] if rest else b"", expect="ready")
        except (WireError, IndexError, ValueError) as e:
            self.events.send("bad_input", input_kind="malformed_message", message=f"from a worker: {e}")
            return
        if ident not in self.gone and ident not in self.idle:
            self.idle.append(ident)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.queue and self.idle:
            ident = self.idle.popleft()
            fid, parts = self.queue.popleft()
            try:
                self.router.send_multipart([ident, *parts], copy=False)
            except zmq.ZMQError as e:  # EHOSTUNREACH: the worker went away; keep the frame
                if e.errno != zmq.EHOSTUNREACH:
                    raise
                self.gone.add(ident)
                self.queue.appendleft((fid, parts))
                continue
            self.events.send("dispatched", frame_id=fid, worker=ident.decode())

    def _on_command(self) -> float | None:
        try:
            head = wire.decode_command(self.cmd.recv())
        except WireError as e:
            log.error("ignoring malformed command: %s", e)
            return None
        op = head["op"]
        if op == "stop":
            if head.get("target") not in (None, "acquisition", "all"):
                return None
            self.stopping = True
            self.camera.stop_evt.set()
            return time.monotonic() + float(head.get("drain_s", 5.0))
        if op == "pause":
            self.camera.paused.set()
        elif op == "resume":
            self.camera.paused.clear()
        elif op == "context":
            self.camera.context = {**self.camera.context, **(head.get("context") or {})}
        elif op == "worker_gone":
            ident = str(head.get("worker", "")).encode()
            self.gone.add(ident)
            self.idle = deque(i for i in self.idle if i != ident)
        return None


__all__ = ["run_acquisition", "Broker", "InspectorError"]
