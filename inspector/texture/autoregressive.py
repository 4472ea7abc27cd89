"""Causal 2-D autoregressive (AR) model features: ``Teta1 … Teta4`` and ``Sigma``.

MaZda does not publish its neighbourhood, so we fix it (see ``docs/texture-features.md``): each
grey level x(r, c) is predicted from its four causal neighbours (raster order)

    x(r, c) = θ₀ + θ₁·x(r, c−1) + θ₂·x(r−1, c) + θ₃·x(r−1, c−1) + θ₄·x(r−1, c+1) + e(r, c)
              (intercept) W        N          NW           NE

fitted by ordinary least squares over every ROI pixel whose four neighbours are also in the ROI.
``Teta1..Teta4`` are θ₁…θ₄ (the intercept is not reported: it only carries the mean) and
``Sigma`` is the RMS residual, √(Σe²/n) (divided by n, not n − 5).

The kernel accumulates, in exact int64 arithmetic, the sums and the 15 cross-products of the five
shifted signals (y, W, N, NW, NE) in one pass; the centred 5×5 moment matrix is formed exactly in
Python integers, and the 4×4 normal equations are solved with ``lstsq`` (minimum-norm solution if
the neighbours are collinear, e.g. a texture of pure vertical stripes).
"""

from __future__ import annotations

import numpy as np
from numba import njit

AR_FEATURES = ("Teta1", "Teta2", "Teta3", "Teta4", "Sigma")
#: fewer fitting samples than this make the model meaningless: the caller raises ``too_small``
MIN_AR_SAMPLES = 16


@njit(cache=True, nogil=True)
def _ar_moments(q, sentinel):  # pragma: no cover - compiled
    """(n, sums[5], products[5, 5]) over valid pixels; signals (y, W, N, NW, NE)."""
    h, w = q.shape
    s = np.zeros(5, np.int64)
    m = np.zeros((5, 5), np.int64)
    n = 0
    x = np.zeros(5, np.int64)
    for r in range(1, h):
        row = q[r]
        up = q[r - 1]
        for c in range(1, w - 1):
            y = row[c]
            a = row[c - 1]
            b = up[c]
            d = up[c - 1]
            e = up[c + 1]
            if y == sentinel or a == sentinel or b == sentinel or d == sentinel or e == sentinel:
                continue
            x[0] = y
            x[1] = a
            x[2] = b
            x[3] = d
            x[4] = e
            n += 1
            for i in range(5):
                xi = x[i]
                s[i] += xi
                for j in range(i, 5):
                    m[i, j] += xi * x[j]
    for i in range(5):
        for j in range(i):
            m[i, j] = m[j, i]
    return n, s, m


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
    n, s, m = _ar_moments(q, levels)
    return int(n), s, m


def ar_features(q: np.ndarray, levels: int) -> np.ndarray:
    """The 5 AR features of a quantised image (raises ``ValueError`` with too few samples)."""
    n, s, m = ar_moments(q, levels)
    if n < MIN_AR_SAMPLES:
        raise ValueError(f"only {n} pixels with a complete causal neighbourhood")
    return ar_solve(n, s, m)
