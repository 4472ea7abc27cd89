"""A small JPEG of a frame for the operator page (made in the worker, never published on the line)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from inspector.frame import Frame


def thumbnail(frame: Frame, max_side: int) -> tuple[dict[str, Any], bytes] | None:
    """JPEG with its longest side <= max_side (8-bit; RGB kept), with its header."""
    px = frame.pixels
    if px.dtype == np.uint16:
        px = (px >> 8).astype(np.uint8)
    h, w = px.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        px = cv2.resize(px, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if px.ndim == 3:
        px = cv2.cvtColor(px, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", px, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        return None
    return {"format": "jpeg", "width": int(px.shape[1]), "height": int(px.shape[0])}, buf.tobytes()
