"""Undecimated Haar wavelet energies ``WavEn{LL,LH,HL,HH}_s-{1..S}``.

At scale s (h = 2^(s−1)) every position (r, c) whose 2h × 2h block lies in the image and in the
ROI gives four coefficients of the orthonormal stationary (undecimated) Haar transform. With A, B,
C, D the grey-level sums of the block's h × h quadrants (top-left, top-right, bottom-left,
bottom-right):

    LL = (A + B + C + D) / 2^s        LH = (A + B − C − D) / 2^s   (low along x, high along y)
    HL = (A − B + C − D) / 2^s        HH = (A − B − C + D) / 2^s

The energy of a band is the mean of its squared coefficients over the valid positions. Grey
levels are the 0-based quantised levels (so energies are comparable between 8- and 16-bit
frames). h × h box sums come from the previous scale by the recursion
B_{2h}(r, c) = B_h(r, c) + B_h(r, c+h) + B_h(r+h, c) + B_h(r+h, c+h): one pass per scale.

**Small ROIs.** A scale is *available* when at least one 2^s × 2^s block fits in the ROI. The
vector keeps a fixed length (4 × ``scales`` entries): an unavailable scale repeats the energies
of the largest available scale, and the caller records ``wavelet_scales_available`` and a warning
in ``FeatureVector.meta``. No available scale at all (no 2 × 2 block in the ROI) is an error.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BANDS = ("LL", "LH", "HL", "HH")


def wavelet_names(scales: int) -> list[str]:
    """Names scale-major: ``WavEnLL_s-1, WavEnLH_s-1, WavEnHL_s-1, WavEnHH_s-1, WavEnLL_s-2, …``."""
    return [f"WavEn{b}_s-{s}" for s in range(1, scales + 1) for b in BANDS]


@njit(cache=True, nogil=True)
def _haar_energies(q, sentinel, scales):  # pragma: no cover - compiled
    """(energies (scales, 4), counts (scales,)) for an image without sentinel pixels."""
    h, w = q.shape
    energies = np.zeros((scales, 4))
    counts = np.zeros(scales, np.int64)
    box = np.empty((h, w), np.int32)  # B_h for the current h, valid on [0, h-hh] x [0, w-hh]
    for r in range(h):
        for c in range(w):
            box[r, c] = q[r, c]
    hh = 1
    for s in range(scales):
        rows = h - 2 * hh + 1
        cols = w - 2 * hh + 1
        if rows <= 0 or cols <= 0:
            break
        norm = 1.0 / float(1 << (s + 1))  # 1 / 2^s for the 1-based scale s + 1
        e_ll = 0.0
        e_lh = 0.0
        e_hl = 0.0
        e_hh = 0.0
        for r in range(rows):
            top = box[r]
            bot = box[r + hh]
            for c in range(cols):
                a = np.int64(top[c])
                b = np.int64(top[c + hh])
                cc = np.int64(bot[c])
                d = np.int64(bot[c + hh])
                ll = a + b + cc + d
                lh = a + b - cc - d
                hl = a - b + cc - d
                hhv = a - b - cc + d
                e_ll += float(ll * ll)
                e_lh += float(lh * lh)
                e_hl += float(hl * hl)
                e_hh += float(hhv * hhv)
                top[c] = np.int32(ll)  # in place: B_{2h}(r, c); rows >= r are still B_h
        n = rows * cols
        counts[s] = n
        f = norm * norm / n
        energies[s, 0] = e_ll * f
        energies[s, 1] = e_lh * f
        energies[s, 2] = e_hl * f
        energies[s, 3] = e_hh * f
        hh *= 2
    return energies, counts


@njit(cache=True, nogil=True)
def _haar_energies_masked(q, sentinel, scales):  # pragma: no cover - compiled
    """As :func:`_haar_energies`, counting only blocks entirely inside the ROI (q != sentinel)."""
    h, w = q.shape
    energies = np.zeros((scales, 4))
    counts = np.zeros(scales, np.int64)
    box = np.empty((h, w), np.int32)
    inside = np.empty((h, w), np.int32)  # number of ROI pixels in the h x h box
    for r in range(h):
        for c in range(w):
            v = q[r, c]
            if v == sentinel:
                box[r, c] = 0
                inside[r, c] = 0
            else:
                box[r, c] = v
                inside[r, c] = 1
    hh = 1
    for s in range(scales):
        rows = h - 2 * hh + 1
        cols = w - 2 * hh + 1
        if rows <= 0 or cols <= 0:
            break
        norm = 1.0 / float(1 << (s + 1))
        full = 4 * hh * hh
        e = np.zeros(4)
        n = 0
        for r in range(rows):
            top = box[r]
            bot = box[r + hh]
            itop = inside[r]
            ibot = inside[r + hh]
            for c in range(cols):
                a = np.int64(top[c])
                b = np.int64(top[c + hh])
                cc = np.int64(bot[c])
                d = np.int64(bot[c + hh])
                m = itop[c] + itop[c + hh] + ibot[c] + ibot[c + hh]
                ll = a + b + cc + d
                if m == full:
                    lh = a + b - cc - d
                    hl = a - b + cc - d
                    hhv = a - b - cc + d
                    e[0] += float(ll * ll)
                    e[1] += float(lh * lh)
                    e[2] += float(hl * hl)
                    e[3] += float(hhv * hhv)
                    n += 1
                top[c] = np.int32(ll)
                itop[c] = m
        counts[s] = n
        if n > 0:
            f = norm * norm / n
            for b in range(4):
                energies[s, b] = e[b] * f
        hh *= 2
    return energies, counts


def haar_energies(q: np.ndarray, levels: int, scales: int, masked: bool) -> tuple[np.ndarray, int]:
    """(energies (scales, 4) with unavailable scales filled, number of available scales).

    Scales are available from 1 up to the first one without a valid block. Returns 0 available
    scales (and zeros) when not even a 2 × 2 block fits: the caller raises.
    """
    kernel = _haar_energies_masked if masked else _haar_energies
    energies, counts = kernel(q, levels, scales)
    available = 0
    while available < scales and counts[available] > 0:
        available += 1
    if 0 < available < scales:
        energies[available:] = energies[available - 1]
    return energies, available
