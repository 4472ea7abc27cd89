"""Tablet surface as a grid of patches: fast per-patch features at native resolution.

A chip or a thin crack changes a few per cent of a whole tablet's pixels, which whole-tablet
statistics average away; the same defect fills a good part of one patch. So the tablet is found
(Otsu on a ≤ 256-pixel thumbnail → largest contour → convex hull, so a chip bitten out of the rim
is still *inside* the tablet; the hull is shrunk by 2 % of the radius to keep the dark background out), its bounding square is cut into ``tiles × tiles`` patches and every
patch that lies mostly on the tablet gets :data:`PATCH_FEATURES`:

* grey statistics relative to the tablet's median grey (gain-invariant): mean, sd, the shares of
  dark (< 0.75 × median), very dark (< 0.5 ×) and bright (> 1.25 ×) pixels;
* ``grad``: mean Sobel gradient magnitude of the patch over the median of that over the tablet's
  patches (a crack or a chip edge stands out against the tablet's own texture, whatever the
  resolution). Before the statistics the tablet square is smoothed by a
  Gaussian of σ = radius / 290 px (1 px for a whole tablet in a 1024 × 768 frame, 2.5 px at
  2580 × 1944), so pixel noise and edge widths compare across resolutions while every native pixel
  is still used;
* ``radius``: the distance of the patch centre from the tablet centre / tablet radius (rim patches
  see the bevel; the novelty model learns that from good tablets).

The frame also gets :data:`FRAME_FEATURES` (surface-wide changes that patch-relative statistics
normalise away: median grey, spread of the patch means, the whole tablet's dark/bright shares).
An absolute gradient level is left out on purpose: it depends on the resolution (texture detail).
After the Gaussian, one fused numba pass (:mod:`inspector.texture.patch_kernel`) takes every per-patch
sum at once, and the thumbnail for the tablet finder is an exact, faster copy of OpenCV's area resize
(:mod:`inspector.texture.area_resize`): a 2580 × 1944 frame costs ≈ 30–45 ms of one core
(``bench/bench_texture_fullres.py``; the first, multi-pass implementation is kept as the reference in
``tests/support/patch_reference.py`` and the parity test holds the two together).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspector.errors import BadFrameError

PATCH_FEATURES: tuple[str, ...] = ("mean", "sd", "dark", "very_dark", "bright", "grad", "radius")
FRAME_FEATURES: tuple[str, ...] = ("median_grey", "patch_mean_sd", "dark", "bright")
DEFAULT_TILES = 8
#: smallest per-feature scale the novelty models may use (their StandardScaler's scale_ is floored to it):
#: a share that is exactly 0 on almost every good patch would otherwise turn 0.01 % into many sd
PATCH_MIN_SCALE: tuple[float, ...] = (0.01, 0.005, 0.01, 0.01, 0.01, 0.05, 0.05)
FRAME_MIN_SCALE: tuple[float, ...] = (0.01, 0.002, 0.005, 0.005)
#: a patch is scored when at least this share of it lies on the tablet
MIN_INSIDE = 0.5
#: the tablet mask is the convex hull shrunk by this share of the radius (keeps the dark background out)
EDGE_MARGIN = 0.02
THUMB_SIDE = 256
#: tablet radius (px) at which σ = 1 px; ≈ the radius of a whole tablet in a 1024 × 768 frame
REF_RADIUS = 290.0


@dataclass
class PatchGrid:
    """Patch features of one frame."""

    X: np.ndarray  # (n_patches, len(PATCH_FEATURES))
    boxes: np.ndarray  # (n_patches, 4) x, y, w, h in frame pixels
    frame: np.ndarray  # (len(FRAME_FEATURES),)
    center: tuple[float, float]
    radius: float


def find_tablet(gray: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """(convex hull points in frame pixels, centre x, centre y, radius) of the largest bright object."""
    import cv2

    from inspector.texture.area_resize import resize_area

    h, w = gray.shape
    f = min(1.0, THUMB_SIDE / max(h, w))
    g8 = gray if gray.dtype == np.uint8 else cv2.convertScaleAbs(gray, alpha=255.0 / max(1, int(gray.max())))
    thumb = resize_area(g8, (max(1, round(w * f)), max(1, round(h * f)))) if f < 1 else g8
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


def _masked_median(region: np.ndarray, inside: np.ndarray) -> float:
    """Median grey of the tablet (integer grey values) from its masked histogram."""
    import cv2

    if region.dtype == np.uint8 or region.dtype == np.uint16:
        bins = 256 if region.dtype == np.uint8 else 65536
        hist = cv2.calcHist([np.ascontiguousarray(region)], [0], np.ascontiguousarray(inside), [bins], [0, bins])
        c = np.cumsum(hist.ravel().astype(np.int64))
    else:
        c = np.cumsum(np.bincount(region[inside.astype(bool)].astype(np.int64)))
    return float(np.searchsorted(c, (c[-1] + 1) // 2))


def patch_grid(gray: np.ndarray, tiles: int = DEFAULT_TILES) -> PatchGrid:
    """Per-patch and per-frame features of the tablet in ``gray`` (2-D uint8/uint16). Raises BadFrameError."""
    import cv2

    from inspector.texture.patch_kernel import patch_sums

    if gray.ndim != 2:
        raise BadFrameError(f"patch features need a 2-D grey frame, got shape {gray.shape}", "pixel_format")
    hull, cx, cy, r = find_tablet(gray)
    s = max(4, int(round(2 * r / tiles)))
    x0, y0 = int(round(cx - tiles * s / 2)), int(round(cy - tiles * s / 2))
    side = tiles * s
    H, W = gray.shape
    # the tablet's bounding square, zero-padded where it leaves the frame
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(W, x0 + side), min(H, y0 + side)
    if sx1 <= sx0 or sy1 <= sy0:
        raise BadFrameError("no tablet inside the frame", "no_roi")
    inner = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
    region = gray[sy0:sy1, sx0:sx1]
    if region.shape == (side, side):
        crop = region.astype(np.float32)
    else:
        crop = np.zeros((side, side), np.float32)
        crop[inner] = region
    # the hull shrunk towards the centre by the margin (for a near-circular convex outline the same as an
    # erosion, without a large-kernel pass over the full-resolution square)
    margin = max(1.0, EDGE_MARGIN * r)
    shrunk = np.array([cx, cy]) + (hull - (cx, cy)) * (1.0 - margin / r)
    inside = np.zeros((side, side), np.uint8)
    cv2.fillPoly(inside, [np.round(shrunk - (x0, y0)).astype(np.int32)], 1)
    if region.shape != (side, side):  # nothing outside the frame is on the tablet
        valid = np.zeros_like(inside)
        valid[inner] = 1
        inside &= valid
    n_in = int(cv2.countNonZero(inside))
    if n_in < 64:
        raise BadFrameError("tablet too small after the edge margin", "too_small")
    med = _masked_median(region, inside[inner])
    if med <= 0:
        raise BadFrameError("the tablet is black (median grey 0)", "no_texture")
    # scale normalisation without discarding pixels: a Gaussian of σ = r / REF_RADIUS px makes the pixel
    # noise and edge widths of a 2580×1944 frame look like those of the 1024×768 training frames
    crop = cv2.GaussianBlur(crop, (0, 0), max(0.5, r / REF_RADIUS))
    # every per-patch sum in one pass over the smoothed square, on the raw grey (normalised by the median
    # afterwards: the same as dividing first); the mask border lies on the tablet, so no edge there
    cnt, s1, s2, dark, very_dark, bright, grad = patch_sums(crop, inside, tiles, s, 0.75 * med, 0.5 * med, 1.25 * med)
    keep = cnt >= MIN_INSIDE * s * s
    if not keep.any():
        raise BadFrameError("no patch lies mostly on the tablet", "too_small")
    c = cnt[keep]
    mean = s1[keep] / med / c
    sd = np.sqrt(np.maximum(s2[keep] / (med * med) / c - mean**2, 0.0))
    iy, ix = np.nonzero(keep)
    pcx, pcy = x0 + (ix + 0.5) * s, y0 + (iy + 0.5) * s
    radius = np.hypot(pcx - cx, pcy - cy) / r
    g = grad[keep] / c
    g = g / max(float(np.median(g)), 1e-9)  # relative to the tablet's typical patch: resolution-free
    X = np.column_stack([mean, sd, dark[keep] / c, very_dark[keep] / c, bright[keep] / c, g, radius])
    boxes = np.column_stack([x0 + ix * s, y0 + iy * s, np.full(len(ix), s), np.full(len(ix), s)]).astype(int)
    tot = float(cnt.sum())
    frame = np.array([med / (65535.0 if gray.dtype == np.uint16 else 255.0), float(mean.std()),
                      float(dark.sum() / tot), float(bright.sum() / tot)])
    return PatchGrid(X=X, boxes=boxes, frame=frame, center=(cx, cy), radius=r)


def snapshot_png(gray: np.ndarray, box: tuple[int, int, int, int], *, max_side: int = 768) -> bytes:
    """PNG of the frame (downscaled to ``max_side``) with the worst patch drawn as a red rectangle."""
    import cv2

    from inspector.texture.area_resize import resize_area

    f = min(1.0, max_side / max(gray.shape))
    g8 = gray if gray.dtype == np.uint8 else cv2.convertScaleAbs(gray, alpha=255.0 / max(1, int(gray.max())))
    small = resize_area(g8, (round(gray.shape[1] * f), round(gray.shape[0] * f)))
    bgr = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    x, y, w, h = (int(round(v * f)) for v in box)
    cv2.rectangle(bgr, (x, y), (x + w, y + h), (0, 0, 255), 2)
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise BadFrameError("cannot encode the snapshot PNG", "encode")
    return buf.tobytes()


def warmup() -> None:
    """Load the numba kernels (and check the area resize against OpenCV) now, not on the first frame."""
    from inspector.texture import area_resize, patch_kernel

    area_resize.warmup()
    patch_kernel.warmup()
