"""Tablet surfaces: contract, determinism, and that each defect shows at graded severity."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.synth.errors import SynthError
from inspector.synth.tablets import TABLET_CLASSES, render_tablet

W, H = 512, 384


def _face(img: np.ndarray, p: dict, frac: float) -> np.ndarray:
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    return np.hypot(xx - p["center_x"], yy - p["center_y"]) < frac * p["radius_px"]


def _render(cls: str, seed: int, sev: int | None):
    return render_tablet(cls, seed, severity=sev, width=W, height=H)


def test_classes_views_size_and_dtype():
    assert TABLET_CLASSES == ("good", "moisture", "humidity", "temperature", "chip", "crack")
    img, p = render_tablet("good", 0)
    assert img.shape == (768, 1024) and img.dtype == np.uint8
    assert p["severity"] == 0 and p["view"] == "whole"
    close, pc = render_tablet("crack", 0, view="closeup", width=W, height=H)
    assert close.shape == (H, W) and pc["view"] == "closeup"
    # whole view: a bright disk on a dark background; close-up: the face fills most of the frame
    assert img[_face(img, p, 0.8)].mean() > 3 * img[~_face(img, p, 1.05)].mean()
    assert (close > 100).mean() > 0.5


def test_same_seed_same_bytes_and_drawn_severity():
    a, pa = _render("temperature", 4, None)
    b, pb = _render("temperature", 4, None)
    assert a.tobytes() == b.tobytes() and pa == pb
    assert pa["severity"] in (1, 2, 3)
    assert pa["temperature_c"] == {1: 200, 2: 240, 3: 280}[pa["severity"]]
    sevs = {_render("humidity", s, None)[1]["severity"] for s in range(12)}
    assert sevs == {1, 2, 3}
    c, _ = _render("temperature", 5, None)
    assert a.tobytes() != c.tobytes()


def test_severity_changes_only_the_defect_of_a_seed():
    img1, p1 = _render("chip", 3, 1)
    img3, p3 = _render("chip", 3, 3)
    assert (p1["center_x"], p1["radius_px"]) == (p3["center_x"], p3["radius_px"])
    diff = np.abs(img1.astype(int) - img3.astype(int)) > 30
    assert 0 < diff.mean() < 0.05  # the notch grew; the rest of the tablet is the same


@pytest.mark.parametrize("seed", [0, 1])
def test_temperature_darkens_with_heat(seed):
    means = []
    for sev in (1, 2, 3):
        img, p = _render("temperature", seed, sev)
        means.append(img[_face(img, p, 0.8)].mean())
    good, pg = _render("good", seed, None)
    assert means[0] > means[1] > means[2]
    assert good[_face(good, pg, 0.8)].mean() > means[2] + 20
    _, p3 = _render("temperature", seed, 3)
    assert p3["heat_cracks"] > 0 and p3["blisters"] > 0


def _mottle(img, p):
    low = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 8)
    return low[_face(img, p, 0.8)].std()


@pytest.mark.parametrize("seed", [0, 1])
def test_humidity_mottles_more_with_days_in_open_air(seed):
    m = [_mottle(*_render("humidity", seed, sev)) for sev in (1, 2, 3)]
    assert m[0] < m[1] < m[2]
    assert m[2] > 1.5 * _mottle(*_render("good", seed, None))


@pytest.mark.parametrize("seed", [0, 1])
def test_moisture_gives_glossy_spots_and_pits(seed):
    def glossy(img, p):
        return (img[_face(img, p, 0.9)] > 240).mean()

    g = [glossy(*_render("moisture", seed, sev)) for sev in (1, 3)]
    assert g[1] > g[0] > 0
    assert glossy(*_render("good", seed, None)) < 0.2 * g[0]
    _, p = _render("moisture", seed, 3)
    assert p["pits"] > p["spots"] > 0 and p["seed001_set"] == "W3"


@pytest.mark.parametrize("seed", [0, 1])
def test_chip_removes_material_from_the_edge(seed):
    def notch(img, p):  # background-dark pixels inside the nominal disk
        return (img[_face(img, p, 0.97)] < 60).mean()

    n1, n3 = notch(*_render("chip", seed, 1)), notch(*_render("chip", seed, 3))
    assert n3 > n1 > 0
    assert notch(*_render("good", seed, None)) == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_cracks_are_thin_dark_lines(seed):
    def thin(img, p):
        bh = cv2.morphologyEx(img, cv2.MORPH_BLACKHAT, np.ones((7, 7), np.uint8))
        return (bh[_face(img, p, 0.8)] > 40).mean()

    t1, t3 = thin(*_render("crack", seed, 1)), thin(*_render("crack", seed, 3))
    assert t3 > t1 > 0
    assert t3 > 1.5 * thin(*_render("good", seed, None))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cls": "scratch", "seed": 0},
        {"cls": "good", "seed": 0, "severity": 2},
        {"cls": "crack", "seed": 0, "severity": 4},
        {"cls": "crack", "seed": 0, "severity": 0},
        {"cls": "crack", "seed": -3},
        {"cls": "crack", "seed": 0, "view": "side"},
        {"cls": "crack", "seed": 0, "width": 5},
    ],
)
def test_bad_inputs_raise_one_line_synth_errors(kwargs):
    with pytest.raises(SynthError) as e:
        render_tablet(**kwargs)
    assert "\n" not in str(e.value)
