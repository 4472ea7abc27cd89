"""Final training of an identity model on every frame of a data folder, exported as a model version.

A frame-wise train / validation split (validation for early stopping and the reported validation
metrics), then :func:`inspector.offline.identity.export.export_model`. Training runs end to end
(``train.fit`` / ``train.grid_search``) or, with a pretrained backbone that supports it, on cached
frozen-backbone features (``embeddings.compute_features`` + ``fast.fit_cached``) — minutes on a CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.errors import InspectorError
from inspector.offline.identity.backbones import get_spec
from inspector.offline.identity.train import (
    PAPER_BATCHES,
    PAPER_LRS,
    FitResult,
    GridResult,
    TrainConfig,
    config_dict,
    effective_train_layers,
    fit,
    grid_search,
    predict_probs,
    resolve_weights,
    uses_cached_features,
)

log = logging.getLogger("inspector.offline.identity.final")


@dataclass
class TrainingOutcome:
    """A finished final training: the exported model version and what went into it."""

    model_dir: Any  # inspector.modelrepo.ModelDir
    fit: FitResult
    grid: GridResult | None
    classes: list[str]
    config: dict[str, Any]
    val_metrics: dict[str, Any]
    report_files: dict[str, Any] = field(default_factory=dict)


def train_identity(data_dir: Any, out_dir: Any, cfg: TrainConfig, *, name: str | None = None,
                   version: str | None = None, grid: bool = False, lrs: tuple[float, ...] = PAPER_LRS,
                   batches: tuple[int, ...] = PAPER_BATCHES, val_fraction: float = 0.2, split_seed: int = 0,
                   report_dir: Any = None, keras_path: Any = None, command: str = "",
                   progress: bool = True) -> TrainingOutcome:
    """Train on every frame of ``data_dir`` (frame-wise train / validation split) and export the model
    version folder ``out_dir`` (``models/<name>/<version>``: ONNX + head + manifest, through
    :func:`inspector.offline.identity.export.export_model`). ``name`` / ``version`` default to the folder's
    parent name / own name. ``keras_path``: also save the Keras model there (+ ``.json`` with classes).
    """
    import json
    from pathlib import Path

    import keras
    import tensorflow as tf

    from inspector.offline.identity.data import dataset_sha256, load_dataset, train_val_split
    from inspector.offline.identity.metrics import classification_metrics, confusion_matrix, frame_probabilities
    from inspector.offline.identity.export import export_model
    from inspector.identity.tiling import preprocess
    from inspector.modelrepo import MANIFEST, _NAME_RE

    cfg.check()
    out = Path(out_dir)
    name = name or out.resolve().parent.name
    version = version or out.name
    if not _NAME_RE.match(name) or not _NAME_RE.match(version):
        raise InspectorError(f"invalid model name/version {name!r}/{version!r} (letters, digits, . _ -)")
    if (out / MANIFEST).exists():
        raise InspectorError(f"{out} already holds a model version; choose another --out")
    if keras_path is not None and not str(keras_path).endswith(".keras"):
        raise InspectorError(f"--keras must name a .keras file, got {keras_path}")
    data = load_dataset(data_dir, tile=cfg.tile, progress=progress)
    log.info("data: %s", data.summary())
    split = train_val_split(data.frame_labels, val_fraction, split_seed)
    tr, va = data.tile_indices(split.train), data.tile_indices(split.val)
    weights, wdesc = resolve_weights(cfg.backbone, cfg.weights)
    cached = None
    if uses_cached_features(cfg, weights):
        from inspector.offline.identity import fast
        from inspector.offline.identity.embeddings import compute_features

        feats = compute_features(data, cfg.backbone, weights, cache_dir=cfg.cache_dir, progress=progress)
        mode = effective_train_layers(cfg, weights)
        cached = {"mode": mode, "cache_key": feats.spec.key, "frames_from_cache": feats.hits,
                  "frames_computed": feats.computed, "boundary_layer": feats.spec.boundary_layer}
        args = (feats, data.labels, data.frame_ids, tr, va, cfg, data.num_classes)
        if grid:
            g = fast.grid_cached(*args, mode=mode, lrs=lrs, batches=batches, progress=progress)
            res = g.best
        else:
            g, (res, _) = None, fast.fit_cached(*args, mode=mode, progress=progress)
    else:
        g = grid_search(data, tr, va, cfg, lrs=lrs, batches=batches, progress=progress) if grid else None
        res = g.best if g is not None else fit(data, tr, va, cfg, progress=progress)
    spec = get_spec(cfg.backbone)
    probs = predict_probs(res.model, data.tiles[va], spec.preprocess_mode)  # the exported model itself
    val_metrics = classification_metrics(confusion_matrix(data.labels[va], probs.argmax(1), data.num_classes),
                                         data.classes)
    fids, fprobs = frame_probabilities(probs, data.frame_ids[va])
    frame_acc = float(np.mean(fprobs.argmax(1) == data.frame_labels[fids]))
    conf = config_dict(cfg, weights, wdesc)
    metrics = {"validation": {"tile_accuracy": val_metrics["accuracy"], "tile_mean_f1": val_metrics["mean_f1"],
                              "frame_accuracy": frame_acc, "tiles": int(len(va)), "frames": int(len(split.val)),
                              "per_class": val_metrics["per_class"]},
               "note": "validation split of the training data; `inspector evaluate identity` gives k-fold CV"}
    root = Path(data_dir)
    training = {
        "command": command, "data_dir": str(data_dir), "data_sha256": dataset_sha256(data.frames),
        "frames": len(data.frames), "tiles": int(len(data.tiles)), "config": conf,
        "lr": res.lr, "batch": res.batch, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
        "grid": g.to_dict() if g is not None else None, "cached_features": cached,
        "split": {"train_frames": [str(data.frames[i].relative_to(root)) for i in split.train],
                  "val_frames": [str(data.frames[i].relative_to(root)) for i in split.val]},
        "history": {k: [round(v, 5) for v in vals] for k, vals in res.history.items()},
        "framework": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    check = preprocess(data.tiles[va[:: max(1, len(va) // 16)][:16]], spec.preprocess_mode)
    md = export_model(res.model, out, name=name, version=version, classes=data.classes, backbone=spec.name,
                      preprocess_mode=spec.preprocess_mode, metrics=metrics, training=training,
                      check_tiles=check)
    if keras_path is not None:
        kp = Path(keras_path)
        kp.parent.mkdir(parents=True, exist_ok=True)
        res.model.save(str(kp))
        kp.with_suffix(".json").write_text(json.dumps({"classes": data.classes, "backbone": spec.name,
                                                       "config": conf}, indent=2) + "\n", encoding="utf-8")
    files = {}
    if report_dir is not None:
        from inspector.offline.identity.report import write_training_report

        files = write_training_report(res, g, conf, val_metrics, report_dir, command=command)
    return TrainingOutcome(model_dir=md, fit=res, grid=g, classes=data.classes, config=conf,
                           val_metrics=val_metrics, report_files=files)
