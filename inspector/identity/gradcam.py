"""Grad-CAM without TensorFlow: the closed form from the exported model's outputs and its dense head.

The identity classifier applies its head directly to the last convolutional activation map ``A``
(shape ``(h, w, K)``)::

    pooled = mean_ij A_ij                     (head_pool, GlobalAveragePooling2D)
    hidden = relu(pooled @ W1 + b1)           (head_dense; head_dropout is the identity at inference)
    logits = hidden @ W2 + b2                 (head_logits)
    probs  = softmax(logits)                  (head_softmax)

Grad-CAM (Selvaraju et al.) for class ``c`` weights each channel by the spatial mean of the gradient
of the class score ``y_c`` (the logit, before softmax) with respect to ``A``. Because ``pooled`` is
the spatial mean of ``A``, ``dy_c/dA_ijk = (1/hw) * dy_c/dpooled_k`` for every position, so

    alpha_k = (1/hw) * sum_m W1[k, m] * [hidden_pre_m > 0] * W2[m, c]
    cam     = relu(sum_k alpha_k * A_k)

which is exact (no autodiff needed). The ONNX model outputs ``conv_map`` and ``pooled``; the head
weights travel beside it in ``head.npz`` (plain float arrays, loaded with ``allow_pickle=False`` and
sha256-verified through the manifest). The rest of this module renders maps as PNG overlays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.errors import ModelIntegrityError

#: artifact name of the dense-head weights inside a model version directory
HEAD_ARTIFACT = "head.npz"
_HEAD_KEYS = ("dense_kernel", "dense_bias", "logits_kernel", "logits_bias")


@dataclass(frozen=True)
class DenseHead:
    """Weights of ``head_dense`` (W1, b1) and ``head_logits`` (W2, b2), float64 for exact maps."""

    w1: np.ndarray  # (K, hidden)
    b1: np.ndarray  # (hidden,)
    w2: np.ndarray  # (hidden, classes)
    b2: np.ndarray  # (classes,)

    @property
    def num_features(self) -> int:
        return int(self.w1.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.w2.shape[1])

    def to_arrays(self) -> dict[str, np.ndarray]:
        return dict(zip(_HEAD_KEYS, (self.w1, self.b1, self.w2, self.b2), strict=True))

    def save(self, path: str | Path) -> None:
        """Write ``head.npz`` (uncompressed, float32, no object arrays)."""
        np.savez(Path(path), **{k: np.asarray(v, np.float32) for k, v in self.to_arrays().items()})

    @classmethod
    def load(cls, path: str | Path) -> DenseHead:
        """Read ``head.npz``; pickled object arrays are refused (``allow_pickle=False``)."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                arrays = {k: np.asarray(z[k], np.float64) for k in _HEAD_KEYS}
        except (OSError, KeyError, ValueError) as e:
            raise ModelIntegrityError(f"unreadable Grad-CAM head weights {path}: {e}") from None
        head = cls(arrays["dense_kernel"], arrays["dense_bias"], arrays["logits_kernel"], arrays["logits_bias"])
        head.check()
        return head

    def check(self) -> None:
        """Raise ModelIntegrityError unless the four arrays chain into one dense head."""
        w1, b1, w2, b2 = self.w1, self.b1, self.w2, self.b2
        ok = (w1.ndim == 2 and w2.ndim == 2 and b1.shape == (w1.shape[1],)
              and w2.shape[0] == w1.shape[1] and b2.shape == (w2.shape[1],))
        if not ok:
            raise ModelIntegrityError(
                f"inconsistent head shapes W1{w1.shape} b1{b1.shape} W2{w2.shape} b2{b2.shape}")

    def logits(self, pooled: np.ndarray) -> np.ndarray:
        """Class logits from pooled features (n, K) -> (n, classes); matches the network's head."""
        hidden = np.maximum(np.asarray(pooled, np.float64) @ self.w1 + self.b1, 0.0)
        return hidden @ self.w2 + self.b2


def channel_weights(pooled: np.ndarray, head: DenseHead, class_idx: int | np.ndarray) -> np.ndarray:
    """Grad-CAM channel weights ``dy_c/dpooled`` for each tile, shape (n, K) (not yet divided by hw)."""
    pooled = np.asarray(pooled, np.float64)
    if pooled.ndim != 2 or pooled.shape[1] != head.num_features:
        raise ValueError(f"pooled features of shape {pooled.shape} do not fit a head with {head.num_features} inputs")
    n = pooled.shape[0]
    cls = np.broadcast_to(np.asarray(class_idx, dtype=np.int64), (n,))
    if np.any(cls < 0) or np.any(cls >= head.num_classes):
        raise ValueError(f"class index out of range 0..{head.num_classes - 1}")
    active = (pooled @ head.w1 + head.b1) > 0.0  # (n, hidden): derivative of relu
    w2c = head.w2[:, cls].T  # (n, hidden)
    return (active * w2c) @ head.w1.T  # (n, K)


def gradcam(conv_map: np.ndarray, pooled: np.ndarray, head: DenseHead,
            class_idx: int | np.ndarray) -> np.ndarray:
    """Raw Grad-CAM maps (n, h, w) >= 0 for ``class_idx`` (one index or one per tile), not normalised."""
    a = np.asarray(conv_map)
    if a.ndim != 4 or a.shape[0] != np.shape(pooled)[0]:
        raise ValueError(f"conv_map of shape {a.shape} does not match pooled of shape {np.shape(pooled)}")
    h, w = a.shape[1:3]
    alpha = channel_weights(pooled, head, class_idx) / float(h * w)  # (n, K)
    cam = np.einsum("nhwk,nk->nhw", a, alpha.astype(a.dtype, copy=False), optimize=True)
    return np.maximum(cam, 0.0).astype(np.float32, copy=False)


def normalise(cams: np.ndarray, *, joint: bool = True, eps: float = 1e-12) -> np.ndarray:
    """Scale maps to [0, 1]: by the max over all tiles (``joint``, comparable across a frame) or per tile."""
    cams = np.asarray(cams, np.float32)
    if joint:
        m = float(cams.max(initial=0.0))
        return cams / m if m > eps else np.zeros_like(cams)
    m = cams.reshape(len(cams), -1).max(axis=1).reshape(-1, *([1] * (cams.ndim - 1)))
    return np.where(m > eps, cams / np.maximum(m, eps), 0.0).astype(np.float32)


def _heat_rgb(cam01: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) map in [0, 1] -> (H, W, 3) uint8 RGB jet colours, bilinearly upsampled to ``size`` (H, W)."""
    import cv2

    up = cv2.resize(np.asarray(cam01, np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    u8 = np.clip(up * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def _grey_rgb(gray: np.ndarray) -> np.ndarray:
    g = np.asarray(gray)
    if g.dtype != np.uint8:
        g = (g.astype(np.float32) / max(float(g.max(initial=0)), 1.0) * 255.0).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def tile_overlay(tile: np.ndarray, cam01: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Heat map blended over one grey tile (t, t) -> (t, t, 3) uint8 RGB."""
    base = _grey_rgb(tile).astype(np.float32)
    heat = _heat_rgb(cam01, base.shape[:2]).astype(np.float32)
    return np.clip((1.0 - alpha) * base + alpha * heat, 0, 255).astype(np.uint8)


def frame_overlay(gray: np.ndarray, cams01: np.ndarray, origins: list[tuple[int, int]], tile: int,
                  alpha: float = 0.45, outline: bool = True) -> np.ndarray:
    """Whole-frame overlay: each tile's map blended at its grid origin; untiled margins stay grey."""
    out = _grey_rgb(gray).copy()
    if len(cams01) != len(origins):
        raise ValueError(f"{len(cams01)} maps for {len(origins)} tile origins")
    for cam, (y, x) in zip(cams01, origins, strict=True):
        region = out[y:y + tile, x:x + tile].astype(np.float32)
        heat = _heat_rgb(cam, region.shape[:2]).astype(np.float32)
        out[y:y + tile, x:x + tile] = np.clip((1.0 - alpha) * region + alpha * heat, 0, 255).astype(np.uint8)
    if outline:
        for y, x in origins:  # thin white grid lines so a reader sees the tiles the model saw
            out[y, x:x + tile] = 255
            out[y + tile - 1, x:x + tile] = 255
            out[y:y + tile, x] = 255
            out[y:y + tile, x + tile - 1] = 255
    return out


def encode_png(rgb: np.ndarray, compression: int = 3) -> bytes:
    """RGB (H, W, 3) or grey (H, W) uint8 -> PNG bytes."""
    import cv2

    img = np.asarray(rgb)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
