"""Grad-CAM (Selvaraju et al.) in TensorFlow, for reports: the reference the serving-side numpy
closed form (:mod:`inspector.identity.gradcam`) must match.

The feature map is the last convolutional activation map (the input of ``head_pool``); the score
is the class's ``head_logits`` entry (pre-softmax, as in the Grad-CAM paper). Channel weights are
the spatial mean of d score / d map; the map is ReLU(Σ_k α_k A_k).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from inspector.errors import InspectorError

if TYPE_CHECKING:  # pragma: no cover
    import keras


def _cam_model(model: keras.Model) -> keras.Model:
    import keras

    try:
        conv = model.get_layer("head_pool").input
        logits = model.get_layer("head_logits").output
    except ValueError:
        raise InspectorError("Grad-CAM needs a model with head_pool and head_logits layers") from None
    return keras.Model(model.inputs, [conv, logits], name=f"{model.name}_gradcam")


def grad_cam_raw(model: keras.Model, x_preprocessed: np.ndarray,
                 class_index: int | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Un-normalised Grad-CAM maps (n, h, w) >= 0 and the class index used per tile.

    ``class_index``: None (each tile's predicted class), one index for all tiles, or one per tile.
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(np.asarray(x_preprocessed, np.float32))
    cam_model = _cam_model(model)
    with tf.GradientTape() as tape:
        conv, logits = cam_model(x, training=False)
        if class_index is None:
            idx = tf.argmax(logits, axis=1, output_type=tf.int32)
        else:
            idx = tf.broadcast_to(tf.constant(np.asarray(class_index, np.int32)), tf.shape(logits)[:1])
        score = tf.reduce_sum(tf.gather(logits, idx, axis=1, batch_dims=1))
    grads = tape.gradient(score, conv)  # (n, h, w, k); tiles are independent, so the sum separates
    alpha = tf.reduce_mean(grads, axis=(1, 2))  # (n, k)
    cam = tf.nn.relu(tf.einsum("nhwk,nk->nhw", conv, alpha))
    return cam.numpy().astype(np.float32), idx.numpy()


def grad_cam(model: keras.Model, x_preprocessed: np.ndarray,
             class_index: int | np.ndarray | None = None) -> np.ndarray:
    """Grad-CAM maps (n, h, w) float32, each scaled to [0, 1] by its own maximum (0 if flat)."""
    cam, _ = grad_cam_raw(model, x_preprocessed, class_index)
    peak = cam.reshape(len(cam), -1).max(axis=1, initial=0.0)[:, None, None]
    return np.where(peak > 1e-12, cam / np.maximum(peak, 1e-12), 0.0).astype(np.float32)


def overlay(gray: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Heat map (h, w) in [0, 1], upsampled, blended over a grey tile or frame → RGB uint8."""
    from inspector.identity.gradcam import tile_overlay

    return tile_overlay(gray, cam, alpha)
