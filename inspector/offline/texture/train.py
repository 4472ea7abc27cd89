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
from inspector.offline.texture.selection import parse_feature_set, select_indices
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
    mode: str = "binary"
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    good_class: str | None = "good"
    families: list[str] = field(default_factory=lambda: ["mazda"])
    #: one-class: extra artifacts (file name -> bytes) and thresholds
    extra_artifacts: dict[str, bytes] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)


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
    try:
        parse_feature_set(feature_set)
    except ValueError as e:
        raise InspectorError(str(e)) from None
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
        families=list(table.params.get("families", ["mazda"])),
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
    for fname, blob in model.extra_artifacts.items():
        (out / fname).write_bytes(blob)
    manifest = Manifest(
        name=name,
        version=version,
        task=TASK,
        artifacts={ARTIFACT: {}, **{f: {} for f in model.extra_artifacts}},
        classes=list(model.classes),
        thresholds={"reject_probability": float(threshold), **model.thresholds},
        input={**input_params, "features": list(model.features), "feature_set": model.feature_set,
               "classifier": model.classifier, "mode": model.mode, "families": list(model.families),
               "good_class": model.good_class},
        preprocessing={"grey": "ITU-R BT.601", "resize": "INTER_AREA to max_side (if set)",
                       "texture": "inspector.texture.features.extract"},
        metrics=model.metrics,
        training={**training, "n_images": model.class_counts},
    )
    return write_model_dir(out, manifest)


def fit_multiclass(
    table: FeatureTable,
    *,
    classes: list[str],
    good_class: str | None,
    feature_set: str = "all",
    classifier: str = "svm",
    seed: int = 0,
    cv_folds: int = 5,
) -> TrainedModel:
    """Defect typing: select features and fit ``StandardScaler → classifier`` (probabilities: Platt
    sigmoid per class for the SVMs) on every class of ``classes``; ``good_class`` (None when the data
    has none) is the class that passes inline. Measured by stratified k-fold CV of the same recipe
    (selection refit in each fold); a tuned SVM's grid is searched once on the whole set for the model
    and inside each CV training part for the figures."""
    from inspector.offline.texture.multiclass import run_multiclass, summary

    try:
        parse_feature_set(feature_set)
    except ValueError as e:
        raise InspectorError(str(e)) from None
    labels = np.array(table.labels)
    rows = np.isin(labels, classes)
    y = np.array([classes.index(c) for c in labels[rows]])
    X = table.X[rows]
    counts = np.bincount(y, minlength=len(classes))
    if len(classes) < 2 or counts.min() < 3:
        raise InspectorError("multi-class training needs at least 2 classes of 3 images each; got "
                             + ", ".join(f"{c} {n}" for c, n in zip(classes, counts)))
    k = int(min(cv_folds, counts.min()))
    res = run_multiclass(table, classes=classes, protocol="cv", feature_sets=[feature_set], classifiers=[classifier],
                         seed=seed, folds=k, repeats=1, progress=False)
    cell = res.cells[0]
    s = summary(cell.total)
    idx = select_indices(feature_set, X, y)
    params = None
    if classifier in ("svmt", "rbf"):
        search = make_pipeline(classifier, seed=seed).fit(X[:, idx], y)
        params = dict(search.named_steps["clf"].best_params_)
    pipe = make_pipeline(classifier, seed=seed, probability=True, calibration_folds=k, params=params)
    pipe.fit(X[:, idx], y)
    metrics = {"protocol": f"stratified {k}-fold CV, selection inside folds", "accuracy": s["accuracy"],
               "macro_f1": s["macro_f1"], "n": int(cell.total.sum()), "confusion": cell.total.astype(int).tolist(),
               **({"tuned": params} if params else {})}
    if good_class is not None:
        g = classes.index(good_class)
        cm = cell.total
        metrics["sensitivity"] = float((cm.sum() - cm[g].sum() - (cm[:, g].sum() - cm[g, g])) / max(1, cm.sum() - cm[g].sum()))
        metrics["specificity"] = float(cm[g, g] / max(1, cm[g].sum()))
    return TrainedModel(
        pipeline=pipe, features=[table.names[i] for i in idx], feature_set=feature_set, classifier=classifier,
        metrics=metrics, class_counts={c: int(n) for c, n in zip(classes, counts)}, mode="multiclass",
        classes=list(classes), good_class=good_class, families=list(table.params.get("families", ["mazda"])),
    )
