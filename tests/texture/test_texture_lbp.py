"""The LBP family: equal to scikit-image's riu2 codes, valid histograms, ROI handling, family selection."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.errors import BadFrameError
from inspector.texture.describe import describe, parse_families
from inspector.texture.lbp import LBP_SCALES, lbp_features, lbp_names, riu2_codes


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_codes_equal_scikit_image(dtype) -> None:
    from skimage.feature import local_binary_pattern

    rng = np.random.default_rng(1)
    img = rng.integers(0, np.iinfo(dtype).max, (60, 75)).astype(dtype)
    for p, r in LBP_SCALES:
        ref = local_binary_pattern(img, p, r, method="uniform")[r:-r, r:-r]
        assert np.array_equal(riu2_codes(img, p, r), ref.astype(np.uint8))


def test_codes_on_flat_regions_agree_but_for_rounding_ties() -> None:
    from skimage.feature import local_binary_pattern

    rng = np.random.default_rng(2)
    img = cv2.GaussianBlur(rng.integers(0, 4, (80, 80), dtype=np.uint8), (3, 3), 0)
    for p, r in LBP_SCALES:
        ref = local_binary_pattern(img, p, r, method="uniform")[r:-r, r:-r]
        assert (riu2_codes(img, p, r) == ref).mean() > 0.995


def test_histograms_names_mask_and_errors() -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    f = lbp_features(img)
    assert f.shape == (54,) == (len(lbp_names()),)
    assert np.allclose([f[:10].sum(), f[10:28].sum(), f[28:].sum()], 1.0)
    mask = np.zeros(img.shape, bool)
    mask[10:40, 10:40] = True
    assert not np.allclose(lbp_features(img, mask), f)
    with pytest.raises(BadFrameError):
        lbp_features(img[:6, :6])
    names, values = describe(img, levels=64, roi=None, max_side=None, families=("mazda", "lbp"))
    assert len(names) == len(values) == 281 + 54 and names[281] == "LBP(8,1)riu2_0"
    assert parse_families("lbp,mazda") == ("mazda", "lbp")
    with pytest.raises(ValueError, match="unknown"):
        parse_families("mazda,gabor")
