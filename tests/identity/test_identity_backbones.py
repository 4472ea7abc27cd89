"""Backbone/classifier contract: layer names, freezing of all but the last block, weights loading."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.errors import InspectorError
from inspector.offline.identity.backbones import (
    BACKBONES,
    HEAD_LAYERS,
    build_backbone,
    build_classifier,
    conv_map_layer,
    explainer_model,
    get_spec,
)

pytestmark = pytest.mark.filterwarnings("ignore")


def _trainable_names(model) -> set[str]:
    return {layer.name for layer in model.layers if layer.trainable and layer.weights}


def test_tiny_classifier_contract():
    model = build_classifier("tiny", 4, hidden=32)
    assert model.inputs[0].name == "tiles"
    assert tuple(model.inputs[0].shape) == (None, 224, 224, 3)
    for name in HEAD_LAYERS:
        model.get_layer(name)
    assert conv_map_layer(model) == get_spec("tiny").last_conv_layer
    assert _trainable_names(model) == {"block4_conv1", "block4_bn1", "block4_conv2", "block4_bn2",
                                       "head_dense", "head_logits"}
    x = np.random.default_rng(0).normal(size=(3, 224, 224, 3)).astype(np.float32)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (3, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    explainer = explainer_model(model)
    assert explainer.output_names == ["probs", "conv_map", "pooled"]
    p, cmap, pooled = (np.asarray(t) for t in explainer(x, training=False))
    np.testing.assert_allclose(p, probs, atol=1e-6)
    assert cmap.shape == (3, 14, 14, 64)
    np.testing.assert_allclose(cmap.mean(axis=(1, 2)), pooled, atol=1e-5)
    # the explainer shares weights with the classifier
    assert explainer.get_layer("head_dense") is model.get_layer("head_dense")


def test_train_all_unfreezes_everything():
    model = build_classifier("tiny", 3, train_layers="all")
    assert all(layer.trainable for layer in model.layers if layer.weights)


@pytest.mark.parametrize("backbone,conv_shape", [("vgg16", (14, 14, 512)), ("resnet50", (7, 7, 2048))])
def test_paper_backbones_structure_and_freezing(backbone, conv_shape):
    spec = get_spec(backbone)
    model = build_classifier(backbone, 10, weights="none")
    pool_in = model.get_layer("head_pool").input
    assert tuple(pool_in.shape[1:]) == conv_shape
    assert conv_map_layer(model) == spec.last_conv_layer
    names = [layer.name for layer in model.layers]
    if backbone == "vgg16":
        assert "block5_pool" not in names  # head is on block5_conv3 itself
    trainable = _trainable_names(model)
    assert trainable, "the last block must train"
    for name in trainable:
        assert name.startswith(spec.trainable_prefixes) or name.startswith("head_"), name
    frozen_with_weights = [layer for layer in model.layers if layer.weights and not layer.trainable]
    assert frozen_with_weights and all(
        not layer.name.startswith(spec.trainable_prefixes) for layer in frozen_with_weights)
    assert any(n.startswith(spec.trainable_prefixes) for n in trainable)


def test_weights_path_round_trip(tmp_path):
    base = build_backbone("tiny", weights=None)
    rng = np.random.default_rng(1)
    for w in base.weights:  # make the saved weights distinguishable from any random init
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    path = tmp_path / "tiny_notop.weights.h5"
    base.save_weights(str(path))
    model = build_classifier("tiny", 3, weights=str(path))
    for layer in base.layers:
        for saved, loaded in zip(layer.weights, model.get_layer(layer.name).weights, strict=True):
            np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded))
    fresh = build_classifier("tiny", 3, weights=None)
    assert not np.array_equal(np.asarray(fresh.get_layer("block1_conv1").kernel),
                              np.asarray(base.get_layer("block1_conv1").kernel))


def test_bad_weights_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(InspectorError, match="does not exist"):
        build_classifier("tiny", 3, weights=str(tmp_path / "missing.weights.h5"))
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not an h5 file")
    with pytest.raises(InspectorError, match="cannot load backbone weights"):
        build_classifier("tiny", 3, weights=str(junk))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    with pytest.raises(InspectorError, match="not in the Keras cache"):
        build_classifier("resnet50", 3, weights="imagenet")
    with pytest.raises(InspectorError, match="unknown backbone"):
        build_classifier("alexnet", 3)
    with pytest.raises(InspectorError, match="at least 2 classes"):
        build_classifier("tiny", 1)


def test_every_backbone_has_a_consistent_spec():
    from inspector.identity.tiling import PREPROCESS_MODES

    for name, spec in BACKBONES.items():
        assert spec.name == name
        assert spec.preprocess_mode in PREPROCESS_MODES
        assert spec.trainable_prefixes


def test_weights_path_keras2_style_h5(tmp_path):
    """The ImageNet no-top files are Keras-2 HDF5 weight files; such a file loads through weights=PATH."""
    h5py = pytest.importorskip("h5py")
    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    base = build_backbone("tiny", weights=None)
    rng = np.random.default_rng(2)
    for w in base.weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    path = tmp_path / "tiny_notop_keras2.h5"
    with h5py.File(path, "w") as f:
        legacy.save_weights_to_hdf5_group(f, base)
    model = build_classifier("tiny", 2, weights=str(path))
    for layer in base.layers:
        for saved, loaded in zip(layer.weights, model.get_layer(layer.name).weights, strict=True):
            np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded))
