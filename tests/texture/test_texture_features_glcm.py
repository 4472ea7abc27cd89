"""GLCM features against independent references: mahotas ``haralick`` and a plain pixel loop."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from inspector.texture.features import extract, feature_names
from inspector.texture.glcm import GLCM_FEATURES, cooccurrence, haralick, offsets_for
from inspector.texture.preprocess import prepare

mahotas = pytest.importorskip("mahotas")

DISTANCES = (1, 2, 3, 4, 5)
GLCM_SLICE = slice(4, 4 + 220)


# (Δrow, Δcol) for one distance, MaZda order
def offsets(d: int) -> list[tuple[int, int]]:
    return [(0, d), (d, 0), (d, d), (d, -d)]


def glcm_loop(q: np.ndarray, levels: int, dr: int, dc: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Symmetric GLCM by a pixel loop; pairs need both pixels in ``mask``."""
    h, w = q.shape
    m = np.zeros((levels, levels), np.int64)
    for r in range(h):
        for c in range(w):
            r2, c2 = r + dr, c + dc
            if not (0 <= r2 < h and 0 <= c2 < w):
                continue
            if mask is not None and not (mask[r, c] and mask[r2, c2]):
                continue
            a, b = int(q[r, c]), int(q[r2, c2])
            m[a, b] += 1
            m[b, a] += 1
    return m


def haralick_loop(m: np.ndarray) -> list[float]:
    """The 11 features with explicit loops (0-based levels, log2, corrected sum variance)."""
    n = m.shape[0]
    total = float(m.sum())
    p = [[m[i, j] / total for j in range(n)] for i in range(n)]
    px = [sum(p[i][j] for j in range(n)) for i in range(n)]
    mu = sum(i * px[i] for i in range(n))
    var = sum((i - mu) ** 2 * px[i] for i in range(n))
    pplus = [0.0] * (2 * n - 1)
    pminus = [0.0] * n
    for i in range(n):
        for j in range(n):
            pplus[i + j] += p[i][j]
            pminus[abs(i - j)] += p[i][j]

    def ent(v):
        return -sum(x * math.log2(x) for x in v if x > 0)

    asm = sum(p[i][j] ** 2 for i in range(n) for j in range(n))
    contrast = sum(k * k * pminus[k] for k in range(n))
    cov = sum((i - mu) * (j - mu) * p[i][j] for i in range(n) for j in range(n))
    corr = cov / var if var > 0 else 1.0
    idm = sum(p[i][j] / (1 + (i - j) ** 2) for i in range(n) for j in range(n))
    savg = sum(k * pplus[k] for k in range(2 * n - 1))
    svar = sum((k - savg) ** 2 * pplus[k] for k in range(2 * n - 1))
    sent = ent(pplus)
    entropy = ent([p[i][j] for i in range(n) for j in range(n)])
    dmean = sum(k * pminus[k] for k in range(n))
    dvar = sum((k - dmean) ** 2 * pminus[k] for k in range(n))
    dent = ent(pminus)
    return [asm, contrast, corr, var, idm, savg, svar, sent, entropy, dvar, dent]




def mahotas_reference(q: np.ndarray, distances=DISTANCES) -> np.ndarray:
    """220 GLCM features from mahotas in our order (offset-major, MaZda direction order)."""
    rows = []
    for d in distances:
        f = mahotas.features.haralick(q, distance=d, use_x_minus_y_variance=True)[:, :11]
        # mahotas directions (Δrow, Δcol): (0,1), (1,1), (1,0), (1,-1) -> ours (0,d), (d,0), (d,d), (d,-d)
        rows.append(f[[0, 2, 1, 3]])
    return np.concatenate(rows).ravel()


def assert_rel(ours: np.ndarray, ref: np.ndarray, rtol: float = 1e-6) -> None:
    # relative to each value; values that are ~0 analytically (a correlation of an uncorrelated
    # texture) are compared with an absolute floor far below any meaningful feature value
    err = np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-9)
    worst = int(np.argmax(err))
    assert err[worst] <= rtol, f"feature {worst}: ours {ours[worst]!r} vs ref {ref[worst]!r}"


@pytest.mark.parametrize("levels", [8, 64, 256])
def test_glcm_matches_mahotas_on_random_texture(levels: int) -> None:
    rng = np.random.default_rng(levels)
    # a correlated texture (smoothed noise) so every feature is far from degenerate values
    noise = rng.normal(size=(90, 110))
    kernel = np.ones(3) / 3
    smooth = np.apply_along_axis(np.convolve, 1, noise, kernel, "same")
    img = np.clip(128 + 40 * smooth, 0, 255).astype(np.uint8)
    fv = extract(img, levels=levels, scales=4)
    q = prepare(img, levels=levels).q
    assert_rel(fv.values[GLCM_SLICE], mahotas_reference(q))


def test_glcm_matches_mahotas_on_real_magnetic_tile(magnetic_tile_dir: Path) -> None:
    import cv2

    paths = sorted((magnetic_tile_dir / "MT_Free" / "Imgs").glob("*.jpg"))[:2]
    paths += sorted((magnetic_tile_dir / "MT_Crack" / "Imgs").glob("*.jpg"))[:1]
    assert paths, "no magnetic-tile images found"
    for path in paths:
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        fv = extract(img)
        q = prepare(img).q
        assert_rel(fv.values[GLCM_SLICE], mahotas_reference(q))


def test_glcm_matches_plain_loop_on_tiny_image() -> None:
    rng = np.random.default_rng(7)
    q = rng.integers(0, 6, (9, 12)).astype(np.uint8)
    counts = cooccurrence(q, 6, DISTANCES)
    ours = haralick(counts)
    assert [(dr, dc) for _, dr, dc in offsets_for(DISTANCES)] == [o for d in DISTANCES for o in offsets(d)]
    for k, (prefix, dr, dc) in enumerate(offsets_for(DISTANCES)):
        m = glcm_loop(q, 6, dr, dc)
        np.testing.assert_array_equal(counts[k], m, err_msg=prefix)
        assert_rel(ours[k], np.array(haralick_loop(m)), rtol=1e-12)


def test_glcm_with_mask_counts_only_pairs_inside() -> None:
    rng = np.random.default_rng(8)
    levels = 5
    q = rng.integers(0, levels, (14, 13)).astype(np.uint8)
    mask = np.zeros(q.shape, bool)
    mask[2:12, 1:11] = True
    mask[5:7, 4:9] = False  # a hole
    qs = q.copy()
    qs[~mask] = levels  # sentinel, as preprocess does
    counts = cooccurrence(qs, levels, DISTANCES)
    for k, (prefix, dr, dc) in enumerate(offsets_for(DISTANCES)):
        np.testing.assert_array_equal(counts[k], glcm_loop(q, levels, dr, dc, mask), err_msg=prefix)


def test_glcm_names_follow_mazda() -> None:
    names = feature_names()[GLCM_SLICE]
    assert names[0] == "S(1,0)AngScMom"
    assert names[11] == "S(0,1)AngScMom"
    assert "S(2,-2)SumEntrp" in names and "S(5,0)Entropy" in names
    assert names[-1] == "S(5,-5)DifEntrp"
    assert len(GLCM_FEATURES) == 11


def test_correlation_of_a_single_level_matrix_is_one() -> None:
    counts = np.zeros((1, 4, 4), np.int64)
    counts[0, 2, 2] = 10
    f = haralick(counts)[0]
    assert f[2] == 1.0 and f[0] == 1.0 and f[8] == 0.0
    assert all(math.isfinite(v) for v in f)
