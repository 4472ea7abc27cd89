"""Tiling contract of the excipient-identity CNN: data bar, fixed grid, pixel formats, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.errors import BadFrameError
from inspector.identity.tiling import (
    TILE,
    crop_data_bar,
    data_bar_rows,
    frame_tiles,
    preprocess,
    tile_grid,
    to_gray_u8,
)


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """SEM-like grey texture: smoothed noise over the full range (no dominant grey value)."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.normal(128, 60, (h, w)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 1.5) * 2 - 128, 0, 255).astype(np.uint8)


def _with_bar(img: np.ndarray, rows: int = 64, seed: int = 1) -> np.ndarray:
    """Append a data bar like the real SEM frames: a band of value 1 with white text blocks."""
    rng = np.random.default_rng(seed)
    bar = np.full((rows, img.shape[1]), 1, np.uint8)
    bar[0:2] = 1
    for _ in range(40):  # glyph-like white boxes on text lines
        y = int(rng.integers(4, rows - 12))
        x = int(rng.integers(0, img.shape[1] - 20))
        bar[y:y + 8, x:x + int(rng.integers(3, 18))] = 255
    return np.vstack([img, bar])


def test_grid_1280x960_is_4x5_centred_non_overlapping():
    origins = tile_grid(960, 1280)
    assert len(origins) == 20
    ys = sorted({y for y, _ in origins})
    xs = sorted({x for _, x in origins})
    assert ys == [32, 256, 480, 704] and xs == [80, 304, 528, 752, 976]
    assert origins[0] == (32, 80) and origins[1] == (32, 304)  # row-major


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 2000), w=st.integers(1, 2000), tile=st.integers(8, 300))
def test_grid_property(h, w, tile):
    if h < tile or w < tile:
        with pytest.raises(BadFrameError) as ei:
            tile_grid(h, w, tile)
        assert ei.value.kind == "too_small"
        return
    origins = tile_grid(h, w, tile)
    assert len(origins) == (h // tile) * (w // tile)
    occupied = np.zeros((h, w), np.int32)
    for y, x in origins:
        assert 0 <= y and y + tile <= h and 0 <= x and x + tile <= w
        occupied[y:y + tile, x:x + tile] += 1
    assert occupied.max() == 1
    # centred: margins differ by at most one pixel
    top, left = min(y for y, _ in origins), min(x for _, x in origins)
    bottom = h - max(y for y, _ in origins) - tile
    right = w - max(x for _, x in origins) - tile
    assert abs(top - bottom) <= 1 and abs(left - right) <= 1


def test_frame_smaller_than_one_tile_is_refused():
    with pytest.raises(BadFrameError) as ei:
        frame_tiles(np.zeros((200, 1280), np.uint8))
    assert ei.value.kind == "too_small"
    assert "smaller than one" in str(ei.value)


def test_data_bar_detected_and_cropped():
    img = _texture(960, 1280)
    framed = _with_bar(img, 64)
    assert framed.shape == (1024, 1280)
    assert data_bar_rows(framed) == 64
    cropped = crop_data_bar(framed)
    assert cropped.shape == (960, 1280)
    np.testing.assert_array_equal(cropped, img)


def test_no_bar_is_a_no_op():
    img = _texture(960, 1280, seed=3)
    assert data_bar_rows(img) == 0
    assert crop_data_bar(img) is img
    # a few uniform rows at the bottom are image content, not a bar
    img2 = img.copy()
    img2[-4:] = 0
    assert data_bar_rows(img2) == 0


def test_bar_tiles_equal_barless_tiles():
    img = _texture(960, 1280, seed=5)
    t1, o1 = frame_tiles(_with_bar(img))
    t2, o2 = frame_tiles(img)
    assert t1.shape == (20, TILE, TILE) and t1.dtype == np.uint8
    assert o1 == o2
    np.testing.assert_array_equal(t1, t2)
    y, x = o1[7]
    np.testing.assert_array_equal(t1[7], img[y:y + TILE, x:x + TILE])


def test_real_sem_frames_lose_their_bar(sem_maltodextrin_dir):
    import cv2

    files = sorted(sem_maltodextrin_dir.glob("*.png"))[:3]
    assert files
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        assert img.shape[:2] == (1024, 1280)
        assert data_bar_rows(to_gray_u8(img)) == 64
        tiles, _ = frame_tiles(img)
        assert tiles.shape == (20, TILE, TILE)


def test_pixel_formats():
    grey = _texture(480, 640, seed=7)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    np.testing.assert_array_equal(frame_tiles(rgb)[0], frame_tiles(grey)[0])
    np.testing.assert_array_equal(frame_tiles(grey[..., None])[0], frame_tiles(grey)[0])
    g16 = grey.astype(np.uint16) * 257  # full-range 16-bit of the same picture
    np.testing.assert_array_equal(to_gray_u8(g16), grey)
    for bad in (np.zeros((480, 640, 4), np.uint8), np.zeros((480, 640, 2), np.uint8),
                np.zeros((2, 480, 640, 3), np.uint8), np.zeros((480, 640), np.float32)):
        with pytest.raises(BadFrameError) as ei:
            frame_tiles(bad)
        assert ei.value.kind == "pixel_format"


def test_preprocess_matches_keras_applications():
    from keras.applications import imagenet_utils

    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    rgb = np.repeat(tiles[..., None], 3, axis=-1).astype(np.float32)
    for mode in ("caffe", "tf", "torch"):
        ref = imagenet_utils.preprocess_input(rgb.copy(), mode=mode)
        got = preprocess(tiles, mode)
        assert got.shape == (3, 32, 32, 3) and got.dtype == np.float32
        np.testing.assert_allclose(got, np.asarray(ref), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(preprocess(tiles, "none"), rgb)
    with pytest.raises(ValueError):
        preprocess(tiles, "bgr")
