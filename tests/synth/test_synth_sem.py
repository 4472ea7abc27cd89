"""SEM excipient scenes: contract, determinism, and that the images carry the intended factors."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.synth.errors import SynthError
from inspector.synth.measure import measure_particles
from inspector.synth.sem import SEM_CLASSES, class_slug, render_sem, sem_class_info
from inspector.synth.sem_spec import SEM_SPECS, lot_spec

SMALL = {"width": 320, "height": 240}
HALF = {"width": 640, "height": 480}


def test_ten_classes_with_seed_names_and_slugs():
    assert len(SEM_CLASSES) == 10
    assert SEM_CLASSES[0] == "CEOLUS KG-802" and SEM_CLASSES[-1] == "Pharmatose 200M"
    slugs = [class_slug(c) for c in SEM_CLASSES]
    assert len(set(slugs)) == 10
    assert class_slug("CEOLUS KG-802") == "ceolus_kg-802"
    assert class_slug("Dried corn starch") == "dried_corn_starch"
    assert all(class_slug(s) == s for s in slugs)  # idempotent: a slug is its own slug
    assert all(s.replace("_", "").replace("-", "").isalnum() for s in slugs)


def test_magnification_and_pixel_size_follow_the_seed():
    mags = {c: sem_class_info(c)["magnification"] for c in SEM_CLASSES}
    assert {c for c, m in mags.items() if m == 150} == {
        "PEARLITOL 200SD", "Pharmatose 100M", "Pharmatose 125M", "Pharmatose 200M"}
    assert {c for c, m in mags.items() if m == 500} == {"Dried corn starch"}
    assert {c for c, m in mags.items() if m == 250} == {
        "CEOLUS KG-802", "CEOLUS KG-1000", "CEOLUS PH-101", "CEOLUS PH-302", "Mannit Q"}
    for c in SEM_CLASSES:
        info = sem_class_info(c)
        assert info["um_per_px"] == pytest.approx(100.0 / info["magnification"])


def test_same_seed_same_bytes_and_slug_equals_name():
    a, pa = render_sem("Mannit Q", 11, **SMALL)
    b, pb = render_sem("mannit_q", 11, **SMALL)
    assert a.tobytes() == b.tobytes() and pa == pb
    c, _ = render_sem("Mannit Q", 12, **SMALL)
    d, _ = render_sem("Mannit Q", 11, lot=3, **SMALL)
    assert a.tobytes() != c.tobytes() and a.tobytes() != d.tobytes()


def test_full_frame_size_dtype_and_data_bar():
    img, p = render_sem("Pharmatose 200M", 5)
    assert img.shape == (960, 1280) and img.dtype == np.uint8
    barred, pb = render_sem("Pharmatose 200M", 5, data_bar=True)
    assert barred.shape == (1024, 1280) and barred.dtype == np.uint8
    assert np.array_equal(barred[:960], img), "the bar is appended below; the scene itself is unchanged"
    bar = barred[960:]
    assert np.median(bar) < 10 and (bar == 255).mean() > 0.02  # black strip with white scale bar and text
    assert pb["data_bar_rows"] == 64 and p["data_bar_rows"] == 0
    assert p["magnification"] == 150 and p["um_per_px"] == pytest.approx(100 / 150)
    assert p["n_particles"] == len(p["areas_px"]) == len(p["elongations"]) > 10
    assert 0.1 < p["coverage"] < 0.8
    # SE look: dark carbon tape, brighter particles, not clipped to a flat field
    assert 20 < np.percentile(img, 10) < 90 and np.percentile(img, 95) > 140 and img.std() > 20


def _isolated_particle_profiles(cls: str, seeds: range) -> tuple[list[float], list[float]]:
    """(rim − core, core − tape) grey differences of isolated round particles, via params centres."""
    rim_core, core_tape = [], []
    for seed in seeds:
        img, p = render_sem(cls, seed)
        h, w = img.shape
        c = np.array(p["centers_px"])
        r = np.sqrt(np.array(p["areas_px"]) / np.pi)
        for i, ((x, y), ri) in enumerate(zip(c, r)):
            if ri < 20 or x - 1.6 * ri < 0 or y - 1.6 * ri < 0 or x + 1.6 * ri >= w or y + 1.6 * ri >= h:
                continue
            d = np.hypot(c[:, 0] - x, c[:, 1] - y)
            d[i] = np.inf
            if (d < 1.3 * (r + ri)).any():
                continue
            y0, y1, x0, x1 = int(y - 1.6 * ri), int(y + 1.6 * ri), int(x - 1.6 * ri), int(x + 1.6 * ri)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            rho = np.hypot(xx - x, yy - y) / ri
            patch = img[y0:y1, x0:x1].astype(float)
            core = patch[rho < 0.4].mean()
            rim_core.append(patch[(rho > 0.75) & (rho < 0.92)].mean() - core)
            core_tape.append(core - patch[rho > 1.35].mean())
    return rim_core, core_tape


@pytest.mark.parametrize("cls", ["Mannit Q", "Dried corn starch"])
def test_round_particles_have_bright_rims_on_dark_tape(cls):
    rim_core, core_tape = _isolated_particle_profiles(cls, range(2))
    assert len(rim_core) >= 2
    assert np.median(rim_core) > 30, "SE edge effect: rims brighter than particle tops"
    assert np.median(core_tape) > 15, "particles brighter than the carbon tape"


def test_lactose_grades_ordered_by_particle_area_in_params_and_image():
    params_area, image_median = {}, {}
    for c in ("Pharmatose 100M", "Pharmatose 125M", "Pharmatose 200M"):
        areas, comp = [], []
        for s in range(3):
            img, p = render_sem(c, s)
            areas += p["areas_px"]
            comp.append(measure_particles(img).areas)
        params_area[c] = np.mean(areas)
        # touching crystals merge into one component: the median is the robust image statistic
        image_median[c] = np.median(np.concatenate(comp))
    for stat in (params_area, image_median):
        assert stat["Pharmatose 100M"] > stat["Pharmatose 125M"] > stat["Pharmatose 200M"], stat
    # same magnification, so the pixel areas follow the real sizes (~150, 110, 45 µm)
    assert params_area["Pharmatose 100M"] / params_area["Pharmatose 200M"] > 5


def test_mcc_elongation_kg1000_above_ph302_in_params_and_image():
    el_p, el_i = {}, {}
    for c in ("CEOLUS KG-1000", "CEOLUS PH-302"):
        ps, ims = [], []
        for s in range(3):
            img, p = render_sem(c, s)
            ps += p["elongations"]
            ims.append(measure_particles(img).elongations)
        el_p[c], el_i[c] = np.mean(ps), np.mean(np.concatenate(ims))
    assert el_p["CEOLUS KG-1000"] > 2.5 * el_p["CEOLUS PH-302"]
    assert el_i["CEOLUS KG-1000"] > 1.3 * el_i["CEOLUS PH-302"]


def test_ph101_and_kg802_overlap_so_they_are_not_trivially_separable():
    a = np.concatenate([render_sem("CEOLUS PH-101", s, **HALF)[1]["elongations"] for s in range(4)])
    b = np.concatenate([render_sem("CEOLUS KG-802", s, **HALF)[1]["elongations"] for s in range(4)])
    assert b.mean() > a.mean(), "KG-802 is the more fibrous grade"
    x = np.concatenate([a, b])
    y = np.concatenate([np.zeros(a.size), np.ones(b.size)])
    best = max(((x > t) == y).mean() for t in np.unique(x))
    assert best < 0.8, f"a single elongation threshold separates the pair too well ({best:.2f})"
    # whereas KG-1000 vs PH-302 is easy on the same statistic
    k = np.concatenate([render_sem("CEOLUS KG-1000", s, **HALF)[1]["elongations"] for s in range(2)])
    r = np.concatenate([render_sem("CEOLUS PH-302", s, **HALF)[1]["elongations"] for s in range(3)])
    assert a.size > 40 and b.size > 40 and k.size > 20 and r.size > 10
    assert np.median(k) > np.percentile(r, 90)


def test_lots_shift_size_and_shape_slightly_and_consistently():
    spec0, f0 = lot_spec(7, 0)
    assert f0 == {"size_factor": 1.0, "aspect_factor": 1.0} and spec0 == SEM_SPECS[7]
    factors = [lot_spec(7, lot)[1] for lot in range(1, 9)]
    sizes = [f["size_factor"] for f in factors]
    assert all(0.85 < s < 1.15 for s in sizes) and len(set(sizes)) == 8
    assert lot_spec(7, 3) == lot_spec(7, 3)
    spec3, f3 = lot_spec(7, 3)
    assert spec3.families[0].d_median_um == pytest.approx(SEM_SPECS[7].families[0].d_median_um * f3["size_factor"])
    big = max(range(1, 9), key=lambda L: lot_spec(9, L)[1]["size_factor"])
    small = min(range(1, 9), key=lambda L: lot_spec(9, L)[1]["size_factor"])
    a_big = np.mean([np.mean(render_sem("Pharmatose 200M", s, lot=big, **HALF)[1]["diameters_um"]) for s in range(3)])
    a_small = np.mean([np.mean(render_sem("Pharmatose 200M", s, lot=small, **HALF)[1]["diameters_um"]) for s in range(3)])
    assert a_big > a_small
    _, p = render_sem("Pharmatose 200M", 0, lot=big, **SMALL)
    assert p["lot"] == big and p["lot_size_factor"] == pytest.approx(lot_spec(9, big)[1]["size_factor"], rel=1e-4)


def test_explicit_lot_factors_set_a_controlled_shift():
    spec, f = lot_spec(9, 0, size_factor=1.2)
    assert f == {"size_factor": 1.2, "aspect_factor": 1.0}
    assert spec.families[0].d_median_um == pytest.approx(SEM_SPECS[9].families[0].d_median_um * 1.2)
    assert lot_spec(9, 4, aspect_factor=1.1)[1]["size_factor"] == lot_spec(9, 4)[1]["size_factor"]  # the other drawn
    base = np.mean([np.mean(render_sem("Pharmatose 200M", s, **HALF)[1]["diameters_um"]) for s in range(3)])
    big = [render_sem("Pharmatose 200M", s, size_factor=1.2, **HALF)[1] for s in range(3)]
    assert np.mean([np.mean(p["diameters_um"]) for p in big]) > 1.1 * base
    assert big[0]["lot_size_factor"] == 1.2
    with pytest.raises(SynthError, match="size_factor"):
        lot_spec(9, 0, size_factor=3.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cls": "Avicel PH-102", "seed": 0},
        {"cls": "Mannit Q", "seed": -1},
        {"cls": "Mannit Q", "seed": 1.5},
        {"cls": "Mannit Q", "seed": 0, "lot": -2},
        {"cls": "Mannit Q", "seed": 0, "width": 10},
        {"cls": "Mannit Q", "seed": 0, "height": 100000},
    ],
)
def test_bad_inputs_raise_one_line_synth_errors(kwargs):
    with pytest.raises(SynthError) as e:
        render_sem(**kwargs)
    assert "\n" not in str(e.value)


def test_bytes_do_not_depend_on_opencv_thread_count():
    import cv2

    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        a, _ = render_sem("PEARLITOL 200SD", 3, **HALF)
        cv2.setNumThreads(2)
        b, _ = render_sem("PEARLITOL 200SD", 3, **HALF)
    finally:
        cv2.setNumThreads(before)
    assert a.tobytes() == b.tobytes()
