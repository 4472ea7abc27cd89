"""Automatic region of interest: the tablet disk on a dark background.

Otsu threshold → largest connected component → holes filled → eroded by a margin so the
features never see the tablet's edge (edge pixels would dominate the run lengths and GLCMs).
"""

from __future__ import annotations

import numpy as np

from inspector.errors import BadFrameError

#: the largest bright component must cover at least this fraction of the frame
MIN_AREA_FRACTION = 0.01
#: erosion margin as a fraction of the component's equivalent radius (at least MIN_MARGIN_PX)
MARGIN_FRACTION = 0.03
MIN_MARGIN_PX = 2


def _to_uint8(gray: np.ndarray) -> np.ndarray:
    if gray.dtype == np.uint8:
        return gray
    lo, hi = int(gray.min()), int(gray.max())
    if hi == lo:
        return np.zeros(gray.shape, np.uint8)
    return ((gray.astype(np.float32) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def auto_roi(gray: np.ndarray) -> np.ndarray:
    """Boolean mask of the largest bright object (the tablet) on a dark background, eroded.

    Raises :class:`BadFrameError` (``kind="no_roi"``) when no such object is found.
    """
    import cv2

    g8 = _to_uint8(gray)
    if int(g8.max()) == int(g8.min()):
        raise BadFrameError("auto ROI: the image is constant, no object to segment", "no_roi")
    blurred = cv2.GaussianBlur(g8, (5, 5), 0)
    _, binary = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n < 2:
        raise BadFrameError("auto ROI: no bright object on a dark background", "no_roi")
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = 1 + int(np.argmax(areas))
    if areas[best - 1] < MIN_AREA_FRACTION * gray.size:
        raise BadFrameError(
            f"auto ROI: the largest bright object covers {areas[best - 1] / gray.size:.2%} of the frame "
            f"(< {MIN_AREA_FRACTION:.0%})",
            "no_roi",
        )
    component = (labels == best).astype(np.uint8)
    # fill holes: the background is what a flood fill from outside the component reaches
    padded = np.pad(component, 1)
    flood = padded.copy()
    ff_mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 2)
    filled = (flood[1:-1, 1:-1] != 2).astype(np.uint8)
    radius = float(np.sqrt(filled.sum() / np.pi))
    margin = max(MIN_MARGIN_PX, int(round(MARGIN_FRACTION * radius)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    # pixels beyond the frame count as outside, so the ROI also keeps the margin from the border
    eroded = cv2.erode(filled, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    mask = eroded.astype(bool)
    if not mask.any():
        raise BadFrameError("auto ROI: the object vanishes after the edge margin erosion", "no_roi")
    return mask
