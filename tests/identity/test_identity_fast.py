"""Fast transfer learning on cached frozen-backbone features (EfficientNet-Lite0, ImageNet weights):
the cache is keyed by frame content, the trained tail shares its weights with the exported model, and
only the layers that should train do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector.errors import InspectorError
from inspector.offline.identity import efficientnet_lite
from inspector.offline.identity.data import load_dataset, train_val_split

pytestmark = pytest.mark.filterwarnings("ignore")

CLASSES = ("blobs", "fibres")


def _frame(cls: str, seed: int, size: int = 448) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    img = rng.normal(110, 20, (size, size)).astype(np.float32)
    for _ in range(50):
        x, y = int(rng.integers(0, size)), int(rng.integers(0, size))
        if cls == "blobs":
            cv2.circle(img, (x, y), int(rng.integers(8, 20)), 230, -1)
        else:
            a = rng.uniform(0, np.pi)
            cv2.line(img, (x, y), (int(x + 70 * np.cos(a)), int(y + 70 * np.sin(a))), 30, 4)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    import cv2

    try:
        efficientnet_lite.weights_path()
    except InspectorError as e:
        pytest.skip(str(e))
    root = tmp_path_factory.mktemp("fast-data")
    for c, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(5):
            cv2.imwrite(str(root / name / f"{i}.png"), _frame(name, 10 * c + i))
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fast-cache")


@pytest.fixture(scope="module")
def features(data_dir, cache_dir):
    from inspector.offline.identity.embeddings import compute_features

    data = load_dataset(data_dir, progress=False)
    return data, compute_features(data, "efficientnet_lite0", "imagenet", cache_dir=cache_dir, progress=False)


def test_feature_cache_is_keyed_by_frame_content(data_dir, cache_dir, features, tmp_path):
    import shutil

    import cv2

    from inspector.offline.identity.embeddings import compute_features

    data, first = features
    assert (first.hits, first.computed) == (0, 10)
    assert first.pooled.shape == (40, 1280) and first.boundary.shape == (40, 7, 7, 192)
    assert (first.pooled >= 0).all() and first.pooled.std() > 0  # ReLU6 features of real content
    again = compute_features(data, "efficientnet_lite0", "imagenet", cache_dir=cache_dir, progress=False)
    assert (again.hits, again.computed) == (10, 0)
    np.testing.assert_array_equal(again.pooled, first.pooled)
    np.testing.assert_array_equal(again.boundary, first.boundary)
    # a frame whose content changes is recomputed; the others still come from the cache
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    cv2.imwrite(str(copy / "blobs" / "0.png"), _frame("blobs", 999))
    changed = compute_features(load_dataset(copy, progress=False), "efficientnet_lite0", "imagenet",
                               cache_dir=cache_dir, progress=False)
    assert (changed.hits, changed.computed) == (9, 1)
    assert not np.allclose(changed.pooled[:4], first.pooled[:4])
    np.testing.assert_array_equal(changed.pooled[4:], first.pooled[4:])


@pytest.mark.parametrize("mode", ["head", "last_block"])
def test_cached_training_shares_weights_with_the_exported_model(features, mode):
    from inspector.offline.identity import fast
    from inspector.offline.identity.train import TrainConfig, predict_probs, uses_cached_features

    data, feats = features
    cfg = TrainConfig(backbone="efficientnet_lite0", weights="imagenet", train_layers=mode, epochs=3, patience=3,
                      hidden=16, batch=8, lr=1e-2)
    assert uses_cached_features(cfg, "imagenet")
    split = train_val_split(data.frame_labels, 0.4, seed=0)
    tr, va = data.tile_indices(split.train), data.tile_indices(split.val)
    res, tail = fast.fit_cached(feats, data.labels, data.frame_ids, tr, va, cfg, data.num_classes, mode=mode,
                                progress=False)
    assert res.epochs_run >= 1 and 0.0 <= res.val_accuracy <= 1.0
    full = res.model
    # the tail IS the end of the full model: same probabilities from cached features and from pixels
    want = predict_probs(full, data.tiles[va], "tf")
    got = fast.tail_probs(tail, feats, mode, va)
    np.testing.assert_allclose(got, want, atol=1e-4 if mode == "head" else 5e-3)
    state = efficientnet_lite.load_imagenet_state_dict()
    top = full.get_layer("top_conv").get_weights()[0]
    frozen = full.get_layer("block14_project_conv").get_weights()[0]
    np.testing.assert_array_equal(frozen, state["_blocks.14._project_conv.weight"].transpose(2, 3, 1, 0))
    imagenet_top = state["_conv_head.weight"].transpose(2, 3, 1, 0)
    bn = full.get_layer("block15_project_bn").get_weights()[2]
    np.testing.assert_array_equal(bn, state["_blocks.15._bn2.running_mean"])  # BN statistics stay ImageNet's
    if mode == "head":
        np.testing.assert_array_equal(top, imagenet_top)
    else:
        assert not np.array_equal(top, imagenet_top)  # the last block + head conv were fine-tuned


def test_cached_features_refused_where_they_do_not_apply():
    from inspector.offline.identity.train import TrainConfig, uses_cached_features

    assert not uses_cached_features(TrainConfig(backbone="efficientnet_lite0", train_layers="all"), "imagenet")
    assert not uses_cached_features(TrainConfig(backbone="efficientnet_lite0", features="end_to_end"), "imagenet")
    assert not uses_cached_features(TrainConfig(backbone="efficientnet_lite0"), None)  # from scratch: all layers
    with pytest.raises(InspectorError, match="cached features need"):
        uses_cached_features(TrainConfig(backbone="resnet50", features="cached"), "imagenet")
