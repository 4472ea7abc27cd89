"""Export a trained identity classifier (Keras) to a serving model version: ONNX + head + manifest.

The exported graph has one input ``tiles`` (n, t, t, 3) float32 — tiles already preprocessed by
``tiling.preprocess`` with the manifest's mode — and three outputs: ``probs`` (n, classes),
``conv_map`` (the last convolutional activation map, n, h, w, K) and ``pooled`` (n, K), so that the
serving side can compute Grad-CAM in numpy (see ``gradcam.py``) without TensorFlow.

Conversion goes through a ``tf.function`` and ``tf2onnx.convert.from_function`` (opset >= 17):
this freezes the variables into the graph for every backbone, EfficientNet and MobileNetV3
included (their in-graph normalisation constants stay constants). The export is checked before the
manifest is written: ONNX Runtime and Keras must agree on the probabilities of probe tiles within
1e-4 relative. The manifest is written last, so a half-written version is never visible.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.errors import InspectorError
from inspector.identity.gradcam import HEAD_ARTIFACT, DenseHead
from inspector.identity.tiling import PREPROCESS_MODES, preprocess
from inspector.modelrepo import MANIFEST, Manifest, ModelDir, write_model_dir

if TYPE_CHECKING:  # pragma: no cover
    import keras

log = logging.getLogger("inspector.offline.identity.export")

TASK = "excipient_identity"
MODEL_ARTIFACT = "model.onnx"
#: ORT vs Keras, max relative difference on probabilities accepted at export
PARITY_TOLERANCE = 1e-4


class ExportError(InspectorError):
    """The model cannot be exported (wrong structure, failed conversion, parity check failed)."""


def relative_difference(a: np.ndarray, b: np.ndarray, floor: float = 1e-6) -> float:
    """max |a - b| / max(|b|, floor): relative error, with an absolute floor for near-zero values."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor), initial=0.0))


def head_from_keras(model: keras.Model) -> DenseHead:
    """The dense-head weights (head_dense, head_logits) of a classifier built by build_classifier."""
    try:
        w1, b1 = model.get_layer("head_dense").get_weights()
        w2, b2 = model.get_layer("head_logits").get_weights()
    except ValueError as e:
        raise ExportError(f"model has no identity head (head_dense/head_logits): {e}") from None
    head = DenseHead(*(np.asarray(a, np.float64) for a in (w1, b1, w2, b2)))
    head.check()
    return head


def _check_structure(model: keras.Model, classes: list[str], preprocess_mode: str) -> tuple[int, DenseHead]:
    if preprocess_mode not in PREPROCESS_MODES:
        raise ExportError(f"unknown preprocessing mode {preprocess_mode!r} (one of {', '.join(PREPROCESS_MODES)})")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ExportError(f"need at least two distinct class names, got {classes}")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3 or shape[1] is None:
        raise ExportError(f"model input must be (None, t, t, 3), got {shape}")
    head = head_from_keras(model)
    if head.num_classes != len(classes):
        raise ExportError(f"model has {head.num_classes} outputs but {len(classes)} class names were given")
    act = model.get_layer("head_dense").get_config().get("activation")
    if act != "relu":
        raise ExportError(f"head_dense must use relu (Grad-CAM closed form), got {act!r}")
    return int(shape[1]), head


def probe_tiles(tile: int, preprocess_mode: str, n: int = 8, seed: int = 0) -> np.ndarray:
    """Preprocessed probe tiles for the parity check: smooth random textures, not flat noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(n, tile // 8 + 1, tile // 8 + 1)).astype(np.float32)
    import cv2

    tiles = np.stack([cv2.resize(s, (tile, tile), interpolation=cv2.INTER_CUBIC) for s in small])
    tiles = np.clip(tiles + rng.normal(0, 12, tiles.shape), 0, 255).astype(np.uint8)
    return preprocess(tiles, preprocess_mode)


def convert_to_onnx(model: keras.Model, path: Path, *, tile: int, opset: int = 17) -> None:
    """Write ``path``: the explainer graph (outputs probs, conv_map, pooled) as ONNX."""
    import tensorflow as tf
    import tf2onnx

    from inspector.offline.identity.backbones import explainer_model

    if opset < 17:
        raise ExportError(f"opset must be >= 17, got {opset}")
    explainer = explainer_model(model)
    spec = [tf.TensorSpec((None, tile, tile, 3), tf.float32, name="tiles")]

    @tf.function(input_signature=spec)
    def serve(tiles: tf.Tensor) -> dict[str, tf.Tensor]:
        probs, conv_map, pooled = explainer(tiles, training=False)
        return {"probs": probs, "conv_map": conv_map, "pooled": pooled}

    tf2onnx_log = logging.getLogger("tf2onnx")
    level = tf2onnx_log.level
    tf2onnx_log.setLevel(logging.ERROR)  # its optimizer logs recoverable failures as tracebacks
    try:
        tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset, output_path=str(path))
    except Exception as e:  # noqa: BLE001 — tf2onnx raises many types
        raise ExportError(f"ONNX conversion failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    finally:
        tf2onnx_log.setLevel(level)


def _parity(model: keras.Model, onnx_path: Path, x: np.ndarray) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["probs"], {"tiles": x})[0]
    want = np.asarray(model(x, training=False))
    return relative_difference(got, want)


def export_model(model: keras.Model, out_dir: str | Path, *, name: str, version: str, classes: list[str],
                 backbone: str, preprocess_mode: str, metrics: dict | None = None,
                 training: dict | None = None, opset: int = 17,
                 check_tiles: np.ndarray | None = None) -> ModelDir:
    """Export ``model`` (built by ``backbones.build_classifier``) as a verified model version directory.

    Writes ``out_dir/model.onnx`` (outputs probs, conv_map, pooled), ``out_dir/head.npz`` (dense-head
    weights for numpy Grad-CAM) and, last, ``manifest.json`` through ``modelrepo.write_model_dir``.
    ``check_tiles`` (preprocessed, (n, t, t, 3)) are used for the ORT-vs-Keras parity check; smooth
    random probe tiles otherwise. Refuses to overwrite an existing version.
    """
    out = Path(out_dir)
    if (out / MANIFEST).exists():
        raise ExportError(f"{out} already holds a model version (manifest.json); choose another --version/--out")
    classes = [str(c) for c in classes]
    tile, head = _check_structure(model, classes, preprocess_mode)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / MODEL_ARTIFACT
    convert_to_onnx(model, onnx_path, tile=tile, opset=opset)
    head.save(out / HEAD_ARTIFACT)
    x = probe_tiles(tile, preprocess_mode) if check_tiles is None else np.asarray(check_tiles, np.float32)
    rel = _parity(model, onnx_path, x)
    if not rel <= PARITY_TOLERANCE:
        raise ExportError(f"ONNX Runtime and Keras disagree on probabilities: max relative difference {rel:.2e} "
                          f"> {PARITY_TOLERANCE:g}")
    conv_shape = [int(d) for d in model.get_layer("head_pool").input.shape[1:]]
    from inspector.offline.identity.backbones import conv_map_layer

    manifest = Manifest(
        name=name, version=str(version), task=TASK,
        artifacts={MODEL_ARTIFACT: {}, HEAD_ARTIFACT: {}},
        classes=classes,
        input={"name": "tiles", "shape": [None, tile, tile, 3], "dtype": "float32", "layout": "NHWC",
               "frame": "grey (H, W) or RGB (H, W, 3), uint8/uint16; data bar cropped; centred tile grid"},
        preprocessing={"mode": preprocess_mode, "tile": tile, "channels": 3, "crop_data_bar": True},
        metrics=_jsonable(metrics or {}),
        training=_jsonable(training or {}),
        extra={
            "backbone": backbone,
            "precision": "fp32",
            "opset": opset,
            "outputs": {"probs": [None, len(classes)], "conv_map": [None, *conv_shape], "pooled": [None, conv_shape[-1]]},
            "last_conv_layer": conv_map_layer(model),
            "head": {"hidden": int(head.w1.shape[1]), "activation": "relu", "artifact": HEAD_ARTIFACT},
            "parity": {"max_rel_diff_probs": rel, "tiles": int(len(x)), "tolerance": PARITY_TOLERANCE},
        },
    )
    md = write_model_dir(out, manifest)
    log.info("exported %s/%s to %s (parity %.1e)", name, version, out, rel)
    return md


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so numpy scalars and paths become plain values (raises early if not)."""
    return json.loads(json.dumps(d, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
