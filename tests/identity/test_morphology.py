"""Particle morphology of a frame (inspector.identity.morphology): sizes, elongation, counts, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.errors import BadFrameError
from inspector.identity.morphology import FEATURES, measure


def scene(radius: float, aspect: float = 1.0, n: int = 12, seed: int = 0, size=(960, 1280)) -> np.ndarray:
    """Bright ellipses (semi-axes radius·√aspect, radius/√aspect) on a dark, noisy background, not touching."""
    rng = np.random.default_rng(seed)
    img = np.full(size, 40, np.uint8)
    a, b = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    step = int(2.6 * a) + 4
    centres = [(x, y) for y in range(step // 2, size[0] - step // 2, step) for x in range(step // 2, size[1] - step // 2, step)]
    for i in rng.permutation(len(centres))[:n]:
        cv2.ellipse(img, centres[i], (int(round(a)), int(round(b))), float(rng.uniform(0, 180)), 0, 360, 200, -1)
    noise = rng.normal(0, 6, size)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def test_features_of_discs_match_their_geometry():
    f = dict(zip(FEATURES, measure(scene(40, n=12))))
    assert np.exp(f["log_eqd"]) == pytest.approx(80, rel=0.05)  # equivalent diameter of a disc = its diameter
    assert np.exp(f["log_elong"]) == pytest.approx(1.0, abs=0.05)
    assert np.expm1(f["log_count"]) == pytest.approx(12, abs=0.01)
    # mean distance to the background inside a disc of radius r is r/3
    assert np.exp(f["log_width"]) == pytest.approx(40 / 3, rel=0.1)


def test_larger_and_longer_particles_move_the_right_features():
    base = measure(scene(40, aspect=1.5, seed=1))
    bigger = measure(scene(44, aspect=1.5, seed=1))  # +10 % size
    longer = measure(scene(40, aspect=1.8, seed=1))
    d_size = dict(zip(FEATURES, bigger - base))
    d_long = dict(zip(FEATURES, longer - base))
    assert d_size["log_eqd"] == pytest.approx(np.log(1.1), abs=0.03)
    assert d_size["log_width"] == pytest.approx(np.log(1.1), abs=0.04)
    assert abs(d_size["log_elong"]) < 0.03
    assert d_long["log_elong"] == pytest.approx(np.log(1.8 / 1.5), abs=0.04)


def test_half_resolution_agrees_with_full_resolution():
    img = scene(35, aspect=1.3, seed=2)
    full, half = measure(img, scale=1), measure(img, scale=2)
    assert np.allclose(full[:3], half[:3], atol=0.03)  # logs: within 3 %
    assert full[3] == half[3]  # same particles found


def test_clusters_of_particles_do_not_count_for_elongation():
    img = scene(30, aspect=1.0, n=6, seed=3)
    alone = dict(zip(FEATURES, measure(img)))
    for cx, cy in ((640, 480), (698, 480), (640, 538)):  # three touching discs in an L: one concave component
        cv2.circle(img, (cx, cy), 30, 200, -1)
    merged = dict(zip(FEATURES, measure(img)))
    assert merged["log_count"] == pytest.approx(np.log1p(7))  # the cluster counts as one particle
    assert merged["log_elong"] == pytest.approx(alone["log_elong"], abs=0.02)  # but not as an elongated one


def test_empty_frame_gives_finite_features():
    f = measure(np.full((480, 640), 30, np.uint8))
    assert np.all(np.isfinite(f)) and f.shape == (len(FEATURES),)


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.float32), "frame"])
def test_bad_input_is_refused(bad):
    with pytest.raises(BadFrameError):
        measure(bad)
