"""Frozen-backbone features of every tile, computed once and cached on disk (fast CPU transfer learning).

With a pretrained backbone that stays frozen, the expensive part of training — the backbone forward pass
over every tile — gives the same result in every epoch, every fold and every grid cell. It is computed
once per frame and stored in ``<cache>/<key>/<sha[:2]>/<sha>.npz``, where ``sha`` is the sha256 of the
frame *file* and ``key`` names everything else the features depend on: backbone, weights (the sha256 of
the weights file), tile size, preprocessing mode, boundary layer and the tiling version.

Two arrays per frame (tiles in :func:`inspector.identity.tiling.frame_tiles` order):

``pooled``    (n, K) float32: the global-average-pooled last convolutional map, the input of the head
              (what the frozen-backbone head is trained on; K = 1280 for EfficientNet-Lite0).
``boundary``  (n, h, w, c) float16: the activation map *entering the last block* (for Lite0 the output of
              MBConv block 14, 7×7×192), so that the last block + head can be fine-tuned without running
              the frozen trunk again. float16 keeps the cache at ~19 KB per tile (relative error ≈ 5e-4).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.errors import InspectorError
from inspector.modelrepo import sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from inspector.offline.identity.data import TileDataset

log = logging.getLogger("inspector.offline.identity.embeddings")

#: bump when tiling/preprocessing changes in a way that changes the tiles of a frame
TILING_VERSION = 1


def default_cache_dir() -> Path:
    """``$INSPECTOR_CACHE`` or ``$XDG_CACHE_HOME/inspector`` (``~/.cache/inspector``), + ``/embeddings``."""
    base = os.environ.get("INSPECTOR_CACHE")
    if base:
        return Path(base) / "embeddings"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "inspector" / "embeddings"


def weights_id(backbone: str, weights: str | None) -> str:
    """What identifies the backbone weights: the pinned sha256 of the package file, a file's sha256, or none."""
    if weights is None:
        return "none"
    if weights == "imagenet":
        from inspector.offline.identity.backbones import get_spec, imagenet_weights_path

        if get_spec(backbone).name == "efficientnet_lite0":
            from inspector.offline.identity.efficientnet_lite import WEIGHTS_SHA256

            return WEIGHTS_SHA256
        p = imagenet_weights_path(backbone)
        if p is None:
            raise InspectorError(f"no ImageNet weights for {backbone} to cache features of")
        return sha256_file(p)
    return sha256_file(weights)


@dataclass(frozen=True)
class FeatureSpec:
    """Everything the cached features depend on, besides the frame itself."""

    backbone: str
    weights_id: str
    tile: int
    preprocess_mode: str
    boundary_layer: str

    @property
    def key(self) -> str:
        text = json.dumps({**self.__dict__, "tiling": TILING_VERSION}, sort_keys=True)
        return f"{self.backbone}-{self.weights_id[:10]}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@dataclass
class Features:
    """Cached features of a whole :class:`TileDataset`, tile-aligned with it."""

    pooled: np.ndarray  # (n_tiles, K) float32
    boundary: np.ndarray  # (n_tiles, h, w, c) float16
    spec: FeatureSpec
    hits: int  # frames read from the cache
    computed: int  # frames computed now


def feature_extractor(backbone: str, weights: str | None, tile: int = 224) -> tuple[keras.Model, str]:
    """A frozen backbone with two outputs: (boundary map, pooled last map). Returns (model, boundary layer)."""
    import keras
    from keras import layers

    from inspector.offline.identity.backbones import build_backbone, get_spec

    spec = get_spec(backbone)
    boundary = spec.boundary_layer
    if not boundary:
        raise InspectorError(f"backbone {spec.name} has no boundary layer for cached features")
    base = build_backbone(spec.name, weights=weights, tile=tile)
    pooled = layers.GlobalAveragePooling2D(name="head_pool")(base.get_layer(spec.last_conv_layer).output)
    model = keras.Model(base.inputs, [base.get_layer(boundary).output, pooled], name=f"{spec.name}_features")
    model.trainable = False
    return model, boundary


class EmbeddingCache:
    """Per-frame feature files under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, spec: FeatureSpec, sha: str) -> Path:
        return self.root / spec.key / sha[:2] / f"{sha}.npz"

    def load(self, spec: FeatureSpec, sha: str, n_tiles: int) -> tuple[np.ndarray, np.ndarray] | None:
        p = self.path(spec, sha)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                pooled, boundary = z["pooled"], z["boundary"]
        except Exception as e:  # noqa: BLE001 — a torn or foreign file is recomputed, not trusted
            log.warning("ignoring unreadable cache file %s: %s", p, e)
            return None
        if len(pooled) != n_tiles or len(boundary) != n_tiles:
            log.warning("ignoring cache file %s: %d tiles, expected %d", p, len(pooled), n_tiles)
            return None
        return pooled, boundary

    def store(self, spec: FeatureSpec, sha: str, pooled: np.ndarray, boundary: np.ndarray) -> None:
        p = self.path(spec, sha)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, pooled=pooled.astype(np.float32), boundary=boundary.astype(np.float16))
        os.replace(tmp, p)  # atomic: a reader never sees half a file


def compute_features(data: TileDataset, backbone: str, weights: str | None, *, cache_dir: str | Path | None = None,
                     batch: int = 32, progress: bool = True) -> Features:
    """Features of every tile of ``data`` (cached frames are read, the others computed and stored)."""
    import tensorflow as tf
    from tqdm import tqdm

    from inspector.offline.identity.backbones import get_spec
    from inspector.offline.identity.train import tf_preprocess

    bspec = get_spec(backbone)
    boundary_layer = bspec.boundary_layer
    if not boundary_layer:
        raise InspectorError(f"backbone {bspec.name} has no boundary layer for cached features")
    fspec = FeatureSpec(bspec.name, weights_id(bspec.name, weights), data.tile, bspec.preprocess_mode, boundary_layer)
    cache = EmbeddingCache(cache_dir or default_cache_dir())
    n = len(data.frames)
    shas = [sha256_file(f) for f in data.frames]
    pooled: list[np.ndarray | None] = [None] * n
    bound: list[np.ndarray | None] = [None] * n
    todo = []
    for i in range(n):
        idx = np.flatnonzero(data.frame_ids == i)
        got = cache.load(fspec, shas[i], len(idx))
        if got is None:
            todo.append(i)
        else:
            pooled[i], bound[i] = got
    if todo:
        model, _ = feature_extractor(bspec.name, weights, data.tile)
        mode = bspec.preprocess_mode

        @tf.function(input_signature=[tf.TensorSpec((None, data.tile, data.tile), tf.uint8)])
        def step(x: tf.Tensor) -> Any:
            return model(tf_preprocess(x, mode), training=False)

        bar = tqdm(total=int(sum(np.sum(data.frame_ids == i) for i in todo)), unit="tile",
                   desc=f"{bspec.name} features ({len(todo)} new frames, {n - len(todo)} cached)",
                   disable=not progress)
        for i in todo:
            tiles = data.tiles[data.frame_ids == i]
            outs = [step(tf.constant(tiles[j:j + batch])) for j in range(0, len(tiles), batch)]
            b = np.concatenate([np.asarray(o[0]) for o in outs]).astype(np.float16)
            p = np.concatenate([np.asarray(o[1]) for o in outs]).astype(np.float32)
            cache.store(fspec, shas[i], p, b)
            pooled[i], bound[i] = p, b
            bar.update(len(tiles))
        bar.close()
    # reassemble in tile order (frame_ids are grouped per frame in load_dataset, but do not rely on it)
    out_p = np.zeros((len(data.tiles), pooled[0].shape[1]), np.float32)
    out_b = np.zeros((len(data.tiles), *bound[0].shape[1:]), np.float16)
    for i in range(n):
        idx = np.flatnonzero(data.frame_ids == i)
        out_p[idx], out_b[idx] = pooled[i], bound[i]
    return Features(pooled=out_p, boundary=out_b, spec=fspec, hits=n - len(todo), computed=len(todo))
