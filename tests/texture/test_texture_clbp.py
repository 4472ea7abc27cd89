"""The CLBP family: sign codes equal to scikit-image's, magnitude codes equal to a plain numpy definition,
rotation and affine-grey invariance (and the non-linear change it must see), ROI, selection via the CLI,
and a small real NEU evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.errors import BadFrameError
from inspector.texture.clbp import CLBP_SCALES, clbp_codes, clbp_features, clbp_names
from inspector.texture.describe import describe, parse_families

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def _image(seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(cv2.GaussianBlur(rng.normal(128, 50, (size, size)), (0, 0), 1.2), 0, 255).astype(np.uint8)


def _numpy_m_codes(g: np.ndarray, p: int, r: int) -> np.ndarray:
    """CLBP_M riu2 by the definition: bilinear samples (scikit-image's rounded circle), |d| ≥ mean |d|."""
    g = g.astype(np.float64)
    h, w = g.shape
    ang = 2 * np.pi * np.arange(p) / p
    rows, cols = np.round(-r * np.sin(ang), 5), np.round(r * np.cos(ang), 5)
    yy, xx = np.mgrid[r:h - r, r:w - r]
    d = []
    for dy, dx in zip(rows, cols):
        y0, x0 = int(np.floor(dy)), int(np.floor(dx))
        fy, fx = dy - y0, dx - x0
        v = ((1 - fy) * ((1 - fx) * g[yy + y0, xx + x0] + fx * g[yy + y0, xx + x0 + (fx > 0)])
             + fy * ((1 - fx) * g[yy + y0 + (fy > 0), xx + x0] + fx * g[yy + y0 + (fy > 0), xx + x0 + (fx > 0)]))
        d.append(np.abs(v - g[yy, xx]))
    bits = np.array(d) >= np.mean(d)
    changes = (bits != np.roll(bits, 1, axis=0)).sum(0)
    return np.where(changes <= 2, bits.sum(0), p + 1)


def test_sign_codes_equal_scikit_image_and_magnitude_codes_the_definition() -> None:
    from skimage.feature import local_binary_pattern

    img = _image(1, 48)
    for p, r in CLBP_SCALES:
        s, m = clbp_codes(img, p, r)
        assert np.array_equal(s, local_binary_pattern(img, p, r, method="uniform")[r:-r, r:-r])
        assert (m == _numpy_m_codes(img, p, r)).mean() > 0.999  # only exact ties |d| = μ may differ
        assert len(np.unique(m)) > 3  # the magnitude code carries information of its own


def test_shape_names_and_rotation_invariance() -> None:
    img = _image(2)
    f = clbp_features(img)
    assert f.shape == (1100,) == (len(clbp_names()),) and clbp_names()[0] == "CLBP(8,1)S0M0"
    ends = np.cumsum([(p + 2) ** 2 for p, _ in CLBP_SCALES])
    assert np.allclose([blk.sum() for blk in np.split(f, ends[:-1])], 1.0)
    for k in (1, 2, 3):  # P = 8, 16, 24 are multiples of 4: a quarter turn permutes the circle samples
        assert np.abs(clbp_features(np.rot90(img, k).copy()) - f).max() < 1e-12
    assert np.abs(clbp_features(img.T.copy()) - f).max() < 1e-12  # and so does a mirror image


def test_affine_grey_change_is_invisible_but_a_nonlinear_one_is_not() -> None:
    img = _image(3)
    f = clbp_features(img)
    affine = (img.astype(np.uint16) * 3 + 100)
    assert np.abs(clbp_features(affine) - f).max() < 1e-3
    gamma = (255 * (img / 255.0) ** 2.2).round().astype(np.uint8)
    g = clbp_features(gamma)
    assert np.abs(g - f).max() > 0.01  # magnitudes re-order under a non-linear change …
    n = CLBP_SCALES[0][0] + 2
    s_f, s_g = f[: n * n].reshape(n, n).sum(1), g[: n * n].reshape(n, n).sum(1)
    assert np.abs(s_f - s_g).max() < 0.05  # … while the sign marginal (plain LBP) barely moves


def test_roi_sets_the_threshold_and_errors() -> None:
    img = _image(4)
    img[:, 32:] = img[:, 32:] // 4  # a low-contrast half
    mask = np.zeros(img.shape, bool)
    mask[:, 36:] = True
    assert not np.allclose(clbp_features(img, mask), clbp_features(img))
    with pytest.raises(BadFrameError):
        clbp_features(img[:6, :6])
    with pytest.raises(BadFrameError, match="ROI too small"):
        m = np.zeros(img.shape, bool)
        m[0, 0] = True
        clbp_features(img, m)
    with pytest.raises(BadFrameError):
        clbp_features(np.dstack([img, img, img]))


def test_family_is_selectable() -> None:
    assert parse_families("clbp,mazda") == ("mazda", "clbp")
    names, values = describe(_image(5), levels=64, roi=None, max_side=None, families=("mazda", "clbp"))
    assert len(names) == len(values) == 281 + 1100 and names[281] == "CLBP(8,1)S0M0"


@pytest.mark.skipif(not (DATASETS / "neu-cls").is_dir(), reason="NEU data set absent (../shared/datasets/neu-cls)")
def test_neu_subset_multiclass_with_clbp(tmp_path: Path) -> None:
    """20 real images per NEU class through the CLI with the clbp family: the 6 defect types are told apart
    (91 % here; chance is 1/6)."""
    from inspector.cli import main

    out = tmp_path / "neu"
    rc = main(["evaluate", "texture", str(DATASETS / "neu-cls"), "--task", "multiclass", "--protocol", "split",
               "--repeats", "3", "--features", "clbp", "--feature-sets", "all", "--classifiers", "svm",
               "--max-images-per-class", "20", "--report", str(out), "--no-progress"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["families"] == ["clbp"] and m["extraction"]["n_features"] == 1100
    assert min(m["results"][0]["per_repeat_accuracy"]) > 0.8


@pytest.mark.skipif(not (DATASETS / "neu-cls").is_dir(), reason="NEU data set absent (../shared/datasets/neu-cls)")
def test_neu_model_with_clbp_serves_the_defect_type(tmp_path: Path) -> None:
    """Train MaZda + CLBP on 20 NEU images per class, then type one real image per class inline."""
    from inspector.cli import main
    from inspector.frame import Frame, FrameMeta
    from inspector.inspections.base import InspectionContext
    from inspector.inspections.tablet_defect import TabletDefect

    repo = tmp_path / "models"
    rc = main(["train", "texture", str(DATASETS / "neu-cls"), "--task", "multiclass", "--features", "mazda,clbp",
               "--feature-set", "all", "--classifier", "svm", "--roi", "none", "--max-images-per-class", "20",
               "--out", str(repo / "neu" / "1"), "--no-progress"])
    assert rc == 0
    m = json.loads((repo / "neu" / "1" / "manifest.json").read_text())
    assert m["input"]["families"] == ["mazda", "clbp"] and len(m["input"]["features"]) == 281 + 1100
    insp = TabletDefect(TabletDefect.Params(model="neu"), InspectionContext(state_dir=tmp_path, models_dir=repo))
    right = 0
    for c in m["classes"]:
        px = cv2.imread(str(sorted((DATASETS / "neu-cls" / c).glob("*.png"))[-1]), cv2.IMREAD_GRAYSCALE)
        res = insp.inspect(Frame(px, FrameMeta("cam0", 1, 0.0, px.shape[1], px.shape[0], "Mono8")))
        assert res.verdict == "reject"  # every NEU class is a defect type
        right += res.detail["defect_type"] == c
    assert right >= 5
