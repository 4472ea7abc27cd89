"""First-order (histogram) features: ``Mean``, ``Variance``, ``Skewness``, ``Kurtosis``.

Computed from the histogram of the 0-based quantised grey levels of the ROI pixels (so they are
on the same scale as the GLCM features and independent of the camera's bit depth):

* ``Mean`` μ = Σ i·h(i)        (MaZda's 1-based levels would give μ + 1)
* ``Variance`` σ² = Σ (i − μ)² h(i)       (population variance, ddof = 0)
* ``Skewness`` Σ (i − μ)³ h(i) / σ³        (``scipy.stats.skew``, bias=True)
* ``Kurtosis`` Σ (i − μ)⁴ h(i) / σ⁴ − 3    (excess kurtosis, ``scipy.stats.kurtosis`` default)

σ > 0 is guaranteed by the preprocessing (a constant ROI is rejected before).
"""

from __future__ import annotations

import numpy as np

HIST_FEATURES = ("Mean", "Variance", "Skewness", "Kurtosis")


def level_histogram(q: np.ndarray, levels: int) -> np.ndarray:
    """Counts of each level 0…levels-1 (the sentinel ``levels`` is ignored)."""
    if q.dtype == np.uint8 and q.size < 1 << 24:  # calcHist counts in float32: exact below 2^24
        import cv2

        hist = cv2.calcHist([q], [0], None, [levels], [0, levels]).ravel()
        return hist.astype(np.int64)
    return np.bincount(q.ravel(), minlength=levels + 1)[:levels].astype(np.int64)


def histogram_features(hist: np.ndarray) -> np.ndarray:
    """The 4 features from a level histogram (counts, any scale)."""
    p = hist.astype(np.float64) / float(hist.sum())
    g = np.arange(len(hist), dtype=np.float64)
    mu = p @ g
    dev = g - mu
    var = p @ dev**2
    if var <= 0:
        raise ValueError("histogram features of a single grey level")
    skew = (p @ dev**3) / var**1.5
    kurt = (p @ dev**4) / var**2 - 3.0
    return np.array([mu, var, skew, kurt])
