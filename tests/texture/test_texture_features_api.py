"""Public API of inspector.texture.features: layout, bad inputs, bit depth, colour, ROI, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from inspector.errors import BadFrameError, ConfigError
from inspector.texture.features import N_FEATURES, FeatureVector, extract, extract_many, feature_names


def textured(shape=(120, 150), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=shape)
    # a little spatial correlation so every family has signal
    smooth = (noise + np.roll(noise, 1, 0) + np.roll(noise, 1, 1)) / 3
    return np.clip(128 + 50 * smooth, 0, 255).astype(np.uint8)


def test_feature_layout_is_281_unique_names_in_documented_order() -> None:
    names = feature_names()
    assert len(names) == N_FEATURES == 281
    assert len(set(names)) == 281
    assert names[:4] == ("Mean", "Variance", "Skewness", "Kurtosis")
    assert names[4] == "S(1,0)AngScMom" and names[223] == "S(5,-5)DifEntrp"
    assert names[224:229] == ("Horzl_RLNonUni", "Horzl_GLevNonU", "Horzl_LngREmph", "Horzl_ShrtREmp", "Horzl_Fraction")
    assert names[243] == "135dr_Fraction"
    assert names[244:249] == ("Teta1", "Teta2", "Teta3", "Teta4", "Sigma")
    assert names[249] == "WavEnLL_s-1" and names[-1] == "WavEnHH_s-8"
    assert len(feature_names(4)) == 281 - 16
    assert len(feature_names(distances=(1,))) == 281 - 176


def test_extract_returns_finite_named_vector() -> None:
    fv = extract(textured((300, 280)))
    assert isinstance(fv, FeatureVector)
    assert fv.names == feature_names()
    assert fv.values.dtype == np.float64 and fv.values.shape == (281,)
    assert np.all(np.isfinite(fv.values))
    assert fv.meta["levels"] == 64 and fv.meta["roi_pixels"] == 300 * 280
    assert fv.meta["wavelet_scales_available"] == 8 and fv.meta["warnings"] == []
    d = fv.as_dict()
    assert list(d) == list(fv.names) and d["Mean"] == fv.values[0]
    # 64 levels, 0-based
    assert 0 < d["Mean"] < 63 and d["Vertl_Fraction"] <= 1.0


def test_constant_image_is_a_no_texture_error() -> None:
    with pytest.raises(BadFrameError) as e:
        extract(np.full((64, 64), 77, np.uint8))
    assert e.value.kind == "no_texture"
    with pytest.raises(BadFrameError) as e:
        extract(np.full((64, 64), 1000, np.uint16))
    assert e.value.kind == "no_texture"


def test_almost_constant_image_falls_back_to_min_max_stretch() -> None:
    img = np.full((50, 50), 100, np.uint8)
    img[10, 10] = 200  # 1 outlier pixel out of 2500: 1 % limits coincide
    fv = extract(img)
    assert fv.meta["stretch"] == (100, 200)
    assert np.all(np.isfinite(fv.values))


def test_too_small_image_is_an_error() -> None:
    with pytest.raises(BadFrameError) as e:
        extract(textured((5, 40)))  # no pair at distance 5 vertically
    assert e.value.kind == "too_small" and "S(0,5)" in str(e.value)
    # fine with smaller distances
    fv = extract(textured((5, 40)), distances=(1, 2), scales=2)
    assert len(fv.values) == len(feature_names(2, distances=(1, 2)))
    with pytest.raises(BadFrameError) as e:
        extract(np.zeros((1, 10), np.uint8))
    assert e.value.kind == "too_small"


def test_small_image_keeps_281_features_with_repeated_wavelet_scales() -> None:
    fv = extract(textured((40, 50)))  # 32x32 blocks fit, 64x64 do not: scales 1..5
    assert len(fv.values) == 281 and np.all(np.isfinite(fv.values))
    assert fv.meta["wavelet_scales_available"] == 5
    assert fv.meta["warnings"] and "6..8" in fv.meta["warnings"][0]
    d = fv.as_dict()
    for band in ("LL", "LH", "HL", "HH"):
        for s in (6, 7, 8):
            assert d[f"WavEn{band}_s-{s}"] == d[f"WavEn{band}_s-5"]


def test_16bit_image_scaled_from_8bit_gives_identical_features() -> None:
    img8 = textured(seed=3)
    img16 = img8.astype(np.uint16) * 257
    a, b = extract(img8), extract(img16)
    np.testing.assert_array_equal(a.values, b.values)
    assert b.meta["source_dtype"] == "uint16"


def test_16bit_uses_its_full_range() -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(30000, 30400, (80, 80), dtype=np.uint16)  # 400 values: only 2 in 8-bit terms
    fv = extract(img, levels=64)
    assert fv.meta["stretch"][0] >= 30000 and fv.meta["stretch"][1] < 30400
    assert fv.as_dict()["Variance"] > 100  # spread over the 64 levels, not collapsed


def test_rgb_with_equal_channels_equals_grey() -> None:
    g = textured(seed=4)
    rgb = np.dstack([g, g, g])
    np.testing.assert_array_equal(extract(rgb).values, extract(g).values)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((20, 20), np.float32), np.zeros((20, 20), np.int32), np.zeros((3, 20, 20, 1), np.uint8), [[1, 2]]],
)
def test_unsupported_pixels_are_pixel_format_errors(bad) -> None:
    with pytest.raises(BadFrameError) as e:
        extract(bad)
    assert e.value.kind == "pixel_format"


def test_bad_parameters_are_config_errors() -> None:
    img = textured()
    for kw in ({"levels": 1}, {"levels": 300}, {"distances": ()}, {"distances": (0,)}, {"scales": 0}, {"scales": 11}):
        with pytest.raises(ConfigError):
            extract(img, **kw)


def test_full_mask_equals_no_mask() -> None:
    img = textured(seed=5)
    full = extract(img, roi=np.ones(img.shape, bool))
    none = extract(img)
    np.testing.assert_array_equal(full.values, none.values)


def test_mask_restricts_features_to_roi() -> None:
    img = textured((120, 150), seed=6)
    img[:, 75:] = 255 - img[:, 75:] // 4  # a different texture on the right half
    mask = np.zeros(img.shape, bool)
    mask[:, :75] = True
    left = extract(img, roi=mask)
    crop = extract(np.ascontiguousarray(img[:, :75]))
    assert left.meta["roi_pixels"] == 120 * 75
    # the ROI over the left half is the same texture as the crop: identical features
    np.testing.assert_allclose(left.values, crop.values, rtol=1e-12)
    assert not np.allclose(left.values, extract(img).values)


def test_bad_masks_are_roi_errors() -> None:
    img = textured()
    with pytest.raises(BadFrameError) as e:
        extract(img, roi=np.ones((10, 10), bool))
    assert e.value.kind == "roi"
    with pytest.raises(BadFrameError) as e:
        extract(img, roi=np.zeros(img.shape, bool))
    assert e.value.kind == "roi"
    with pytest.raises(BadFrameError):
        extract(img, roi="disk")


def tablet_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = 240, 300
    yy, xx = np.mgrid[:h, :w]
    disk = (yy - 120) ** 2 + (xx - 160) ** 2 <= 90**2
    img = rng.integers(5, 25, (h, w)).astype(np.uint8)  # dark background
    img[disk] = rng.integers(140, 230, int(disk.sum()))
    return img, disk


def test_auto_roi_finds_the_tablet_inside_its_edge() -> None:
    img, disk = tablet_scene()
    fv = extract(img, roi="auto")
    from inspector.texture.roi import auto_roi

    mask = auto_roi(img)
    assert not np.any(mask & ~disk)  # never outside the tablet
    assert mask.sum() > 0.85 * disk.sum()  # but most of it
    assert fv.meta["roi"] == "auto" and fv.meta["roi_pixels"] == int(mask.sum())
    np.testing.assert_array_equal(fv.values, extract(img, roi=mask).values)


def test_auto_roi_without_object_is_an_error() -> None:
    with pytest.raises(BadFrameError) as e:
        extract(np.full((50, 50), 9, np.uint8), roi="auto")
    assert e.value.kind == "no_roi"


def test_extract_many_stacks_rows() -> None:
    imgs = [textured((70, 80), seed=s) for s in range(3)]
    x = extract_many(imgs, scales=6)
    assert x.shape == (3, len(feature_names(6)))
    np.testing.assert_array_equal(x[1], extract(imgs[1], scales=6).values)
    assert extract_many([], progress=True).shape == (0, 281)


def _cli(argv: list[str]) -> int:
    from inspector.offline.texture import cli_features

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli_features.register(sub, {})
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_prints_table_and_json(tmp_path, capsys) -> None:
    import cv2

    img, disk = tablet_scene(1)
    path = tmp_path / "tablet.png"
    cv2.imwrite(str(path), img)
    assert _cli(["features", str(path), "--roi", "auto"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 281 and lines[0].split()[0] == "Mean"
    assert "wavelet scale(s) 7..8:" in out.err  # no 128x128 square fits in the eroded r=90 disk
    mask_path = tmp_path / "mask.png"
    cv2.imwrite(str(mask_path), disk.astype(np.uint8) * 255)
    assert _cli(["features", str(path), "--json", "--roi", str(mask_path), "--levels", "32"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["features"]) == 281 and doc["meta"]["levels"] == 32
    ref = extract(img, roi=disk, levels=32).as_dict()
    assert doc["features"]["S(5,0)Entropy"] == pytest.approx(ref["S(5,0)Entropy"], rel=1e-12)


def test_cli_unreadable_image_is_an_inspector_error(tmp_path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(BadFrameError):
        _cli(["features", str(bad)])
    with pytest.raises(BadFrameError):
        _cli(["features", str(tmp_path / "missing.png")])


def test_256_levels_with_mask_equals_no_mask_and_is_finite() -> None:
    img = textured((60, 70), seed=9)
    a = extract(img, levels=256, roi=np.ones(img.shape, bool), scales=5)
    b = extract(img, levels=256, scales=5)
    np.testing.assert_array_equal(a.values, b.values)
    mask = np.ones(img.shape, bool)
    mask[:5] = False
    c = extract(img, levels=256, roi=mask, scales=5)
    assert np.all(np.isfinite(c.values)) and c.meta["roi_pixels"] == 55 * 70


@pytest.mark.parametrize("seed", range(3))
def test_any_small_image_and_mask_gives_finite_features_or_a_clear_error(seed: int) -> None:
    # property check over many random shapes, level counts, textures and masks: never NaN/inf,
    # never an exception other than BadFrameError
    rng = np.random.default_rng(100 + seed)
    outcomes = set()
    for _ in range(25):
        h, w = int(rng.integers(2, 40)), int(rng.integers(2, 40))
        n_values = int(rng.choice([1, 2, 3, 256]))
        img = rng.integers(0, n_values, (h, w)).astype(np.uint8) * (255 // max(n_values - 1, 1))
        roi = None
        if rng.random() < 0.5:
            roi = rng.random((h, w)) < rng.uniform(0.3, 1.0)
        try:
            fv = extract(img, levels=int(rng.choice([2, 16, 64])), roi=roi)
        except BadFrameError as e:
            assert e.kind in {"too_small", "no_texture", "roi"} and "\n" not in str(e)
            outcomes.add(e.kind)
            continue
        assert fv.values.shape == (281,) and np.all(np.isfinite(fv.values))
        outcomes.add("ok")
    assert "ok" in outcomes


def test_cli_registration_is_idempotent() -> None:
    from inspector.offline.texture import cli_features

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli_features.register(sub, {})
    cli_features.register(sub, {})  # e.g. listed in PLUGINS and registered by inspector.offline.texture.cli
    assert parser.parse_args(["features", "x.png", "--levels", "16"]).levels == 16
