"""Run length, histogram, autoregressive and Haar wavelet features against slow references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from inspector.texture.autoregressive import ar_features
from inspector.texture.histogram import histogram_features, level_histogram
from inspector.texture.runlength import runlength_features, runlength_names
from inspector.texture.wavelet import haar_energies, wavelet_names


def _lines(shape: tuple[int, int], direction: str) -> list[list[tuple[int, int]]]:
    """Pixel coordinates of every line of the image in a run-length direction."""
    h, w = shape
    if direction == "h":
        return [[(r, c) for c in range(w)] for r in range(h)]
    if direction == "v":
        return [[(r, c) for r in range(h)] for c in range(w)]
    if direction == "135":  # main diagonals, r - c constant
        return [[(r, r - k) for r in range(h) if 0 <= r - k < w] for k in range(-(w - 1), h)]
    if direction == "45":  # anti-diagonals, r + c constant
        return [[(r, k - r) for r in range(h) if 0 <= k - r < w] for k in range(h + w - 1)]
    raise ValueError(direction)


def runlength_loop(q: np.ndarray, levels: int, mask: np.ndarray | None = None) -> list[float]:
    """20 features (directions h, v, 45, 135 × RLN, GLN, LRE, SRE, RP) from explicit run lists."""
    n_pixels = int(q.size if mask is None else mask.sum())
    out = []
    for direction in ("h", "v", "45", "135"):
        runs: list[tuple[int, int]] = []  # (level, length)
        for line in _lines(q.shape, direction):
            # split the line at pixels outside the ROI, then group equal levels
            segments = [list(g) for k, g in itertools.groupby(line, key=lambda rc: mask is None or bool(mask[rc])) if k]
            for seg in segments:
                for level, grp in itertools.groupby(int(q[rc]) for rc in seg):
                    runs.append((level, len(list(grp))))
        nr = len(runs)
        by_len: dict[int, int] = {}
        by_level: dict[int, int] = {}
        for level, length in runs:
            by_len[length] = by_len.get(length, 0) + 1
            by_level[level] = by_level.get(level, 0) + 1
        rln = sum(v * v for v in by_len.values()) / nr
        gln = sum(v * v for v in by_level.values()) / nr
        lre = sum(length * length for _, length in runs) / nr
        sre = sum(1.0 / (length * length) for _, length in runs) / nr
        out += [rln, gln, lre, sre, nr / n_pixels]
    return out


def haar_direct(q: np.ndarray, scales: int, mask: np.ndarray | None = None) -> np.ndarray:
    """(scales, 4) energies of the orthonormal undecimated Haar transform by direct block sums."""
    h, w = q.shape
    x = q.astype(np.float64)
    out = np.full((scales, 4), np.nan)
    for s in range(1, scales + 1):
        hh = 2 ** (s - 1)
        acc = np.zeros(4)
        n = 0
        for r in range(h - 2 * hh + 1):
            for c in range(w - 2 * hh + 1):
                if mask is not None and not mask[r : r + 2 * hh, c : c + 2 * hh].all():
                    continue
                a = x[r : r + hh, c : c + hh].sum()
                b = x[r : r + hh, c + hh : c + 2 * hh].sum()
                cc = x[r + hh : r + 2 * hh, c : c + hh].sum()
                d = x[r + hh : r + 2 * hh, c + hh : c + 2 * hh].sum()
                coeffs = np.array([a + b + cc + d, a + b - cc - d, a - b + cc - d, a - b - cc + d]) / 2**s
                acc += coeffs**2
                n += 1
        if n:
            out[s - 1] = acc / n
    return out


def _with_sentinel(q: np.ndarray, mask: np.ndarray | None, levels: int) -> np.ndarray:
    if mask is None:
        return q
    out = q.copy()
    out[~mask] = levels
    return out


# ---------------------------------------------------------------- run length


@pytest.mark.parametrize("shape,levels", [((7, 9), 3), ((12, 5), 2), ((1, 6), 2), ((16, 16), 4)])
def test_runlength_matches_python_reference(shape: tuple[int, int], levels: int) -> None:
    rng = np.random.default_rng(shape[0] * 31 + levels)
    q = rng.integers(0, levels, shape).astype(np.uint8)
    ours = runlength_features(q, levels, q.size)
    np.testing.assert_allclose(ours, runlength_loop(q, levels), rtol=1e-12)


def test_runlength_with_mask_breaks_runs_at_roi_boundary() -> None:
    rng = np.random.default_rng(3)
    levels = 3
    q = rng.integers(0, levels, (15, 17)).astype(np.uint8)
    yy, xx = np.mgrid[:15, :17]
    mask = (yy - 7) ** 2 + (xx - 8) ** 2 <= 36
    ours = runlength_features(_with_sentinel(q, mask, levels), levels, int(mask.sum()))
    np.testing.assert_allclose(ours, runlength_loop(q, levels, mask), rtol=1e-12)


def test_runlength_of_stripes_has_known_values() -> None:
    # vertical stripes 2 px wide: horizontal runs of length 2, vertical runs the full height
    q = np.tile(np.array([0, 0, 1, 1], np.uint8), (6, 3))  # 6 x 12
    f = dict(zip(runlength_names(), runlength_features(q, 2, q.size)))
    assert f["Horzl_ShrtREmp"] == pytest.approx(0.25)
    assert f["Horzl_LngREmph"] == pytest.approx(4.0)
    assert f["Horzl_Fraction"] == pytest.approx(36 / 72)
    assert f["Vertl_LngREmph"] == pytest.approx(36.0)
    assert f["Vertl_Fraction"] == pytest.approx(12 / 72)


# ---------------------------------------------------------------- histogram


def test_histogram_features_match_scipy() -> None:
    rng = np.random.default_rng(4)
    q = np.clip(rng.gamma(2.0, 6.0, (50, 60)), 0, 63).astype(np.uint8)
    ours = histogram_features(level_histogram(q, 64))
    x = q.ravel().astype(np.float64)
    ref = [x.mean(), x.var(), stats.skew(x), stats.kurtosis(x)]
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_histogram_ignores_sentinel_pixels() -> None:
    q = np.array([[0, 1, 2, 5], [5, 5, 3, 1]], np.uint8)  # 5 = sentinel for levels=5
    np.testing.assert_array_equal(level_histogram(q, 5), [1, 2, 1, 1, 0])


# ---------------------------------------------------------------- autoregressive


def test_ar_recovers_coefficients_of_a_synthetic_process() -> None:
    rng = np.random.default_rng(5)
    theta = np.array([0.35, 0.3, -0.15, 0.2])  # W, N, NW, NE
    h, w = 300, 300
    x = np.zeros((h + 1, w + 2))
    e = rng.normal(0.0, 8.0, (h + 1, w + 2))
    for r in range(1, h + 1):
        for c in range(1, w + 1):
            x[r, c] = (
                theta[0] * x[r, c - 1] + theta[1] * x[r - 1, c] + theta[2] * x[r - 1, c - 1]
                + theta[3] * x[r - 1, c + 1] + e[r, c]
            )
    img = np.clip(np.round(x[1:, 1:-1] + 120), 0, 255).astype(np.uint8)
    f = ar_features(img, 256)
    np.testing.assert_allclose(f[:4], theta, atol=0.02)
    assert f[4] == pytest.approx(8.0, rel=0.03)


def test_ar_equals_least_squares_with_intercept() -> None:
    rng = np.random.default_rng(6)
    q = rng.integers(0, 64, (20, 23)).astype(np.uint8)
    mask = np.ones(q.shape, bool)
    mask[:4, :5] = False
    qs = _with_sentinel(q, mask, 64)
    rows, ys = [], []
    for r in range(1, 20):
        for c in range(1, 22):
            nb = [(r, c), (r, c - 1), (r - 1, c), (r - 1, c - 1), (r - 1, c + 1)]
            if all(mask[p] for p in nb):
                ys.append(float(q[r, c]))
                rows.append([1.0] + [float(q[p]) for p in nb[1:]])
    a = np.array(rows)
    y = np.array(ys)
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    sigma = np.sqrt(np.mean((y - a @ coef) ** 2))
    np.testing.assert_allclose(ar_features(qs, 64), [*coef[1:], sigma], rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- Haar wavelet


def test_haar_energies_match_direct_transform() -> None:
    rng = np.random.default_rng(9)
    q = rng.integers(0, 64, (19, 23)).astype(np.uint8)
    energies, available = haar_energies(q, 64, 5, masked=False)
    ref = haar_direct(q, 5)
    assert available == 4  # 16x16 blocks fit, 32x32 do not
    np.testing.assert_allclose(energies[:4], ref[:4], rtol=1e-12)
    # scale 5 is unavailable: documented to repeat the largest available scale
    np.testing.assert_array_equal(energies[4], energies[3])


def test_haar_energies_with_mask_use_blocks_inside_only() -> None:
    rng = np.random.default_rng(10)
    q = rng.integers(0, 16, (21, 18)).astype(np.uint8)
    yy, xx = np.mgrid[:21, :18]
    mask = (yy - 10) ** 2 + (xx - 9) ** 2 <= 81
    energies, available = haar_energies(_with_sentinel(q, mask, 16), 16, 4, masked=True)
    ref = haar_direct(q, 4, mask)
    assert available == 3  # a 8x8 block fits in the r=9 disk, a 16x16 one does not
    np.testing.assert_allclose(energies[:3], ref[:3], rtol=1e-12)


def test_haar_of_a_constant_offset_has_only_ll_energy() -> None:
    q = np.full((16, 16), 3, np.uint8)
    energies, _ = haar_energies(q, 4, 3, masked=False)
    np.testing.assert_allclose(energies[:, 1:], 0.0)
    # orthonormal: LL at scale s = 2^s * mean
    np.testing.assert_allclose(energies[:, 0], [(2 * 3) ** 2, (4 * 3) ** 2, (8 * 3) ** 2])


def test_wavelet_names() -> None:
    names = wavelet_names(8)
    assert names[:4] == ["WavEnLL_s-1", "WavEnLH_s-1", "WavEnHL_s-1", "WavEnHH_s-1"]
    assert names[-1] == "WavEnHH_s-8" and len(names) == 32


def test_extract_runlength_block_matches_reference_with_and_without_distance_1() -> None:
    # extract() takes runs per level from the distance-1 GLCM diagonals; without d = 1 it
    # computes them itself: both must equal the run-list reference
    from inspector.texture.features import extract, feature_names
    from inspector.texture.preprocess import prepare

    rng = np.random.default_rng(11)
    img = rng.integers(0, 256, (40, 36)).astype(np.uint8)
    img[10:30, 5:20] = 128  # long runs too
    q = prepare(img, levels=8).q
    ref = runlength_loop(q, 8)
    for distances in ((1, 2, 3, 4, 5), (2, 3)):
        fv = extract(img, levels=8, distances=distances, scales=3)
        names = feature_names(3, distances=distances)
        start = names.index("Horzl_RLNonUni")
        np.testing.assert_allclose(fv.values[start : start + 20], ref, rtol=1e-12)
