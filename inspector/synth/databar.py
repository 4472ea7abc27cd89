"""The information bar under a TM1000-style SEM frame (64 rows, like the real 1280 × 1024 frames).

Black strip with a white scale bar and white text (magnification, voltage, detector, date). It is
deterministic given its inputs; classifiers must crop it, which is why the generator can add it.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["DATA_BAR_ROWS", "data_bar", "scale_bar_um"]

DATA_BAR_ROWS = 64
_NICE_UM = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


def scale_bar_um(um_per_px: float, width: int) -> float:
    """The round length (µm) whose bar is closest to a sixth of the frame width."""
    target = width / 6.0
    return min(_NICE_UM, key=lambda L: abs(L / um_per_px - target))


def data_bar(width: int, *, magnification: int, um_per_px: float, date: str, kv: float = 15.0) -> np.ndarray:
    """``(64, width)`` uint8 data bar."""
    bar = np.full((DATA_BAR_ROWS, width), 1, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    length_um = scale_bar_um(um_per_px, width)
    length_px = int(round(length_um / um_per_px))
    x0 = int(width * 0.39)
    cv2.rectangle(bar, (x0, 3), (x0 + length_px, 14), 255, thickness=-1)
    label = f"{length_um:g}um"
    cv2.putText(bar, label, (x0 + length_px + int(width * 0.08), 22), font, 0.7, 255, 2, cv2.LINE_AA)
    cv2.putText(bar, "TM1000", (int(width * 0.74), 22), font, 0.7, 255, 2, cv2.LINE_AA)
    line2 = 54
    cv2.putText(bar, f"x{magnification:,}", (int(width * 0.25), line2), font, 0.7, 255, 2, cv2.LINE_AA)
    cv2.putText(bar, f"{kv:.1f}kV", (int(width * 0.42), line2), font, 0.7, 255, 2, cv2.LINE_AA)
    cv2.putText(bar, "SE", (int(width * 0.62), line2), font, 0.7, 255, 2, cv2.LINE_AA)
    cv2.putText(bar, date, (int(width * 0.78), line2), font, 0.7, 255, 2, cv2.LINE_AA)
    return bar
