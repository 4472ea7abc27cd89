"""The morphology view of lot drift on rendered SEM lots: calibration (offline) and the supervisor's statistic."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.daemon.drift import View
from inspector.identity.morphology import FEATURES, measure
from inspector.offline.identity.openset_morph import fit_morphology
from inspector.synth.sem import render_sem

CLASS = "pharmatose_200m"


def _lot(n: int, seed: int, **factors) -> np.ndarray:
    return np.stack([measure(render_sem(CLASS, seed + i, **factors)[0]) for i in range(n)])


@pytest.fixture(scope="module")
def reference():
    ref = _lot(40, 10_000)
    arrays, block = fit_morphology(ref, np.zeros(len(ref), int), 1, q=0.995, sizes=(8,), n_perm=200)
    view = View("morphology", arrays["morph_means"].astype(np.float64), arrays["morph_precision"].astype(np.float64),
                arrays["morph_counts"].astype(np.float64), block["threshold"])
    return view, block, arrays


def test_calibration_block_and_arrays(reference):
    view, block, arrays = reference
    assert block["features"] == list(FEATURES) and set(block["by_lot_size"]) == {"8"}
    assert arrays["morph_precision"].shape == (1, len(FEATURES), len(FEATURES)) and arrays["morph_counts"][0] == 40
    # the Hotelling null of 4 features lies near χ²₄ (99.5 % quantile 14.9), heavier with an estimated covariance
    assert 10 < view.threshold < 40


def test_larger_particles_alarm_and_a_lot_of_the_same_powder_does_not(reference):
    view, _, _ = reference
    same = _lot(8, 20_000)
    bigger = _lot(8, 30_000, size_factor=1.2)
    longer = _lot(8, 40_000, aspect_factor=1.6)
    d_same = view.statistic(same.sum(0), len(same), 0)
    d_big = view.statistic(bigger.sum(0), len(bigger), 0)
    d_long = view.statistic(longer.sum(0), len(longer), 0)
    assert d_same < view.threshold < d_big, (d_same, view.threshold, d_big)
    assert d_long > view.threshold, (d_long, view.threshold)
    # and the statistic grows with the lot (the same shift, more frames: more evidence)
    assert view.statistic(bigger[:4].sum(0), 4, 0) < d_big


def test_too_few_reference_frames_are_refused():
    from inspector.errors import InspectorError

    with pytest.raises(InspectorError, match="at least 6"):
        fit_morphology(np.zeros((4, len(FEATURES))), np.zeros(4, int), 1, q=0.99)
