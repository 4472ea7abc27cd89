"""Frame → tiles for the excipient-identity CNN (seed 000), shared by training and serving.

A 1280×960 SEM frame is cut into a fixed, centred grid of non-overlapping 224×224 tiles
(4 rows × 5 columns = 20 tiles), after the microscope's data bar (the strip of text and scale
bar at the bottom of a raw SEM image, e.g. 64 rows under a 1280×960 image in a 1280×1024 file)
has been removed. Tiles are single-channel uint8; :func:`preprocess` replicates them to three
channels and applies the backbone's own input normalisation in numpy.

This module must not import TensorFlow: the ONNX Runtime serving path uses it.
"""

from __future__ import annotations

import numpy as np

from inspector.errors import BadFrameError

TILE = 224

#: ImageNet BGR channel means used by the "caffe" preprocessing of VGG16 / ResNet50 (Keras).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
#: ImageNet RGB mean / std used by the "torch" preprocessing (Keras ``mode="torch"``).
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)
PREPROCESS_MODES = ("caffe", "tf", "torch", "none")

# Data-bar detection: a bar row is dominated by one grey value (the bar background behind the
# text); SEM image rows practically never are (measured: ≤ 0.25 on the real frames, ≥ 0.68 in
# their bar).
_BAR_ROW_DOMINANCE = 0.45
_BAR_MIN_ROWS = 8  # fewer bar-like rows than this at the bottom is image content, not a bar
_BAR_MAX_FRACTION = 1 / 3  # a bar never takes more than a third of the frame height
_BAR_MAX_GAP = 3  # dense text lines may break the run of bar-like rows for a few rows


def _row_dominance(img: np.ndarray) -> np.ndarray:
    """Per row, the fraction of pixels equal to the row's most frequent value."""
    h, w = img.shape
    if img.dtype == np.uint8:
        # offset each row into its own 256-bin block: one bincount for the whole strip
        offsets = (np.arange(h, dtype=np.int64) * 256)[:, None]
        counts = np.bincount((img.astype(np.int64) + offsets).ravel(), minlength=h * 256)
        return counts.reshape(h, 256).max(axis=1) / w
    out = np.empty(h, dtype=np.float64)
    for i in range(h):
        _, c = np.unique(img[i], return_counts=True)
        out[i] = c.max() / w
    return out


def data_bar_rows(img: np.ndarray) -> int:
    """Height in rows of the data bar at the bottom of a grey image (0 when there is none)."""
    if img.ndim != 2:
        raise BadFrameError(f"data bar detection needs a grey (H, W) image, got shape {img.shape}",
                            kind="pixel_format")
    h = img.shape[0]
    max_rows = int(h * _BAR_MAX_FRACTION)
    if max_rows < _BAR_MIN_ROWS:
        return 0
    dom = _row_dominance(img[h - max_rows:])
    bar_like = dom >= _BAR_ROW_DOMINANCE
    top = max_rows  # index (within the strip) of the topmost bar row found so far
    gap = 0
    for i in range(max_rows - 1, -1, -1):
        if bar_like[i]:
            top, gap = i, 0
        else:
            gap += 1
            if gap > _BAR_MAX_GAP:
                break
    rows = max_rows - top
    return rows if rows >= _BAR_MIN_ROWS else 0


def crop_data_bar(img: np.ndarray) -> np.ndarray:
    """Return ``img`` without the SEM data bar at its bottom (a view; a no-op when there is none).

    A bar is a run of at least 8 rows at the bottom, at most a third of the height, whose rows are
    each dominated (≥ 45 % of pixels) by a single grey value — a uniform band carrying text and a
    scale bar. Works on grey (H, W) and colour (H, W, C) images (detected on the first channel).
    """
    grey = img if img.ndim == 2 else img[..., 0]
    rows = data_bar_rows(grey)
    return img[: img.shape[0] - rows] if rows else img


def tile_grid(height: int, width: int, tile: int = TILE) -> list[tuple[int, int]]:
    """Origins ``(y, x)`` of the fixed centred grid of non-overlapping ``tile``×``tile`` tiles.

    Row-major order. 1280×960 (W×H) gives 4 rows × 5 columns = 20 tiles. Raises
    :class:`BadFrameError` (kind ``"too_small"``) when not even one tile fits.
    """
    if tile <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    rows, cols = int(height) // tile, int(width) // tile
    if rows < 1 or cols < 1:
        raise BadFrameError(
            f"frame {width}x{height} is smaller than one {tile}x{tile} tile", kind="too_small")
    y0 = (int(height) - rows * tile) // 2
    x0 = (int(width) - cols * tile) // 2
    return [(y0 + r * tile, x0 + c * tile) for r in range(rows) for c in range(cols)]


def to_gray_u8(img: np.ndarray) -> np.ndarray:
    """Grey uint8 (H, W) from grey uint8/uint16 (H, W[, 1]) or colour uint8/uint16 (H, W, 3).

    uint16 is scaled from its full range (0..65535 → 0..255, rounded); RGB uses ITU-R BT.601
    weights. Anything else raises :class:`BadFrameError` (kind ``"pixel_format"``).
    """
    img = np.asarray(img)
    if img.dtype not in (np.uint8, np.uint16):
        raise BadFrameError(f"unsupported pixel type {img.dtype} (need uint8 or uint16)",
                            kind="pixel_format")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] == 3:
        w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        grey = img.astype(np.float32) @ w
        if img.dtype == np.uint16:
            grey = grey / 257.0
        return np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    if img.ndim != 2:
        raise BadFrameError(
            f"frame of shape {img.shape} has an unsupported channel count "
            f"(need grey (H, W) or RGB (H, W, 3))", kind="pixel_format")
    if img.dtype == np.uint16:
        return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return img


def frame_tiles(img: np.ndarray, tile: int = TILE) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Cut a frame into its grid of grey tiles.

    Converts to grey uint8 (:func:`to_gray_u8`), crops the data bar, then cuts the
    :func:`tile_grid`. Returns ``(tiles, origins)`` with ``tiles`` of shape (n, tile, tile) uint8
    and the (y, x) origins in the cropped frame (which has the frame's own coordinates, since the
    bar is at the bottom).
    """
    return grid_tiles(crop_data_bar(to_gray_u8(img)), tile)


def grid_tiles(body: np.ndarray, tile: int = TILE) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """:func:`frame_tiles` of a grey uint8 frame whose data bar is already cropped (the bar detection
    costs ≈ 10 ms on a 1280 × 1024 frame: a caller that needs the cropped frame too crops once)."""
    origins = tile_grid(body.shape[0], body.shape[1], tile)
    tiles = np.stack([body[y:y + tile, x:x + tile] for y, x in origins])
    return np.ascontiguousarray(tiles), origins


def preprocess(tiles: np.ndarray, mode: str) -> np.ndarray:
    """(n, t, t) uint8 grey tiles → (n, t, t, 3) float32, normalised for the backbone.

    ``mode`` follows ``keras.applications.imagenet_utils.preprocess_input``:
    ``"caffe"`` (VGG16, ResNet50: RGB→BGR then ImageNet mean subtraction; for grey tiles the
    three channels are equal, so only the means differ), ``"tf"`` (scaled to [-1, 1]),
    ``"torch"`` (to [0, 1] then ImageNet mean/std), ``"none"`` (raw 0..255 floats, for models
    that normalise inside the graph such as EfficientNet and MobileNetV3).
    """
    t = np.asarray(tiles)
    if t.ndim == 2:
        t = t[None]
    if t.ndim == 4 and t.shape[-1] == 1:
        t = t[..., 0]
    if t.ndim != 3:
        raise BadFrameError(f"tiles must be (n, t, t) grey, got shape {t.shape}", kind="pixel_format")
    x = np.repeat(t.astype(np.float32)[..., None], 3, axis=-1)
    if mode == "caffe":
        x -= np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)
    elif mode == "tf":
        x /= 127.5
        x -= 1.0
    elif mode == "torch":
        x /= 255.0
        x -= np.asarray(TORCH_MEAN_RGB, dtype=np.float32)
        x /= np.asarray(TORCH_STD_RGB, dtype=np.float32)
    elif mode != "none":
        raise ValueError(f"unknown preprocessing mode {mode!r} (one of {', '.join(PREPROCESS_MODES)})")
    return x
