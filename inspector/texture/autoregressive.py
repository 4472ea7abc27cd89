"""Causal 2-D autoregressive (AR) model features: ``Teta1 … Teta4`` and ``Sigma``.

MaZda does not publish its neighbourhood, so we fix it (see ``docs/texture-features.md``): each
grey level x(r, c) is predicted from its four causal neighbours (raster order)

    x(r, c) = θ₀ + θ₁·x(r, c−1) + θ₂·x(r−1, c) + θ₃·x(r−1, c−1) + θ₄·x(r−1, c+1) + e(r, c)
              (intercept) W        N          NW           NE

fitted by ordinary least squares over every ROI pixel whose four neighbours are also in the ROI.
``Teta1..Teta4`` are θ₁…θ₄ (the intercept is not reported: it only carries the mean) and
``Sigma`` is the RMS residual, √(Σe²/n) (divided by n, not n − 5).

The kernel accumulates, in exact integer arithmetic, the sums and the 15 cross-products of the
five shifted signals (y, W, N, NW, NE) in one branch-free, vectorised pass; the centred 5×5 moment matrix is formed exactly in
Python integers, and the 4×4 normal equations are solved with ``lstsq`` (minimum-norm solution if
the neighbours are collinear, e.g. a texture of pure vertical stripes).
"""

from __future__ import annotations

import numpy as np
from numba import njit

AR_FEATURES = ("Teta1", "Teta2", "Teta3", "Teta4", "Sigma")
#: fewer fitting samples than this make the model meaningless: the caller raises ``too_small``
MIN_AR_SAMPLES = 16


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _ar_row(row, up, sentinel, acc):  # pragma: no cover - compiled
    """Adds one row's count, 5 sums and 15 cross-products to ``acc`` (branch-free, vectorised).

    A pixel counts when it and its W, N, NW, NE neighbours are all inside the ROI (not the
    sentinel); excluded pixels are multiplied by 0. Products fit int32 (levels ≤ 256).
    """
    w = row.shape[0]
    n = np.int64(0)
    s0 = np.int64(0)
    s1 = np.int64(0)
    s2 = np.int64(0)
    s3 = np.int64(0)
    s4 = np.int64(0)
    m00 = np.int64(0)
    m01 = np.int64(0)
    m02 = np.int64(0)
    m03 = np.int64(0)
    m04 = np.int64(0)
    m11 = np.int64(0)
    m12 = np.int64(0)
    m13 = np.int64(0)
    m14 = np.int64(0)
    m22 = np.int64(0)
    m23 = np.int64(0)
    m24 = np.int64(0)
    m33 = np.int64(0)
    m34 = np.int64(0)
    m44 = np.int64(0)
    for c in range(1, w - 1):
        y = np.int32(row[c])
        a = np.int32(row[c - 1])
        b = np.int32(up[c])
        d = np.int32(up[c - 1])
        e = np.int32(up[c + 1])
        v = np.int32((y != sentinel) & (a != sentinel) & (b != sentinel) & (d != sentinel) & (e != sentinel))
        y *= v
        a *= v
        b *= v
        d *= v
        e *= v
        n += v
        s0 += y
        s1 += a
        s2 += b
        s3 += d
        s4 += e
        m00 += y * y
        m01 += y * a
        m02 += y * b
        m03 += y * d
        m04 += y * e
        m11 += a * a
        m12 += a * b
        m13 += a * d
        m14 += a * e
        m22 += b * b
        m23 += b * d
        m24 += b * e
        m33 += d * d
        m34 += d * e
        m44 += e * e
    acc[0] += n
    acc[1] += s0
    acc[2] += s1
    acc[3] += s2
    acc[4] += s3
    acc[5] += s4
    acc[6] += m00
    acc[7] += m01
    acc[8] += m02
    acc[9] += m03
    acc[10] += m04
    acc[11] += m11
    acc[12] += m12
    acc[13] += m13
    acc[14] += m14
    acc[15] += m22
    acc[16] += m23
    acc[17] += m24
    acc[18] += m33
    acc[19] += m34
    acc[20] += m44


@njit(cache=True, nogil=True, boundscheck=False)
def _ar_moments(q, sentinel):  # pragma: no cover - compiled
    """[n, 5 sums, 15 upper-triangle products] over valid pixels; signals (y, W, N, NW, NE)."""
    h = q.shape[0]
    acc = np.zeros(21, np.int64)
    for r in range(1, h):
        _ar_row(q[r], q[r - 1], sentinel, acc)
    return acc


def ar_solve(n: int, sums: np.ndarray, products: np.ndarray) -> np.ndarray:
    """(θ₁…θ₄, σ) from the raw moments of (y, W, N, NW, NE); needs ``n >= MIN_AR_SAMPLES``."""
    s = [int(v) for v in sums]
    # exact centred scatter matrix, scaled by n: n·Σab − Σa·Σb
    c = np.array(
        [[float(n * int(products[i, j]) - s[i] * s[j]) for j in range(5)] for i in range(5)]
    )
    c /= float(n) * float(n)  # covariance (population)
    cxx = c[1:, 1:]
    cxy = c[1:, 0]
    theta, *_ = np.linalg.lstsq(cxx, cxy, rcond=1e-12)
    resid_var = c[0, 0] - 2.0 * theta @ cxy + theta @ cxx @ theta
    sigma = float(np.sqrt(max(resid_var, 0.0)))
    return np.array([*theta.tolist(), sigma], dtype=np.float64)


def ar_moments(q: np.ndarray, levels: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Number of fitting samples, sums and cross-products (sentinel ``levels`` = outside ROI)."""
    acc = _ar_moments(q, levels)
    m = np.zeros((5, 5), np.int64)
    m[np.triu_indices(5)] = acc[6:]
    m = m + np.triu(m, 1).T
    return int(acc[0]), acc[1:6].copy(), m


def ar_features(q: np.ndarray, levels: int) -> np.ndarray:
    """The 5 AR features of a quantised image (raises ``ValueError`` with too few samples)."""
    n, s, m = ar_moments(q, levels)
    if n < MIN_AR_SAMPLES:
        raise ValueError(f"only {n} pixels with a complete causal neighbourhood")
    return ar_solve(n, s, m)
