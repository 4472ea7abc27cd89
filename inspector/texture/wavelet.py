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
B_{2h}(r, c) = B_h(r, c) + B_h(r, c+h) + B_h(r+h, c) + B_h(r+h, c+h), one vectorised row at a time;
all scales run as a single row pipeline over ring buffers (the working set stays in cache, no
full-size array per scale). Integer box sums (int32: exact up to ``MAX_SCALES`` = 10 for 8-bit levels) and float64
sums of squares (fastmath lets LLVM reorder that sum; agreement with a direct transform ≈ 1e-11).

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


@njit(cache=True, nogil=True, boundscheck=False, fastmath=True)
def _row(top, bot, out, hh, cols):  # pragma: no cover - compiled
    """One row of one scale: writes B_2h into ``out``, returns the 4 sums of squared coefficients.

    The quadrant sums are done in float64 (exact: integers far below 2^53) so the loop is one
    type throughout, and indices are unsigned: a signed ``top[c + hh]`` makes numba emit its
    negative-index wraparound, which LLVM vectorises as gathers (2.8x slower). fastmath only
    reorders the float64 sums of squares.
    """
    e0 = 0.0
    e1 = 0.0
    e2 = 0.0
    e3 = 0.0
    h = np.uintp(hh)
    for c in range(cols):
        u = np.uintp(c)
        a = np.float64(top[u])
        b = np.float64(top[u + h])
        cc = np.float64(bot[u])
        d = np.float64(bot[u + h])
        p = a + b
        m = a - b
        p2 = cc + d
        m2 = cc - d
        ll = p + p2
        out[u] = np.int32(ll)
        x1 = p - p2
        x2 = m + m2
        x3 = m - m2
        e0 += ll * ll
        e1 += x1 * x1
        e2 += x2 * x2
        e3 += x3 * x3
    return e0, e1, e2, e3


@njit(cache=True, nogil=True, boundscheck=False, fastmath=True)
def _row_masked(top, bot, out, itop, ibot, iout, full, hh, cols):  # pragma: no cover - compiled
    """As :func:`_row`, also summing ROI pixel counts; only blocks with ``full`` ROI pixels count."""
    e0 = 0.0
    e1 = 0.0
    e2 = 0.0
    e3 = 0.0
    n = 0
    h = np.uintp(hh)
    for c in range(cols):  # unsigned indices and float64 sums: see _row
        u = np.uintp(c)
        a = np.float64(top[u])
        b = np.float64(top[u + h])
        cc = np.float64(bot[u])
        d = np.float64(bot[u + h])
        p = a + b
        m = a - b
        p2 = cc + d
        m2 = cc - d
        ll = p + p2
        out[u] = np.int32(ll)
        k = itop[u] + itop[u + h] + ibot[u] + ibot[u + h]
        iout[u] = k
        valid = np.int32(k == full)
        n += valid
        v = np.float64(valid)
        x0 = ll * v
        x1 = (p - p2) * v
        x2 = (m + m2) * v
        x3 = (m - m2) * v
        e0 += x0 * x0
        e1 += x1 * x1
        e2 += x2 * x2
        e3 += x3 * x3
    return e0, e1, e2, e3, n


@njit(cache=True, nogil=True)
def _schedule(scales):  # pragma: no cover - compiled
    """Ring-buffer layout of the row pipeline: (rows kept, first ring row, lag) per scale.

    Scale s (half-size hh = 2^(s-1)) turns rows r and r + hh of B_hh into row r of B_2hh; its
    output is read by scale s + 1 at rows r and r + 2hh, so 2hh + 1 rows of it are kept (one for
    the last scale, whose rows are never read). Row r of scale s is computed at pipeline step
    t = r + lag[s], once both of its input rows exist.
    """
    sizes = np.zeros(scales, np.int64)
    first = np.zeros(scales + 1, np.int64)
    lags = np.zeros(scales, np.int64)
    hh = 1
    for s in range(scales):
        sizes[s] = 2 * hh + 1 if s < scales - 1 else 1  # the last scale's rows are never read
        first[s + 1] = first[s] + sizes[s]
        if s > 0:
            lags[s] = lags[s - 1] + hh
        hh *= 2
    return sizes, first, lags


@njit(cache=True, nogil=True, boundscheck=False)
def _haar_plain(q, scales):  # pragma: no cover - compiled
    """(sums of squares (scales, 4), block counts (scales,)) over the whole image.

    All scales run as one row pipeline: every B_h row lives in a small ring buffer (≈ 2^scales
    rows in all, cache-resident) instead of a full-size array per scale.
    """
    h, w = q.shape
    sums = np.zeros((scales, 4))
    counts = np.zeros(scales, np.int64)
    sizes, first, lags = _schedule(scales)
    ring = np.empty((first[scales], w), np.int32)
    for t in range(h + lags[scales - 1]):
        hh = 1
        for s in range(scales):
            rows = h - 2 * hh + 1
            cols = w - 2 * hh + 1
            if rows <= 0 or cols <= 0:
                break
            r = t - lags[s]
            if 0 <= r < rows:
                out = ring[first[s] + r % sizes[s]]
                if s == 0:
                    e0, e1, e2, e3 = _row(q[r], q[r + 1], out, 1, cols)
                else:
                    size = sizes[s - 1]
                    base = first[s - 1]
                    e0, e1, e2, e3 = _row(ring[base + r % size], ring[base + (r + hh) % size], out, hh, cols)
                sums[s, 0] += e0
                sums[s, 1] += e1
                sums[s, 2] += e2
                sums[s, 3] += e3
                counts[s] += cols
            hh *= 2
    return sums, counts


@njit(cache=True, nogil=True, boundscheck=False)
def _haar_masked(q, sentinel, scales):  # pragma: no cover - compiled
    """As :func:`_haar_plain`, counting only blocks entirely inside the ROI (q != sentinel)."""
    h, w = q.shape
    sums = np.zeros((scales, 4))
    counts = np.zeros(scales, np.int64)
    img = np.empty((h, w), np.int32)  # levels, 0 outside the ROI
    ins = np.empty((h, w), np.int32)  # 1 inside the ROI
    for r in range(h):
        for c in range(w):
            v = q[r, c]
            ok = v != sentinel
            img[r, c] = v if ok else 0
            ins[r, c] = 1 if ok else 0
    sizes, first, lags = _schedule(scales)
    ring = np.empty((first[scales], w), np.int32)
    iring = np.empty((first[scales], w), np.int32)  # ROI pixels in each box
    for t in range(h + lags[scales - 1]):
        hh = 1
        for s in range(scales):
            rows = h - 2 * hh + 1
            cols = w - 2 * hh + 1
            if rows <= 0 or cols <= 0:
                break
            r = t - lags[s]
            if 0 <= r < rows:
                k = first[s] + r % sizes[s]
                if s == 0:
                    e0, e1, e2, e3, n = _row_masked(
                        img[r], img[r + 1], ring[k], ins[r], ins[r + 1], iring[k], 4, 1, cols
                    )
                else:
                    size = sizes[s - 1]
                    top = first[s - 1] + r % size
                    bot = first[s - 1] + (r + hh) % size
                    e0, e1, e2, e3, n = _row_masked(
                        ring[top], ring[bot], ring[k], iring[top], iring[bot], iring[k], 4 * hh * hh, hh, cols
                    )
                sums[s, 0] += e0
                sums[s, 1] += e1
                sums[s, 2] += e2
                sums[s, 3] += e3
                counts[s] += n
            hh *= 2
    return sums, counts


def haar_energies(q: np.ndarray, levels: int, scales: int, masked: bool) -> tuple[np.ndarray, int]:
    """(energies (scales, 4) with unavailable scales filled, number of available scales).

    Scales are available from 1 up to the first one without a valid block. Returns 0 available
    scales (and zeros) when not even a 2 × 2 block fits: the caller raises.
    """
    sums, counts = _haar_masked(q, levels, scales) if masked else _haar_plain(q, scales)
    energies = np.zeros((scales, 4))
    scale_norm = 4.0 ** -np.arange(1, scales + 1)  # orthonormal Haar: coefficients / 2^s, squared
    nz = counts > 0
    energies[nz] = sums[nz] * (scale_norm[nz] / counts[nz])[:, None]
    available = 0
    while available < scales and counts[available] > 0:
        available += 1
    if 0 < available < scales:
        energies[available:] = energies[available - 1]
    return energies, available
