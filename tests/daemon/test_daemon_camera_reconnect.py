"""Camera lost: the acquisition closes and re-creates the driver with back-off, never hangs."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from inspector.acquisition.base import Camera, RawImage
from inspector.acquisition.genicam import GenICamCamera
from inspector.config import Config
from inspector.daemon import camera_thread
from inspector.errors import CameraError
from inspector.transport import wire
from inspector.transport.messages import Event


class _FlakyCamera(Camera):
    """Delivers 3 frames per opening, then the device 'disappears'; the first re-open fails too."""

    opened = 0

    def open(self) -> None:
        type(self).opened += 1
        if type(self).opened == 2:
            raise CameraError("device not found (unplugged)")
        self.left = 3

    def read(self, timeout: float) -> RawImage | None:
        if self.left == 0:
            raise CameraError("fetch failed: device removed")
        self.left -= 1
        return RawImage(np.zeros((8, 8), np.uint8), "Mono8")

    def close(self) -> None:
        pass


class _Events:
    def __init__(self):
        self.items = []
        self.lock = threading.Lock()

    def send(self, event, **fields):
        with self.lock:
            self.items.append((event, fields))


def test_driver_fault_closes_recreates_with_backoff_and_keeps_numbering(monkeypatch):
    monkeypatch.setattr(camera_thread, "make_camera", lambda cfg, cid, hook: _FlakyCamera(cid, on_bad_input=hook))
    cfg = Config(camera={"driver": "synthetic", "scene": "noise", "reconnect_backoff_s": (0.05, 0.2)})
    ctx = zmq.Context()
    pair = ctx.socket(zmq.PAIR)
    pair.bind("inproc://camera")
    events = _Events()
    th = camera_thread.CameraThread(cfg, ctx, "run1", events.send, first_frame_id=0, context={}, paused=False)
    th.start()
    ids = []
    try:
        end = time.monotonic() + 20
        while len(ids) < 9 and time.monotonic() < end:
            if pair.poll(100):
                parts = pair.recv_multipart()
                ids.append(wire.decode_header(parts[0])["meta"]["frame_id"])
    finally:
        th.stop_evt.set()
        th.join(5)
        pair.close(0)
        ctx.term()
    assert not th.is_alive()
    assert ids == list(range(9))  # numbering continues across reconnects
    states = [f["state"] for e, f in events.items if e == "camera"]
    assert states[:4] == ["up", "down", "reconnecting", "down"]  # lost, then the first re-open fails
    assert states.count("up") >= 3 and states.count("reconnecting") >= 2


def test_simulated_device_closed_under_the_driver_raises_instead_of_hanging():
    cam = GenICamCamera("viky0", cti=None, width=160, height=120, pixel_format="Mono8", fps=50)
    cam.open()
    try:
        assert cam.read(2.0) is not None
        # the GenTL device goes away under the driver (what an unplugged camera looks like)
        cam._ia.stop()
        cam._ia.destroy()
        t0 = time.monotonic()
        with pytest.raises(CameraError):
            for _ in range(3):
                cam.read(0.5)
        assert time.monotonic() - t0 < 10
    finally:
        cam.close()  # closing a vanished device must not raise or hang
    cam.open()  # and the driver can be re-created
    try:
        assert cam.read(2.0) is not None
    finally:
        cam.close()


def test_readiness_reports_camera_down(tmp_path):
    from inspector.daemon.supervisor import Supervisor

    cfg = Config(camera={"driver": "synthetic", "scene": "noise"}, state_dir=str(tmp_path),
                 metrics={"enabled": False})
    sup = Supervisor(cfg)
    try:
        sup._on_event(Event("camera", {"state": "up"}))
        assert "camera not open" not in sup.readiness()[1]
        sup._on_event(Event("camera", {"state": "down", "error": "gone"}))
        sup._on_event(Event("camera", {"state": "reconnecting"}))
        ok, reasons = sup.readiness()
        assert not ok and "camera not open" in reasons
        assert sup.metrics.camera_reconnects._value.get() == 1
    finally:
        sup._close()
