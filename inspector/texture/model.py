"""Texture defect models in the model repository: fit, save (skops + manifest), verify and load.

A model version folder holds ``pipeline.skops`` (a fitted ``StandardScaler → classifier`` Pipeline
over the *selected* features) and ``manifest.json`` (:mod:`inspector.modelrepo`) with:

* ``task`` ``"tablet_defect"``, ``classes`` ``["good", "defect"]``,
  ``thresholds`` ``{"reject_probability": 0.5}``;
* ``input``: ``levels``, ``roi`` (``"auto"``/``"none"``), ``max_side``, ``features`` (the names the
  pipeline consumes, in order), ``feature_set``, ``classifier``;
* ``training``: the command that rebuilt it, ``data_sha256`` (sha256 of the sorted image hashes),
  ``n_images`` per class, the negative/positive folders;
* ``metrics``: stratified k-fold CV of the same recipe (selection refit inside each fold).

Loading never trusts the file system: the manifest's sha256 of every artifact is checked
(:func:`inspector.modelrepo.load_model_dir`), the artifact bytes are read once, hashed again and
only those verified bytes are given to ``skops.io.loads`` with an explicit list of trusted types
(:data:`inspector.texture.classifiers.TRUSTED_TYPES`). No pickle is ever loaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InspectorError, ModelIntegrityError
from inspector.modelrepo import MANIFEST, Manifest, ModelDir, load_model_dir, write_model_dir
from inspector.texture.classifiers import TRUSTED_TYPES, balanced_fit_params, make_pipeline
from inspector.texture.dataset import FeatureTable
from inspector.texture.experiment import Cell, evaluate_folds, make_splits
from inspector.texture.selection import FEATURE_SETS, select_indices

ARTIFACT = "pipeline.skops"
TASK = "tablet_defect"
CLASSES = ["good", "defect"]
DEFAULT_THRESHOLD = 0.5


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


@dataclass
class DefectModel:
    """A verified, loaded texture defect model; :meth:`p_defect` maps a full feature vector to P(defect)."""

    model_dir: ModelDir
    pipeline: Any
    features: tuple[str, ...]
    threshold: float
    levels: int
    roi: str | None
    max_side: int | None
    _index: np.ndarray | None = None
    _names: tuple[str, ...] | None = None

    @property
    def manifest(self) -> Manifest:
        return self.model_dir.manifest

    def columns(self, names: tuple[str, ...]) -> np.ndarray:
        """Indices of the model's features in an extractor's name list (cached per name list)."""
        if self._names != names:
            pos = {n: i for i, n in enumerate(names)}
            missing = [f for f in self.features if f not in pos]
            if missing:
                raise ModelIntegrityError(f"model expects features the extractor does not produce: {missing[:3]}")
            self._index, self._names = np.array([pos[f] for f in self.features]), names
        return self._index  # type: ignore[return-value]

    def p_defect(self, names: tuple[str, ...], values: np.ndarray) -> float:
        x = np.asarray(values, dtype=np.float64)[self.columns(names)][None, :]
        if not np.isfinite(x).all():
            raise ValueError("non-finite feature values")
        return float(self.pipeline.predict_proba(x)[0, 1])


def load_model(path: str | Path | ModelDir) -> DefectModel:
    """Verify a model version folder (sha256 of every artifact) and load its pipeline with skops."""
    import skops.io as sio

    md = path if isinstance(path, ModelDir) else load_model_dir(path)
    m = md.manifest
    if m.task != TASK:
        raise ModelIntegrityError(f"model {m.name}/{m.version} is for task {m.task!r}, not {TASK!r}")
    blob = md.artifact(ARTIFACT).read_bytes()
    if hashlib.sha256(blob).hexdigest() != m.artifacts[ARTIFACT]["sha256"]:
        raise ModelIntegrityError(f"model {m.name}/{m.version}: {ARTIFACT} changed while loading — refusing it")
    try:
        pipe = sio.loads(blob, trusted=list(TRUSTED_TYPES))
    except Exception as e:  # skops raises UntrustedTypesFoundException, or errors on a foreign file
        raise ModelIntegrityError(f"model {m.name}/{m.version}: {ARTIFACT} cannot be loaded safely: {e}") from None
    feats = tuple(str(f) for f in m.input.get("features", []))
    n_in = getattr(pipe, "n_features_in_", None)
    if not feats or n_in != len(feats) or not hasattr(pipe, "predict_proba"):
        raise ModelIntegrityError(f"model {m.name}/{m.version}: pipeline and manifest features disagree")
    try:
        levels = int(m.input.get("levels", 64))
        roi = m.input.get("roi")
        roi = None if roi in (None, "none") else str(roi)
        max_side = m.input.get("max_side")
        max_side = int(max_side) if max_side else None
        threshold = float(m.thresholds.get("reject_probability", DEFAULT_THRESHOLD))
    except (TypeError, ValueError) as e:
        raise ModelIntegrityError(f"model {m.name}/{m.version}: malformed input block in the manifest: {e}") from None
    return DefectModel(model_dir=md, pipeline=pipe, features=feats, threshold=threshold, levels=levels, roi=roi,
                       max_side=max_side)
