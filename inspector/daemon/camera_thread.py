"""The camera thread of the acquisition process: read (always with a timeout), stamp, hand over.

It reads frames, stamps them with the next frame id and the current lot context, and hands them to
the broker loop over an inproc PAIR socket (zero-copy). On a camera fault it closes the driver and
re-creates it with exponential back-off, reporting ``camera`` events (up / down / reconnecting).
The frame counter is seeded from the supervisor's run-state snapshot, so numbering continues across
a restart of this process; the context and the pause come from the same snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import zmq

from inspector.acquisition import make_camera
from inspector.config import Config
from inspector.errors import CameraError, ConfigError, SourceExhausted
from inspector.transport import wire

log = logging.getLogger("inspector.acquisition")

EventSink = Callable[..., None]  # (event name, **fields)


class CameraThread(threading.Thread):
    def __init__(self, cfg: Config, ctx: zmq.Context, run_id: str, send_event: EventSink, *,
                 first_frame_id: int, context: dict[str, Any], paused: bool):
        super().__init__(name="camera", daemon=True)
        self.cfg, self.ctx, self.run_id, self.send_event = cfg, ctx, run_id, send_event
        self.stop_evt = threading.Event()
        self.paused = threading.Event()
        if paused:
            self.paused.set()
        self.finished = False  # a finite source delivered everything
        self.context: dict[str, Any] = dict(context)  # replaced whole by each snapshot, never mutated
        self.next_id = first_frame_id

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
                        cam.run_id = self.run_id
                        cam.open()
                        self.send_event("camera", state="up")
                        backoff = backoff_min
                    except (CameraError, ConfigError) as e:  # device gone, producer file gone…
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
                    self.send_event("camera", state="finished", error=str(e))
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
                frame = cam.stamp(raw, self.next_id, self.context)
                self.next_id += 1
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
        self.send_event("camera", state="down", error=str(error))
        if cam is not None:
            cam.close()
        return None

    def _back_off(self, delay: float, maximum: float) -> float:
        self.stop_evt.wait(delay)
        self.send_event("camera", state="reconnecting")
        return min(delay * 2, maximum)

    def _bad_input(self, kind: str, message: str) -> None:
        self.send_event("bad_input", input_kind=kind, message=message)
