"""Rotation-invariant uniform LBP histograms (Ojala, Pietikäinen & Mäenpää, TPAMI 2002): the ``lbp``
feature family, next to the 281 MaZda-style features (family ``mazda``).

For every (P, R) of :data:`LBP_SCALES` the image gets scikit-image's
``local_binary_pattern(gray, P, R, method="uniform")`` — the riu2 code: the number of 1-bits of a
uniform pattern (0…P), or P + 1 for every non-uniform pattern — and the normalised histogram of its
P + 2 codes over the ROI (pixels closer than R to the image border are left out: their circle
leaves the image). Three scales give 10 + 18 + 26 = 54 features named ``LBP(P,R)riu2_<code>``.
LBP is invariant to monotonic grey changes, so it is computed on the grey frame itself (no stretch,
no quantisation); a 16-bit frame is used as is. The codes come from a numba kernel equal, code for
code, to scikit-image's (tested), several times faster (``bench/bench_texture.py``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from inspector.errors import BadFrameError

#: (points, radius) of each scale
LBP_SCALES: tuple[tuple[int, int], ...] = ((8, 1), (16, 2), (24, 3))


def lbp_names(scales: tuple[tuple[int, int], ...] = LBP_SCALES) -> tuple[str, ...]:
    return tuple(f"LBP({p},{r})riu2_{c}" for p, r in scales for c in range(p + 2))


def _points(p: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Circle sample offsets exactly as scikit-image computes them (rounded to 5 decimals)."""
    ang = 2 * np.pi * np.arange(p, dtype=np.float64) / p
    return np.round(-r * np.sin(ang), 5), np.round(r * np.cos(ang), 5)


@njit(cache=True, nogil=True, boundscheck=False)
def _riu2_kernel(img: np.ndarray, rp: np.ndarray, cp: np.ndarray, r: int, out: np.ndarray) -> None:
    """riu2 codes of the pixels at least ``r`` from the border (out has shape (H - 2r, W - 2r)).

    Bilinear interpolation with the operations of scikit-image's ``bilinear_interpolation`` in the same
    order, so every comparison with the centre — and every code — is identical to its
    ``local_binary_pattern(…, method="uniform")``; scikit-image recomputes the floor/ceil and weights
    per pixel and point and maps codes in a second pass, this computes them once per point."""
    p = rp.shape[0]
    h, w = out.shape
    fr = np.empty(p, np.int64)
    fc = np.empty(p, np.int64)
    cr = np.empty(p, np.int64)
    cc = np.empty(p, np.int64)
    dr = np.empty(p)
    dc = np.empty(p)
    for i in range(p):
        fr[i] = int(np.floor(rp[i]))
        fc[i] = int(np.floor(cp[i]))
        cr[i] = int(np.ceil(rp[i]))
        cc[i] = int(np.ceil(cp[i]))
        dr[i] = rp[i] - np.floor(rp[i])
        dc[i] = cp[i] - np.floor(cp[i])
    bits = np.empty(p, np.uint8)
    for y in range(h):
        yy = y + r
        for x in range(w):
            xx = x + r
            c = float(img[yy, xx])
            ones = 0
            for i in range(p):
                tl = float(img[yy + fr[i], xx + fc[i]])
                tr = float(img[yy + fr[i], xx + cc[i]])
                bl = float(img[yy + cr[i], xx + fc[i]])
                br = float(img[yy + cr[i], xx + cc[i]])
                top = (1 - dc[i]) * tl + dc[i] * tr
                bottom = (1 - dc[i]) * bl + dc[i] * br
                v = (1 - dr[i]) * top + dr[i] * bottom
                b = 1 if v - c >= 0 else 0
                bits[i] = b
                ones += b
            changes = 0
            for i in range(p - 1):
                changes += bits[i] != bits[i + 1]
            changes += bits[p - 1] != bits[0]
            out[y, x] = ones if changes <= 2 else p + 1


def riu2_codes(gray: np.ndarray, p: int, r: int) -> np.ndarray:
    """riu2 LBP codes (uint8) of the interior pixels of ``gray`` (border of ``r`` left out)."""
    h, w = gray.shape
    out = np.empty((h - 2 * r, w - 2 * r), np.uint8)
    rp, cp = _points(p, r)
    img = gray if gray.dtype in (np.uint8, np.uint16) else np.ascontiguousarray(gray, dtype=np.float64)
    _riu2_kernel(np.ascontiguousarray(img), rp, cp, r, out)
    return out


def lbp_features(gray: np.ndarray, mask: np.ndarray | None = None,
                 scales: tuple[tuple[int, int], ...] = LBP_SCALES) -> np.ndarray:
    """Concatenated normalised riu2 histograms of ``gray`` (2-D) over ``mask`` (None = whole image)."""
    if gray.ndim != 2:
        raise BadFrameError(f"LBP needs a 2-D grey image, got shape {gray.shape}", "pixel_format")
    out = []
    for p, r in scales:
        if min(gray.shape) <= 2 * r + 1:
            raise BadFrameError(f"image too small for LBP radius {r}: {gray.shape}", "too_small")
        codes = riu2_codes(gray, p, r)
        if mask is not None:
            codes = codes[mask[r:-r, r:-r]]
        if codes.size == 0:
            raise BadFrameError("ROI too small for LBP: no pixel with its whole circle inside the image", "too_small")
        out.append(np.bincount(codes.ravel(), minlength=p + 2)[: p + 2] / codes.size)
    return np.concatenate(out)
