"""The frame: pixels plus the metadata every layer needs (acquisition stamps it once)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: pixel formats a Frame may carry after acquisition converted the camera buffer
PIXEL_FORMATS = {"Mono8": (np.uint8, 1), "Mono16": (np.uint16, 1), "RGB8": (np.uint8, 3)}


@dataclass(slots=True)
class FrameMeta:
    camera: str
    frame_id: int
    acquired_at: float  # UNIX seconds, stamped by us when the buffer was fetched
    width: int
    height: int
    pixel_format: str
    run_id: str = ""
    context: dict[str, Any] = field(default_factory=dict)  # lot id, expected excipient…
    source: str | None = None  # replay file name, synthetic label…

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrameMeta:
        return cls(
            camera=str(d["camera"]),
            frame_id=int(d["frame_id"]),
            acquired_at=float(d["acquired_at"]),
            width=int(d["width"]),
            height=int(d["height"]),
            pixel_format=str(d["pixel_format"]),
            run_id=str(d.get("run_id", "")),
            context=dict(d.get("context") or {}),
            source=d.get("source"),
        )


@dataclass(slots=True)
class Frame:
    pixels: np.ndarray
    meta: FrameMeta

    def gray(self) -> np.ndarray:
        """Single-channel view of the pixels (RGB converted with ITU-R BT.601 weights)."""
        return to_gray(self.pixels)


def to_gray(pixels: np.ndarray) -> np.ndarray:
    """(H, W) grey image from (H, W) or (H, W, 3|4) pixels, keeping the dtype."""
    if pixels.ndim == 2:
        return pixels
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        import cv2

        code = cv2.COLOR_RGB2GRAY if pixels.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
        return cv2.cvtColor(np.ascontiguousarray(pixels), code)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        return pixels[:, :, 0]
    from inspector.errors import BadFrameError

    raise BadFrameError(f"cannot make a grey image from pixels of shape {pixels.shape}", "pixel_format")
