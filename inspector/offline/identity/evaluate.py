"""K-fold cross-validation of the identity CNN by source frame (seed 000 protocol).

Per fold: per class 6 train / 2 validation / 2 test frames (10 frames, 5 folds), optionally the
lr × batch grid on the validation frames, then test-tile predictions. Metrics as in the paper
(confusion matrix, per-class precision, recall, F-measure, mean F) on tiles, plus the frame-level
identity that the inline inspection reports (mean of the frame's tile probabilities).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.offline.identity.data import Split, TileDataset, cv_splits
from inspector.offline.identity.metrics import classification_metrics, confusion_matrix, frame_probabilities
from inspector.offline.identity.train import PAPER_BATCHES, PAPER_LRS, GridResult, TrainConfig


@dataclass
class FoldResult:
    fold: int
    split: Split  # frame indices
    lr: float
    batch: int
    best_epoch: int
    epochs_run: int
    val_accuracy: float
    history: dict[str, list[float]]
    grid: GridResult | None
    test_tiles: np.ndarray  # tile indices
    probs: np.ndarray  # (n_test_tiles, classes)
    y_true: np.ndarray
    y_pred: np.ndarray
    metrics: dict[str, Any]
    frame_metrics: dict[str, Any]
    frame_true: np.ndarray
    frame_pred: np.ndarray


@dataclass
class CVResult:
    classes: list[str]
    config: dict[str, Any]
    folds: list[FoldResult]
    grid_used: bool
    model: Any = None  # the trained model of the first fold (for Grad-CAM figures)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def confusion(self) -> np.ndarray:
        """Test-tile confusion matrix summed over folds (every tile tested exactly once)."""
        return sum(confusion_matrix(f.y_true, f.y_pred, len(self.classes)) for f in self.folds)

    @property
    def frame_confusion(self) -> np.ndarray:
        return sum(confusion_matrix(f.frame_true, f.frame_pred, len(self.classes)) for f in self.folds)

    def grid_mean(self) -> np.ndarray | None:
        """Validation accuracy per (lr, batch), averaged over folds (NaN-aware); None without grid."""
        grids = [f.grid.val_accuracy for f in self.folds if f.grid is not None]
        if not grids:
            return None
        stack = np.stack(grids)
        with np.errstate(invalid="ignore"):
            counts = np.sum(~np.isnan(stack), axis=0)
            sums = np.nansum(stack, axis=0)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def summary(self) -> dict[str, Any]:
        """Everything a person or a script needs: pooled and per-fold metrics, mean ± std."""
        pooled = classification_metrics(self.confusion, self.classes)
        pooled_frames = classification_metrics(self.frame_confusion, self.classes)
        accs = [f.metrics["accuracy"] for f in self.folds]
        fs = [f.metrics["mean_f1"] for f in self.folds]
        facc = [f.frame_metrics["accuracy"] for f in self.folds]
        grid = None
        if self.grid_used:
            g = self.folds[0].grid
            mean = self.grid_mean()
            grid = {"lrs": g.lrs, "batches": g.batches,
                    "mean_val_accuracy": [[None if math.isnan(v) else float(v) for v in row] for row in mean],
                    "per_fold": [f.grid.to_dict() for f in self.folds]}
        return {
            "classes": self.classes,
            "config": self.config,
            "folds": len(self.folds),
            "tiles": {"pooled": pooled, "mean_accuracy": float(np.mean(accs)), "std_accuracy": float(np.std(accs)),
                      "mean_f1": float(np.mean(fs)), "std_f1": float(np.std(fs)),
                      "confusion_matrix": self.confusion.tolist()},
            "frames": {"pooled": pooled_frames, "mean_accuracy": float(np.mean(facc)),
                       "std_accuracy": float(np.std(facc)),
                       "confusion_matrix": self.frame_confusion.tolist(),
                       "aggregation": "mean of tile probabilities"},
            "per_fold": [{
                "fold": f.fold, "lr": f.lr, "batch": f.batch, "best_epoch": f.best_epoch,
                "epochs_run": f.epochs_run, "val_accuracy": f.val_accuracy,
                "test_accuracy": f.metrics["accuracy"], "test_mean_f1": f.metrics["mean_f1"],
                "test_frame_accuracy": f.frame_metrics["accuracy"],
                "frames": {"train": f.split.train.tolist(), "val": f.split.val.tolist(), "test": f.split.test.tolist()},
                "metrics": f.metrics,
            } for f in self.folds],
            "grid": grid,
            **self.extra,
        }


def cross_validate(data: TileDataset, cfg: TrainConfig, *, folds: int = 5, grid: bool = False,
                   lrs: tuple[float, ...] = PAPER_LRS, batches: tuple[int, ...] = PAPER_BATCHES,
                   split_seed: int = 0, progress: bool = True, splits: list[Split] | None = None) -> CVResult:
    """Run the cross-validation; tiles of a frame are only ever in one of train / val / test.

    ``splits``: explicit frame splits (e.g. grouped by product/session); default the paper's stratified
    k-fold by frame (:func:`data.cv_splits`). With cached features (``train.uses_cached_features``) the
    frozen backbone runs once for the whole data set and every fold trains its tail on the cache; test
    probabilities then come from the tail (equal to the full model up to the cache's float16 rounding).
    """
    from tqdm import tqdm

    from inspector.offline.identity.backbones import get_spec
    from inspector.offline.identity.train import (
        config_dict, effective_train_layers, fit, grid_search, predict_probs, resolve_weights, uses_cached_features,
    )

    cfg.check()
    weights, wdesc = resolve_weights(cfg.backbone, cfg.weights)
    mode = get_spec(cfg.backbone).preprocess_mode
    feats = None
    if uses_cached_features(cfg, weights):
        from inspector.offline.identity import fast
        from inspector.offline.identity.embeddings import compute_features

        feats = compute_features(data, cfg.backbone, weights, cache_dir=cfg.cache_dir, progress=progress)
        tail_mode = effective_train_layers(cfg, weights)
    splits = cv_splits(data.frame_labels, folds, split_seed) if splits is None else splits
    results: list[FoldResult] = []
    first_model = None
    for split in tqdm(splits, desc="cross-validation", unit="fold", disable=not progress):
        tr, va, te = (data.tile_indices(s) for s in (split.train, split.val, split.test))
        desc = f"fold {split.fold + 1}/{len(splits)}"
        if feats is not None:
            args = (feats, data.labels, data.frame_ids, tr, va, cfg, data.num_classes)
            if grid:
                g = fast.grid_cached(*args, mode=tail_mode, lrs=lrs, batches=batches, progress=progress)
                res = g.best
                tail = fast.tail_model(res.model, tail_mode, feats.spec.boundary_layer)
            else:
                g, (res, tail) = None, fast.fit_cached(*args, mode=tail_mode, progress=progress, desc=desc)
            probs = fast.tail_probs(tail, feats, tail_mode, te)
        else:
            if grid:
                g = grid_search(data, tr, va, cfg, lrs=lrs, batches=batches, progress=progress, desc=desc)
                res = g.best
            else:
                g, res = None, fit(data, tr, va, cfg, progress=progress, desc=desc)
            probs = predict_probs(res.model, data.tiles[te], mode)
        y_true, y_pred = data.labels[te], probs.argmax(axis=1)
        fids, fprobs = frame_probabilities(probs, data.frame_ids[te])
        f_true, f_pred = data.frame_labels[fids], fprobs.argmax(axis=1)
        results.append(FoldResult(
            fold=split.fold, split=split, lr=res.lr, batch=res.batch, best_epoch=res.best_epoch,
            epochs_run=res.epochs_run, val_accuracy=res.val_accuracy, history=res.history, grid=g,
            test_tiles=te, probs=probs, y_true=y_true, y_pred=y_pred,
            metrics=classification_metrics(confusion_matrix(y_true, y_pred, data.num_classes), data.classes),
            frame_metrics=classification_metrics(confusion_matrix(f_true, f_pred, data.num_classes), data.classes),
            frame_true=f_true, frame_pred=f_pred,
        ))
        if first_model is None:
            first_model = res.model
        else:
            del res
    return CVResult(classes=list(data.classes), config=config_dict(cfg, weights, wdesc), folds=results,
                    grid_used=grid, model=first_model)
