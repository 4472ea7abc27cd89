"""Grey-level run-length features in four directions (Galloway 1975, as MaZda names them).

A run is a maximal sequence of consecutive collinear ROI pixels with the same grey level; runs
stop at the ROI boundary. Directions, as MaZda names them (rows grow downwards):

* ``Horzl_``  along a row;
* ``Vertl_``  along a column;
* ``45dgr_``  along the anti-diagonal (up-right, r + c constant);
* ``135dr_``  along the main diagonal (up-left, r − c constant).

With n(i, j) the number of runs of level i and length j, N_r = Σ n(i, j) and N_p the number of ROI
pixels:

* ``RLNonUni`` = Σ_j (Σ_i n(i, j))² / N_r    (run-length non-uniformity)
* ``GLevNonU`` = Σ_i (Σ_j n(i, j))² / N_r    (grey-level non-uniformity)
* ``LngREmph`` = Σ n(i, j) · j² / N_r         (long-run emphasis)
* ``ShrtREmp`` = Σ n(i, j) / j² / N_r         (short-run emphasis)
* ``Fraction`` = N_r / N_p                    (fraction of image in runs)

Only the two marginals of n(i, j) are needed, so the kernel accumulates runs per level and per
length for all four directions in one pass over the image, keeping the open run length of each
column / diagonal in a row-sized state array.
"""

from __future__ import annotations

import numpy as np
from numba import njit

DIRECTIONS = ("Horzl_", "Vertl_", "45dgr_", "135dr_")
RL_FEATURES = ("RLNonUni", "GLevNonU", "LngREmph", "ShrtREmp", "Fraction")


def runlength_names() -> list[str]:
    return [d + f for d in DIRECTIONS for f in RL_FEATURES]


@njit(cache=True, nogil=True)
def _run_marginals(q, sentinel):  # pragma: no cover - compiled
    """(per_level (4, sentinel), per_length (4, max(H, W) + 1)) run counts for the 4 directions."""
    h, w = q.shape
    per_level = np.zeros((4, sentinel), np.int64)
    per_length = np.zeros((4, max(h, w) + 1), np.int64)
    # open run lengths ending at the previous row, per column: vertical, 135 (from c-1), 45 (from c+1)
    v_prev = np.zeros(w, np.int64)
    d_prev = np.zeros(w, np.int64)
    a_prev = np.zeros(w, np.int64)
    v_cur = np.zeros(w, np.int64)
    d_cur = np.zeros(w, np.int64)
    a_cur = np.zeros(w, np.int64)
    for r in range(h):
        row = q[r]
        has_up = r > 0
        has_down = r + 1 < h
        up = q[r - 1] if has_up else row
        down = q[r + 1] if has_down else row
        hlen = 0
        for c in range(w):
            v = row[c]
            if v == sentinel:
                v_cur[c] = 0
                d_cur[c] = 0
                a_cur[c] = 0
                hlen = 0
                continue
            # horizontal
            if c > 0 and row[c - 1] == v:
                hlen += 1
            else:
                hlen = 1
            if c + 1 >= w or row[c + 1] != v:
                per_level[0, v] += 1
                per_length[0, hlen] += 1
            # vertical
            n = v_prev[c] + 1 if (has_up and up[c] == v) else 1
            v_cur[c] = n
            if not has_down or down[c] != v:
                per_level[1, v] += 1
                per_length[1, n] += 1
            # 45 degrees: predecessor (r-1, c+1), successor (r+1, c-1)
            n = a_prev[c + 1] + 1 if (has_up and c + 1 < w and up[c + 1] == v) else 1
            a_cur[c] = n
            if not has_down or c == 0 or down[c - 1] != v:
                per_level[2, v] += 1
                per_length[2, n] += 1
            # 135 degrees: predecessor (r-1, c-1), successor (r+1, c+1)
            n = d_prev[c - 1] + 1 if (has_up and c > 0 and up[c - 1] == v) else 1
            d_cur[c] = n
            if not has_down or c + 1 >= w or down[c + 1] != v:
                per_level[3, v] += 1
                per_length[3, n] += 1
        v_prev, v_cur = v_cur, v_prev
        d_prev, d_cur = d_cur, d_prev
        a_prev, a_cur = a_cur, a_prev
    return per_level, per_length


def features_from_marginals(per_level: np.ndarray, per_length: np.ndarray, n_pixels: int) -> np.ndarray:
    """(4, 5) features from run counts per level (4, L) and per length (4, M)."""
    lengths = np.arange(per_length.shape[1], dtype=np.float64)
    inv_sq = np.zeros_like(lengths)
    inv_sq[1:] = 1.0 / lengths[1:] ** 2
    n_runs = per_level.sum(axis=1).astype(np.float64)
    pl = per_length.astype(np.float64)
    pg = per_level.astype(np.float64)
    out = np.empty((per_level.shape[0], len(RL_FEATURES)))
    out[:, 0] = (pl * pl).sum(axis=1) / n_runs
    out[:, 1] = (pg * pg).sum(axis=1) / n_runs
    out[:, 2] = pl @ (lengths * lengths) / n_runs
    out[:, 3] = pl @ inv_sq / n_runs
    out[:, 4] = n_runs / float(n_pixels)
    return out


def runlength_features(q: np.ndarray, levels: int, n_pixels: int) -> np.ndarray:
    """The 20 run-length features (direction-major, MaZda order) of a quantised image.

    ``q`` holds 0-based levels and the sentinel ``levels`` outside the ROI; ``n_pixels`` is the
    number of ROI pixels.
    """
    per_level, per_length = _run_marginals(q, levels)
    return features_from_marginals(per_level, per_length, n_pixels).ravel()
