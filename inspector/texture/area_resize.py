"""``cv2.resize(…, INTER_AREA)`` of a uint8 image at a non-integer scale, bit-identical, in ≈ half the CPU.

The tablet finder (:func:`inspector.texture.patches.find_tablet`) shrinks every frame to a ≤ 256-pixel
thumbnail with OpenCV's area interpolation; at 2580 × 1944 → 256 × 193 (scale ≈ 10.08, not an integer)
OpenCV takes its generic path, a scalar scatter loop that costs ≈ 14 ms of one core. Hand-written because
that is a third of the whole frame's budget: this kernel does the same float32 operations in the same
order (OpenCV's ``computeResizeAreaTab`` weights; per source row the horizontal sums, then the rows
weighted into each output row; round half to even, saturate), but gathers a fixed number of taps per
output column so the loop has no store-to-load chain — ≈ 6 ms (``bench/bench_texture_fullres.py``).

It must equal OpenCV exactly (the tablet's outline, hence every patch, depends on the thumbnail): the
first call checks it against ``cv2.resize`` on a test image and, should an OpenCV build ever differ,
every later call simply uses ``cv2.resize``. Integer scales (OpenCV's fast path) always go to OpenCV.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache

import numpy as np
from numba import njit

_exact: bool | None = None  # None: not checked yet


def _area_tab(ssize: int, dsize: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(output index, source index, float32 weight) per tap, as OpenCV's ``computeResizeAreaTab``."""
    scale = 1.0 / (dsize / ssize)
    di, si, al = [], [], []
    for dx in range(dsize):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, ssize - fsx1)
        sx2 = min(math.floor(fsx2), ssize - 1)
        sx1 = min(math.ceil(fsx1), sx2)
        if sx1 - fsx1 > 1e-3:
            di.append(dx), si.append(sx1 - 1), al.append((sx1 - fsx1) / cell)
        for sx in range(sx1, sx2):
            di.append(dx), si.append(sx), al.append(1.0 / cell)
        if fsx2 - sx2 > 1e-3:
            di.append(dx), si.append(sx2), al.append(min(min(fsx2 - sx2, 1.0), cell) / cell)
    return np.array(di, np.int64), np.array(si, np.int64), np.array(al, np.float64).astype(np.float32)


@lru_cache(maxsize=8)
def _tables(w: int, h: int, dw: int, dh: int) -> tuple[np.ndarray, ...]:
    """Horizontal taps as (first source column, (taps, dw) weights, zero-padded) + the vertical tab."""
    di, si, al = _area_tab(w, dw)
    counts = np.bincount(di, minlength=dw)
    first = np.searchsorted(di, np.arange(dw))
    start = si[first]
    weights = np.zeros((int(counts.max()), dw), np.float32)
    for dx in range(dw):
        k = first[dx]
        weights[: counts[dx], dx] = al[k: k + counts[dx]]
    # the padded taps read columns start + t with weight 0: keep them inside the row
    start = np.minimum(start, w - weights.shape[0])
    shift = si[first] - start
    # a column whose real taps begin later than start (only near the right edge) gets leading zero-weight
    # taps: they add +0.0 before the first real tap, so the float32 sums are unchanged
    for dx in np.nonzero(shift)[0]:
        col = weights[: counts[dx], dx].copy()
        weights[:, dx] = 0.0
        weights[shift[dx]: shift[dx] + counts[dx], dx] = col
    ydi, ysi, yal = _area_tab(h, dh)
    return start, weights, ydi, ysi, yal


@njit(cache=True, nogil=True, boundscheck=False)
def _area(src: np.ndarray, start: np.ndarray, weights: np.ndarray, ydi: np.ndarray, ysi: np.ndarray,
          yal: np.ndarray, dh: int) -> np.ndarray:
    dw = start.shape[0]
    taps = weights.shape[0]
    out = np.empty((dh, dw), np.uint8)
    buf = np.zeros(dw, np.float32)
    acc = np.zeros(dw, np.float32)
    prev = ydi[0]
    for j in range(ydi.shape[0]):
        beta = yal[j]
        dy = ydi[j]
        row = src[ysi[j]]
        for dx in range(dw):
            buf[dx] = np.float32(0.0)
        for t in range(taps):
            for dx in range(dw):
                buf[dx] += np.float32(row[start[dx] + t]) * weights[t, dx]
        if dy != prev:
            for dx in range(dw):
                out[prev, dx] = min(255.0, max(0.0, np.rint(acc[dx])))
                acc[dx] = beta * buf[dx]
            prev = dy
        else:
            for dx in range(dw):
                acc[dx] += beta * buf[dx]
    for dx in range(dw):
        out[prev, dx] = min(255.0, max(0.0, np.rint(acc[dx])))
    return out


def _numba_area(img: np.ndarray, dw: int, dh: int) -> np.ndarray:
    h, w = img.shape
    start, weights, ydi, ysi, yal = _tables(w, h, dw, dh)
    return _area(img, start, weights, ydi, ysi, yal.astype(np.float32), dh)


def _check() -> bool:
    import cv2

    rng = np.random.default_rng(0)
    ok = True
    for (h, w), (dw, dh) in (((193, 257), (100, 75)), ((1944, 2580), (256, 193)), ((61, 97), (37, 23))):
        img = rng.integers(0, 256, (h, w), dtype=np.uint8)
        ok &= bool(np.array_equal(_numba_area(img, dw, dh), cv2.resize(img, (dw, dh), interpolation=cv2.INTER_AREA)))
    return ok


def resize_area(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(img, size, interpolation=cv2.INTER_AREA)`` for a 2-D uint8 ``img`` (size = (w, h))."""
    import cv2

    global _exact
    h, w = img.shape[:2]
    dw, dh = size
    sx, sy = 1.0 / (dw / w), 1.0 / (dh / h)
    # OpenCV's own test for its fast path: both scales integers (saturate_cast<int> rounds)
    generic = img.ndim == 2 and img.dtype == np.uint8 and sx >= 1 and sy >= 1 and not (
        abs(sx - round(sx)) < sys.float_info.epsilon and abs(sy - round(sy)) < sys.float_info.epsilon)
    if generic:
        if _exact is None:
            _exact = _check()
        if _exact:
            return _numba_area(np.ascontiguousarray(img), dw, dh)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def warmup() -> None:
    """Compile/load the kernel and run the exactness check now, not on the first frame."""
    global _exact
    if _exact is None:
        _exact = _check()
