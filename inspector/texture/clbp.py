"""Completed LBP, sign × magnitude joint histograms (Guo, Zhang & Zhang, IEEE TIP 19(6) 2010): the ``clbp``
feature family, next to ``mazda`` and ``lbp``.

For a pixel with grey value g_c and its P circle neighbours g_p at radius R (bilinear, as scikit-image
samples them), the local differences d_p = g_p − g_c are split into

* signs s_p = [d_p ≥ 0] — their riu2 code (0…P ones of a uniform pattern, P + 1 otherwise) is CLBP_S,
  identical to the ``lbp`` family's code and to scikit-image's ``local_binary_pattern(…, "uniform")``;
* magnitudes m_p = [|d_p| ≥ μ], μ the mean |d_p| over all points and ROI pixels of the image — their
  riu2 code is CLBP_M (the local contrast pattern that the sign code throws away).

The family is the normalised 2-D histogram of (CLBP_S, CLBP_M) per (P, R) of :data:`CLBP_SCALES`:
10² + 18² + 26² = 1100 features named ``CLBP(P,R)S<s>M<m>``. Both riu2 codes ignore where on the
circle a pattern starts, so a quarter turn or a mirror of the image (which permute the circle samples
for P = 8, 16, 24) gives the same histograms; the pair is invariant to an affine grey change
g → a·g + b with a > 0 (μ scales with a) but not to a non-linear one (the magnitudes re-order) — all
tested. On NEU it lifts MaZda + linear SVM from 98.4 % to 99.6 % (``docs/texture-experiments.md``).

Hand-written because scikit-image has no magnitude component (its ``local_binary_pattern`` codes the
signs only); numba, because it is 1.7–2.2× less CPU than the same definition in vectorised numpy
(``bench/bench_texture_clbp.py``, 200 × 200) and needs two passes over the frame (signs and Σ|d|, then magnitudes
against μ) without ever holding the (P, H, W) difference stack numpy needs (1 GB at P = 24, 2580 × 1944).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from inspector.errors import BadFrameError
from inspector.texture.lbp import LBP_SCALES, _points

#: (points, radius) of each scale, the same as the ``lbp`` family's
CLBP_SCALES: tuple[tuple[int, int], ...] = LBP_SCALES


def clbp_names(scales: tuple[tuple[int, int], ...] = CLBP_SCALES) -> tuple[str, ...]:
    return tuple(f"CLBP({p},{r})S{s}M{m}" for p, r in scales for s in range(p + 2) for m in range(p + 2))


@njit(cache=True, nogil=True, boundscheck=False)
def _pass(img, r, fr, fc, cr, cc, dr, dc, mag, mu, acc, out) -> None:
    """riu2 code of [key_p ≥ mu] for the pixels at least ``r`` from the border (``out`` (H − 2r, W − 2r)),
    key = d_p (``mag`` 0: the sign code, ``mu`` 0) or |d_p| (``mag`` 1: the magnitude code); the sign
    pass also adds each pixel's Σ|d_p| to ``acc``.

    One circle point at a time over a band of 8 rows (the band's counters stay in cache), visiting the
    points in the order P−1, 0, 1, …, P−1 so that the first visit only sets the previous bit and the
    P transitions close the circle; the bilinear samples use scikit-image's operations in its order, so
    the sign code equals its ``local_binary_pattern(…, "uniform")``. 1.5–2× less CPU than the same
    kernel looping over the points inside each pixel (which cannot keep its bits in registers)."""
    p = fr.shape[0]
    h, w = out.shape
    band = 8
    ones = np.empty((band, w), np.uint8)
    changes = np.empty((band, w), np.uint8)
    prev = np.empty((band, w), np.uint8)
    for y0 in range(0, h, band):
        nb = min(band, h - y0)
        ones[:] = 0
        changes[:] = 0
        for k in range(p + 1):
            i = p - 1 if k == 0 else k - 1
            a_fr, a_fc, a_cr, a_cc, a_dr, a_dc = fr[i], fc[i], cr[i], cc[i], dr[i], dc[i]
            count = np.uint8(1 if k > 0 else 0)
            acc_w = 1.0 if (k > 0 and mag == 0.0) else 0.0
            for yy in range(nb):
                y = y0 + yy + r
                for x in range(w):
                    xx = x + r
                    c = float(img[y, xx])
                    tl = float(img[y + a_fr, xx + a_fc])
                    tr = float(img[y + a_fr, xx + a_cc])
                    bl = float(img[y + a_cr, xx + a_fc])
                    br = float(img[y + a_cr, xx + a_cc])
                    top = (1 - a_dc) * tl + a_dc * tr
                    bottom = (1 - a_dc) * bl + a_dc * br
                    v = (1 - a_dr) * top + a_dr * bottom - c
                    a = abs(v)
                    b = np.uint8((a * mag + v * (1.0 - mag)) >= mu)
                    acc[y0 + yy, x] += a * acc_w
                    ones[yy, x] += b * count
                    changes[yy, x] += (b ^ prev[yy, x]) * count
                    prev[yy, x] = b
        for yy in range(nb):
            for x in range(w):
                out[y0 + yy, x] = ones[yy, x] if changes[yy, x] <= 2 else p + 1


def clbp_codes(gray: np.ndarray, p: int, r: int, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(CLBP_S, CLBP_M) riu2 codes (uint8) of the interior pixels of ``gray`` (border of ``r`` left out);
    ``keep`` (interior shape, bool) limits the pixels that set the magnitude threshold μ."""
    h, w = gray.shape
    s = np.empty((h - 2 * r, w - 2 * r), np.uint8)
    m = np.empty_like(s)
    rp, cp = _points(p, r)
    fr, fc = np.floor(rp).astype(np.int64), np.floor(cp).astype(np.int64)
    cr, cc = np.ceil(rp).astype(np.int64), np.ceil(cp).astype(np.int64)
    dr, dc = rp - np.floor(rp), cp - np.floor(cp)
    img = np.ascontiguousarray(gray if gray.dtype in (np.uint8, np.uint16) else np.asarray(gray, dtype=np.float64))
    acc = np.zeros(s.shape)
    _pass(img, r, fr, fc, cr, cc, dr, dc, 0.0, 0.0, acc, s)
    kept = acc if keep is None else acc[np.asarray(keep, bool)]
    mu = float(kept.sum()) / (kept.size * p) if kept.size else 0.0
    _pass(img, r, fr, fc, cr, cc, dr, dc, 1.0, mu, acc, m)
    return s, m


def clbp_features(gray: np.ndarray, mask: np.ndarray | None = None,
                  scales: tuple[tuple[int, int], ...] = CLBP_SCALES) -> np.ndarray:
    """Concatenated normalised S × M joint histograms of ``gray`` (2-D) over ``mask`` (None = whole image)."""
    if gray.ndim != 2:
        raise BadFrameError(f"CLBP needs a 2-D grey image, got shape {gray.shape}", "pixel_format")
    out = []
    for p, r in scales:
        if min(gray.shape) <= 2 * r + 1:
            raise BadFrameError(f"image too small for CLBP radius {r}: {gray.shape}", "too_small")
        keep = None if mask is None else np.asarray(mask, bool)[r:-r, r:-r]
        if keep is not None and not keep.any():
            raise BadFrameError("ROI too small for CLBP: no pixel with its whole circle inside the image", "too_small")
        s, m = clbp_codes(gray, p, r, keep)
        joint = s.astype(np.intp) * (p + 2) + m
        if keep is not None:
            joint = joint[keep]
        out.append(np.bincount(joint.ravel(), minlength=(p + 2) ** 2) / joint.size)
    return np.concatenate(out)
