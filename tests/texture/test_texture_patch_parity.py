"""The optimised patch features (fused numba pass, exact area-resize thumbnail) compute what the first
implementation computed, so the shipped ``tablet-defect-default`` model (trained on the first one) stays valid.

The reference (tests/support/patch_reference.py) is the first implementation verbatim. Its block sums are
float32 ``INTER_AREA`` resizes (≈ 1e-5 relative rounding on Σc, Σc², amplified in the sd); with those sums
taken exactly (``exact_sums=True``, the one change) it agrees with the optimised code to 1e-6 relative.
Against the verbatim reference the features agree to its own rounding and the model's scores and
verdicts are the same.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from patch_reference import find_tablet_reference, patch_grid_reference

from inspector.modelrepo import resolve
from inspector.synth.tablets import render_tablet
from inspector.texture import area_resize
from inspector.texture.model import load_model
from inspector.texture.patches import FRAME_FEATURES, PATCH_FEATURES, find_tablet, patch_grid

REPO = Path(__file__).resolve().parents[2]


def _frames(width: int, height: int, classes: tuple[str, ...], seed: int) -> list[np.ndarray]:
    return [render_tablet(cls, seed + i, severity=None if cls == "good" else 2, width=width, height=height)[0]
            for i, cls in enumerate(classes)]


def _small_frames() -> list[np.ndarray]:
    frames = _frames(640, 480, ("good", "chip", "crack", "moisture"), 40) + _frames(1024, 768, ("good", "humidity"), 50)
    edge = _frames(1024, 768, ("chip",), 60)[0]
    frames.append(np.ascontiguousarray(edge[:, 330:]))  # the tablet's bounding square leaves the frame
    frames.append(frames[1].astype(np.uint16) * 257)  # Mono16
    return frames


def _assert_parity(gray: np.ndarray, model) -> None:
    new = patch_grid(gray)
    exact = patch_grid_reference(gray, exact_sums=True)
    ref = patch_grid_reference(gray)
    # the same tablet, grid and kept patches
    assert new.center == ref.center and new.radius == ref.radius
    np.testing.assert_array_equal(new.boxes, ref.boxes)
    np.testing.assert_array_equal(new.boxes, exact.boxes)
    # what is computed: equal to 1e-6 relative (1e-12 absolute for shares that are 0)
    for j, name in enumerate(PATCH_FEATURES):
        np.testing.assert_allclose(new.X[:, j], exact.X[:, j], rtol=1e-6, atol=1e-12, err_msg=name)
    for j, name in enumerate(FRAME_FEATURES):
        np.testing.assert_allclose(new.frame[j], exact.frame[j], rtol=1e-6, atol=1e-12, err_msg=name)
    # against the verbatim first implementation: within its float32 rounding …
    tol = {"mean": 1e-4, "sd": 1e-3, "grad": 1e-4}
    for j, name in enumerate(PATCH_FEATURES):
        np.testing.assert_allclose(new.X[:, j], ref.X[:, j], rtol=0, atol=tol.get(name, 1e-6), err_msg=name)
    np.testing.assert_allclose(new.frame, ref.frame, rtol=0, atol=1e-5)
    # … so the shipped model scores the frame the same
    a, b = model.predict_grid(new), model.predict_grid(ref)
    assert a.reject == b.reject
    assert a.scores["novelty"] == pytest.approx(b.scores["novelty"], rel=1e-3)
    assert a.detail["worst_patch"]["x"] == b.detail["worst_patch"]["x"]
    assert a.detail["worst_patch"]["y"] == b.detail["worst_patch"]["y"]


@pytest.fixture(scope="module")
def model():
    return load_model(resolve(REPO / "models", "tablet-defect-default", None))


def test_patch_features_equal_the_first_implementation_on_small_frames(model) -> None:
    for gray in _small_frames():
        _assert_parity(gray, model)


def test_patch_features_equal_the_first_implementation_at_full_resolution(model) -> None:
    gray = _frames(2580, 1944, ("crack",), 70)[0]
    _assert_parity(gray, model)
    hull, cx, cy, r = find_tablet(gray)
    hull_ref, cx_ref, cy_ref, r_ref = find_tablet_reference(gray)
    np.testing.assert_array_equal(hull, hull_ref)
    assert (cx, cy, r) == (cx_ref, cy_ref, r_ref)


def test_area_resize_is_opencvs_exactly() -> None:
    area_resize.warmup()
    assert area_resize._exact, "this OpenCV's generic INTER_AREA differs from the kernel: it would fall back to it"
    rng = np.random.default_rng(3)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(20, 1400, 2))
        img = rng.integers(0, 256, (h, w), dtype=np.uint8)
        for side in (256, 97):
            f = min(1.0, side / max(h, w))
            size = (max(1, round(w * f)), max(1, round(h * f)))
            np.testing.assert_array_equal(area_resize.resize_area(img, size),
                                          cv2.resize(img, size, interpolation=cv2.INTER_AREA), err_msg=f"{(h, w)} → {size}")
    # integer scales take OpenCV's fast path themselves
    img = rng.integers(0, 256, (384, 512), dtype=np.uint8)
    np.testing.assert_array_equal(area_resize.resize_area(img, (256, 192)),
                                  cv2.resize(img, (256, 192), interpolation=cv2.INTER_AREA))
