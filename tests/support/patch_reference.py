"""The patch features as first written (issue 14 part 4), kept verbatim as the reference for the optimised
``inspector.texture.patches.patch_grid``: the parity test (tests/texture/test_texture_patch_parity.py) and
``bench/bench_texture_fullres.py`` (CPU ratio in the same process) call it. Never imported by serving code.

Every step is a separate OpenCV/numpy pass over the tablet's bounding square (≈ 15 passes at 2580 × 1944),
and the block sums are float32 ``INTER_AREA`` resizes (float32 accumulation: ≈ 1e-5 relative noise on the
sums, more on the sd that is computed from them).
"""

from __future__ import annotations

import numpy as np

from inspector.errors import BadFrameError
from inspector.texture.patches import DEFAULT_TILES, EDGE_MARGIN, MIN_INSIDE, REF_RADIUS, THUMB_SIDE, PatchGrid

def find_tablet_reference(gray: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """(convex hull points in frame pixels, centre x, centre y, radius) of the largest bright object."""
    import cv2

    h, w = gray.shape
    f = min(1.0, THUMB_SIDE / max(h, w))
    g8 = gray if gray.dtype == np.uint8 else cv2.convertScaleAbs(gray, alpha=255.0 / max(1, int(gray.max())))
    thumb = cv2.resize(g8, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA) if f < 1 else g8
    if int(thumb.max()) == int(thumb.min()):
        raise BadFrameError("no tablet: the frame is constant", "no_roi")
    _, binary = cv2.threshold(cv2.GaussianBlur(thumb, (3, 3), 0), 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        raise BadFrameError("no tablet: no bright object on a dark background", "no_roi")
    c = max(contours, key=cv2.contourArea)
    if cv2.contourArea(c) < 0.01 * thumb.size:
        raise BadFrameError("no tablet: the largest bright object covers < 1 % of the frame", "no_roi")
    hull = cv2.convexHull(c).reshape(-1, 2).astype(np.float64) / f
    (cx, cy), r = cv2.minEnclosingCircle(hull.astype(np.float32))
    if r < 16:
        raise BadFrameError(f"no tablet: the object is too small ({r:.0f} px radius)", "too_small")
    return hull, float(cx), float(cy), float(r)


def _block_sum_exact(a: np.ndarray, tiles: int) -> np.ndarray:
    """The same block sums accumulated exactly (float64), for ``exact_sums=True``."""
    s = a.shape[0] // tiles
    return a.astype(np.float64).reshape(tiles, s, tiles, s).sum(axis=(1, 3))


def _block_sum(a: np.ndarray, tiles: int) -> np.ndarray:
    """(tiles, tiles) sums over the equal square blocks of a square map (OpenCV area resize × block area)."""
    import cv2

    side = a.shape[0]
    src = a if a.dtype == np.float32 else a.astype(np.float32)
    return cv2.resize(src, (tiles, tiles), interpolation=cv2.INTER_AREA).astype(np.float64) * (side / tiles) ** 2


def _masked_median(crop: np.ndarray, inside: np.ndarray) -> float:
    """Median grey of the tablet from its histogram (exact for integer grey values)."""
    vals = crop[inside.astype(bool)].astype(np.int64)
    hist = np.bincount(vals)
    c = np.cumsum(hist)
    return float(np.searchsorted(c, (c[-1] + 1) // 2))


def patch_grid_reference(gray: np.ndarray, tiles: int = DEFAULT_TILES, *, exact_sums: bool = False) -> PatchGrid:
    """Per-patch and per-frame features of the tablet in ``gray`` (2-D uint8/uint16). Raises BadFrameError.

    ``exact_sums``: the block sums (and the c² they sum) in float64 instead of float32 ``INTER_AREA``
    (the one change; it isolates the reference's float32 rounding from any difference in what is computed)."""
    import cv2

    block_sum = _block_sum_exact if exact_sums else _block_sum

    if gray.ndim != 2:
        raise BadFrameError(f"patch features need a 2-D grey frame, got shape {gray.shape}", "pixel_format")
    hull, cx, cy, r = find_tablet_reference(gray)
    s = max(4, int(round(2 * r / tiles)))
    x0, y0 = int(round(cx - tiles * s / 2)), int(round(cy - tiles * s / 2))
    side = tiles * s
    H, W = gray.shape
    # the tablet's bounding square, zero-padded where it leaves the frame
    crop = np.zeros((side, side), np.float32)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(W, x0 + side), min(H, y0 + side)
    if sx1 <= sx0 or sy1 <= sy0:
        raise BadFrameError("no tablet inside the frame", "no_roi")
    crop[sy0 - y0: sy1 - y0, sx0 - x0: sx1 - x0] = gray[sy0:sy1, sx0:sx1]
    # the hull shrunk towards the centre by the margin (for a near-circular convex outline the same as an
    # erosion, without a large-kernel pass over the full-resolution square)
    margin = max(1.0, EDGE_MARGIN * r)
    shrunk = np.array([cx, cy]) + (hull - (cx, cy)) * (1.0 - margin / r)
    inside = np.zeros((side, side), np.uint8)
    cv2.fillPoly(inside, [np.round(shrunk - (x0, y0)).astype(np.int32)], 1)
    valid = np.zeros_like(inside)
    valid[sy0 - y0: sy1 - y0, sx0 - x0: sx1 - x0] = 1
    inside &= valid
    n_in = int(cv2.countNonZero(inside))
    if n_in < 64:
        raise BadFrameError("tablet too small after the edge margin", "too_small")
    med = _masked_median(crop, inside)
    if med <= 0:
        raise BadFrameError("the tablet is black (median grey 0)", "no_texture")
    # per-pixel maps on the raw grey, normalised by the median afterwards (the same as dividing first);
    # block sums by INTER_AREA resizing (exact box means when the side is tiles × s)
    # scale normalisation without discarding pixels: a Gaussian of σ = r / REF_RADIUS px makes the pixel
    # noise and edge widths of a 2580×1944 frame look like those of the 1024×768 training frames
    crop = cv2.GaussianBlur(crop, (0, 0), max(0.5, r / REF_RADIUS))
    Tf = inside.astype(np.float32)
    cT = cv2.multiply(crop, Tf)
    gx = cv2.Sobel(crop, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(crop, cv2.CV_32F, 0, 1, ksize=3)
    grad = cv2.magnitude(gx, gy)
    grad = cv2.multiply(grad, Tf)  # the mask border lies on the tablet: no edge there
    inside255 = inside * np.uint8(255)

    def share(cmp: int, level: float) -> np.ndarray:
        hit = cv2.bitwise_and(cv2.compare(crop, level, cmp), inside255)
        return block_sum(hit, tiles) / 255.0

    cnt = block_sum(Tf, tiles)
    sums = [block_sum(cT, tiles) / med, block_sum(cT.astype(np.float64) * crop if exact_sums else cv2.multiply(cT, crop), tiles) / (med * med),
            share(cv2.CMP_LT, 0.75 * med), share(cv2.CMP_LT, 0.5 * med), share(cv2.CMP_GT, 1.25 * med),
            block_sum(grad, tiles)]
    keep = cnt >= MIN_INSIDE * s * s
    if not keep.any():
        raise BadFrameError("no patch lies mostly on the tablet", "too_small")
    c = cnt[keep]
    mean = sums[0][keep] / c
    sd = np.sqrt(np.maximum(sums[1][keep] / c - mean**2, 0.0))
    iy, ix = np.nonzero(keep)
    pcx, pcy = x0 + (ix + 0.5) * s, y0 + (iy + 0.5) * s
    radius = np.hypot(pcx - cx, pcy - cy) / r
    g = sums[5][keep] / c
    g = g / max(float(np.median(g)), 1e-9)  # relative to the tablet's typical patch: resolution-free
    X = np.column_stack([mean, sd, sums[2][keep] / c, sums[3][keep] / c, sums[4][keep] / c, g, radius])
    boxes = np.column_stack([x0 + ix * s, y0 + iy * s, np.full(len(ix), s), np.full(len(ix), s)]).astype(int)
    tot = float(cnt.sum())
    frame = np.array([med / (65535.0 if gray.dtype == np.uint16 else 255.0), float(mean.std()),
                      float(sums[2].sum() / tot), float(sums[4].sum() / tot)])
    return PatchGrid(X=X, boxes=boxes, frame=frame, center=(cx, cy), radius=r)
