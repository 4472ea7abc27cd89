"""Transfer learning on cached features: the paper's head (and optionally the last block) trained in seconds.

The full classifier is built once (``backbones.build_classifier``, pretrained backbone); a *trainable
tail* reuses its layer objects — so weights are shared and the full model is ready to export when the
tail has trained:

``head``        Input(pooled K) → head_dense → head_dropout → head_logits → head_softmax, trained on the
                cached ``pooled`` features (backbone entirely frozen).
``last_block``  Input(boundary map) → every layer after the boundary layer (Lite0: MBConv block 15, the
                1280-channel head conv, head_pool) → head, trained on the cached ``boundary`` maps. Batch
                normalisation of the fine-tuned block stays in inference mode (its ImageNet statistics), the
                usual choice for small data; its convolutions and the head train.

SGD with momentum 0.9, sparse categorical cross-entropy, early stopping on validation accuracy with the
best weights restored — the optimiser and stopping rule of ``train.fit``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.errors import InspectorError
from inspector.offline.identity.train import FitResult, TrainConfig, compile_sgd, fit_callbacks

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from inspector.offline.identity.embeddings import Features

log = logging.getLogger("inspector.offline.identity.fast")

MODES = ("head", "last_block")


def tail_model(full: keras.Model, mode: str, boundary_layer: str) -> keras.Model:
    """The trainable tail of ``full`` (shared layers) for ``mode``; freezes every other layer of ``full``."""
    import keras
    from keras import layers

    if mode not in MODES:
        raise InspectorError(f"cached training mode must be one of {MODES}, got {mode!r}")
    names = [layer.name for layer in full.layers]
    start = names.index("head_dense") if mode == "head" else names.index(boundary_layer) + 1
    chain = full.layers[start:]
    for layer in full.layers:
        layer.trainable = False
    first_in = chain[0].input
    inp = keras.Input(tuple(first_in.shape[1:]), name="features", dtype="float32")
    x = inp
    for layer in chain:
        if isinstance(layer.input, list):
            raise InspectorError(f"layer {layer.name} after {boundary_layer} is not a chain: cannot fine-tune it alone")
        x = layer(x)
        layer.trainable = not isinstance(layer, layers.BatchNormalization)
    return keras.Model(inp, x, name=f"{full.name}_{mode}_tail")


def _inputs(feats: Features, mode: str, idx: np.ndarray) -> np.ndarray:
    return feats.pooled[idx] if mode == "head" else feats.boundary[idx]


def _dataset(x: np.ndarray, y: np.ndarray | None, batch: int, *, shuffle: bool, seed: int) -> Any:
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x,) if y is None else (x, y.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)

    def cast(*t: Any) -> Any:
        return (tf.cast(t[0], tf.float32), *t[1:]) if len(t) > 1 else tf.cast(t[0], tf.float32)

    return ds.batch(batch).map(cast, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def tail_probs(tail: keras.Model, feats: Features, mode: str, idx: np.ndarray, batch: int = 256) -> np.ndarray:
    """Softmax probabilities of tiles ``idx`` through the tail (equal to the full model up to float16 rounding)."""
    import tensorflow as tf

    step = tf.function(lambda x: tail(tf.cast(x, tf.float32), training=False))
    x = _inputs(feats, mode, idx)
    return np.concatenate([np.asarray(step(x[i:i + batch])) for i in range(0, len(x), batch)])


def fit_cached(feats: Features, labels: np.ndarray, frame_ids: np.ndarray, train_tiles: np.ndarray,
               val_tiles: np.ndarray, cfg: TrainConfig, num_classes: int, *, mode: str,
               lr: float | None = None, batch: int | None = None, progress: bool = True,
               desc: str = "training (cached features)") -> tuple[FitResult, keras.Model]:
    """Train a fresh classifier's ``mode`` tail on cached features. Returns (result with the full model, tail)."""
    import keras

    from inspector.offline.identity.backbones import build_classifier
    from inspector.offline.identity.train import configure_tensorflow

    cfg.check()
    lr = cfg.lr if lr is None else float(lr)
    batch = cfg.batch if batch is None else int(batch)
    if len(train_tiles) == 0 or len(val_tiles) == 0:
        raise InspectorError("training needs at least one training and one validation tile")
    if np.intersect1d(frame_ids[train_tiles], frame_ids[val_tiles]).size:
        raise InspectorError("training and validation tiles share a source frame (split leak)")
    configure_tensorflow(cfg.threads)
    keras.utils.set_random_seed(cfg.seed)
    full = build_classifier(cfg.backbone, num_classes, weights=cfg.weights, hidden=cfg.hidden, dropout=cfg.dropout,
                            tile=feats.spec.tile, train_layers="last_block")
    tail = tail_model(full, mode, feats.spec.boundary_layer)
    compile_sgd(tail, lr)
    train_ds = _dataset(_inputs(feats, mode, train_tiles), labels[train_tiles], batch, shuffle=True, seed=cfg.seed)
    val_ds = _dataset(_inputs(feats, mode, val_tiles), labels[val_tiles], 256, shuffle=False, seed=cfg.seed)
    callbacks = fit_callbacks(cfg, desc, progress)
    hist = tail.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, verbose=0, callbacks=callbacks,
                    shuffle=False)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    val_acc = np.asarray(history.get("val_accuracy", []), float)
    finite = np.where(np.isfinite(val_acc), val_acc, -np.inf)
    best = int(np.argmax(finite)) if len(finite) else 0
    best_acc = float(finite[best]) if len(finite) and np.isfinite(finite[best]) else float("nan")
    res = FitResult(model=full, lr=lr, batch=batch, history=history, best_epoch=best + 1, val_accuracy=best_acc,
                    epochs_run=len(val_acc))
    return res, tail


def grid_cached(feats: Features, labels: np.ndarray, frame_ids: np.ndarray, train_tiles: np.ndarray,
                val_tiles: np.ndarray, cfg: TrainConfig, num_classes: int, *, mode: str,
                lrs: tuple[float, ...], batches: tuple[int, ...], progress: bool = True) -> Any:
    """The lr × batch grid on cached features; returns a ``train.GridResult`` (best cell keeps its model)."""
    from tqdm import tqdm

    from inspector.offline.identity.train import GridResult

    acc = np.full((len(lrs), len(batches)), np.nan)
    epochs = np.zeros_like(acc)
    best: FitResult | None = None
    cells = [(i, j) for i in range(len(lrs)) for j in range(len(batches))]
    for i, j in tqdm(cells, desc="grid lr×batch (cached features)", unit="cell", disable=not progress):
        res, _ = fit_cached(feats, labels, frame_ids, train_tiles, val_tiles, cfg, num_classes, mode=mode,
                            lr=lrs[i], batch=batches[j], progress=progress, desc=f"lr={lrs[i]:g} batch={batches[j]}")
        acc[i, j], epochs[i, j] = res.val_accuracy, res.epochs_run
        if best is None or (not np.isnan(res.val_accuracy)
                            and (np.isnan(best.val_accuracy) or res.val_accuracy > best.val_accuracy)):
            best = res
    assert best is not None
    return GridResult(lrs=[float(v) for v in lrs], batches=[int(b) for b in batches], val_accuracy=acc, best=best,
                      epochs_run=epochs)
