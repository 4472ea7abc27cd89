"""Fit a texture defect model and save it into the model repository (skops + manifest).

The manifest layout and the loader are in :mod:`inspector.texture.model` (serving side).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InspectorError
from inspector.modelrepo import MANIFEST, Manifest, ModelDir, write_model_dir
from inspector.offline.texture.classifiers import balanced_fit_params, make_pipeline
from inspector.offline.texture.dataset import FeatureTable
from inspector.offline.texture.experiment import Cell, evaluate_folds, make_splits
from inspector.offline.texture.selection import FEATURE_SETS, select_indices
from inspector.texture.model import ARTIFACT, CLASSES, DEFAULT_THRESHOLD, TASK


@dataclass
class TrainedModel:
    """A fitted pipeline with what the manifest needs to describe it."""

    pipeline: Any
    features: list[str]
    feature_set: str
    classifier: str
    metrics: dict[str, Any] = field(default_factory=dict)
    class_counts: dict[str, int] = field(default_factory=dict)


def binary_labels(table: FeatureTable, negative: str, positives: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(row mask, y) for ``negative`` (0) against all ``positives`` (1); other classes are left out."""
    labels = np.array(table.labels)
    rows = np.isin(labels, [negative, *positives])
    return rows, np.isin(labels[rows], positives).astype(int)


def fit_model(
    table: FeatureTable,
    *,
    negative: str,
    positives: list[str],
    feature_set: str = "cs15",
    classifier: str = "svm",
    seed: int = 0,
    cv_folds: int = 5,
    balanced: bool = True,
) -> TrainedModel:
    """Select features on the whole training set, fit ``StandardScaler → classifier`` with
    probabilities, and measure the recipe by stratified k-fold CV (selection refit per fold).

    ``balanced`` (default) weights good and defect samples equally (n / 2n_c), so that P(defect) is
    calibrated for equal priors and the 0.5 threshold is the balanced operating point, whatever the
    class ratio of the training folders (the synthetic set has 5 defect classes for 1 good)."""
    if feature_set not in FEATURE_SETS:
        raise InspectorError(f"unknown feature set {feature_set!r} (known: {', '.join(FEATURE_SETS)})")
    rows, y = binary_labels(table, negative, positives)
    X = table.X[rows]
    counts = np.bincount(y, minlength=2)
    if counts.min() < 3:
        raise InspectorError(f"training needs at least 3 images of each side, got {counts[0]} good / {counts[1]} defect")
    k = int(min(cv_folds, counts.min()))
    cell = Cell("cv", feature_set, classifier)
    for preds, _ in evaluate_folds(X, y, make_splits(y, "cv", seed=seed, folds=k), feature_sets=[feature_set],
                                   classifiers=[classifier], seed=seed, balanced=balanced):
        cell.add(*preds[(feature_set, classifier)])
    idx = select_indices(feature_set, X, y)
    kw = balanced_fit_params(classifier, y) if balanced else {}
    pipe = make_pipeline(classifier, seed=seed, probability=True, calibration_folds=k).fit(X[:, idx], y, **kw)
    metrics = {"protocol": f"stratified {k}-fold CV, selection inside folds", "balanced": balanced,
               "accuracy": cell.accuracy,
               "sensitivity": cell.sensitivity, "specificity": cell.specificity, "n": cell.n,
               "confusion": {"tp": cell.tp, "fn": cell.fn, "tn": cell.tn, "fp": cell.fp}}
    labels = np.array(table.labels)[rows]
    return TrainedModel(
        pipeline=pipe,
        features=[table.names[i] for i in idx],
        feature_set=feature_set,
        classifier=classifier,
        metrics=metrics,
        class_counts={c: int((labels == c).sum()) for c in [negative, *positives]},
    )


def save_model(
    out_dir: str | Path,
    model: TrainedModel,
    *,
    name: str,
    version: str,
    input_params: dict[str, Any],
    training: dict[str, Any],
    threshold: float = DEFAULT_THRESHOLD,
    force: bool = False,
) -> ModelDir:
    """Write ``pipeline.skops`` and the manifest into ``out_dir``; returns the verified model dir."""
    import skops.io as sio

    out = Path(out_dir)
    if (out / MANIFEST).exists() and not force:
        raise InspectorError(f"{out} already holds a model (manifest.json); pass --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    sio.dump(model.pipeline, out / ARTIFACT)
    manifest = Manifest(
        name=name,
        version=version,
        task=TASK,
        artifacts={ARTIFACT: {}},
        classes=list(CLASSES),
        thresholds={"reject_probability": float(threshold)},
        input={**input_params, "features": list(model.features), "feature_set": model.feature_set,
               "classifier": model.classifier},
        preprocessing={"grey": "ITU-R BT.601", "resize": "INTER_AREA to max_side (if set)",
                       "texture": "inspector.texture.features.extract"},
        metrics=model.metrics,
        training={**training, "n_images": model.class_counts},
    )
    return write_model_dir(out, manifest)
