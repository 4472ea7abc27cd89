"""The camera interface: open / frames / close, with frame metadata stamped once, here."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspector.frame import Frame, FrameMeta

log = logging.getLogger("inspector.camera")


@dataclass(slots=True)
class RawImage:
    """What a driver read: pixels already converted to numpy (see pixfmt), plus provenance."""

    pixels: np.ndarray
    pixel_format: str  # Mono8 | Mono16 | RGB8
    source: str | None = None


BadInputHook = Callable[[str, str], None]  # (kind, message)


class Camera(ABC):
    """A frame source. ``read`` returns None on a timeout and raises CameraError when the device is gone."""

    driver: str = "camera"

    def __init__(self, camera_id: str, *, on_bad_input: BadInputHook | None = None):
        self.camera_id = camera_id
        self.run_id = ""
        self._on_bad_input = on_bad_input

    # -- driver API
    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self, timeout: float) -> RawImage | None: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- common
    def bad_input(self, kind: str, message: str) -> None:
        log.warning("%s: %s", self.camera_id, message)
        if self._on_bad_input:
            self._on_bad_input(kind, message)

    def stamp(self, raw: RawImage, frame_id: int, context: dict[str, Any] | None = None) -> Frame:
        """Wrap a raw image into a Frame with the given frame id and our own timestamp (the caller
        owns the numbering: in the daemon, the acquisition process seeded by the supervisor)."""
        h, w = raw.pixels.shape[:2]
        meta = FrameMeta(
            camera=self.camera_id, frame_id=frame_id, acquired_at=time.time(), width=int(w),
            height=int(h), pixel_format=raw.pixel_format, run_id=self.run_id,
            context=dict(context or {}), source=raw.source,
        )
        return Frame(pixels=raw.pixels, meta=meta)

    def frames(self, timeout: float = 1.0, limit: int | None = None) -> Iterator[Frame]:
        """Convenience iterator (tests, tools); the daemon calls read() itself to handle reconnects."""
        n = 0
        while limit is None or n < limit:
            raw = self.read(timeout)
            if raw is None:
                continue
            yield self.stamp(raw, n)
            n += 1

    def __enter__(self) -> Camera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pacer:
    """Sleeps so that successive calls happen at ``fps`` (drivers that generate or replay frames)."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps
        self._next = time.monotonic()

    def wait(self, timeout: float) -> bool:
        """Wait for the next slot; False if it is further away than ``timeout``."""
        now = time.monotonic()
        delay = self._next - now
        if delay > timeout:
            time.sleep(timeout)
            return False
        if delay > 0:
            time.sleep(delay)
        # never accumulate a backlog when the consumer was slow
        self._next = max(self._next + self.period, time.monotonic() - self.period)
        return True
