"""Texture defect models in the model repository: verify and load (fit and save: inspector.offline.texture.train).

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
(:data:`TRUSTED_TYPES`). No pickle is ever loaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InspectorError, ModelIntegrityError
from inspector.modelrepo import Manifest, ModelDir, load_model_dir

ARTIFACT = "pipeline.skops"
TASK = "tablet_defect"
CLASSES = ["good", "defect"]
DEFAULT_THRESHOLD = 0.5
CALIBRATION = "calibration.npy"
#: binary: good vs defect; multiclass: defect typing; oneclass: novelty against good images only;
#: patches: one-class novelty of the worst surface patch (inspector.texture.patch_model)
MODES: tuple[str, ...] = ("binary", "multiclass", "oneclass", "patches")

#: every type a saved texture model may contain (the skops trust list of load_model)
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.svm._classes.SVC",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.naive_bayes.GaussianNB",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.utils._bunch.Bunch",
    # one-class models (inspector.offline.texture.oneclass)
    "sklearn.decomposition._pca.PCA",
    "sklearn.covariance._robust_covariance.MinCovDet",
    "sklearn.covariance._empirical_covariance.EmpiricalCovariance",
    "sklearn.svm._classes.OneClassSVM",
    "sklearn.ensemble._iforest.IsolationForest",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
)


def novelty_scores(pipeline: Any, X: np.ndarray) -> np.ndarray:
    """Novelty of rows of features under a one-class ``… → detector`` Pipeline (larger = less like the
    good images): Mahalanobis distance for the covariance detectors, −score_samples otherwise."""
    z = pipeline[:-1].transform(np.asarray(X, dtype=np.float64))
    det = pipeline[-1]
    if hasattr(det, "mahalanobis"):
        return np.sqrt(det.mahalanobis(z))
    return -det.score_samples(z)


@dataclass
class Prediction:
    """What one frame's features give: the verdict, the published scores, the detail block."""

    reject: bool
    scores: dict[str, float]
    detail: dict[str, Any]


@dataclass
class DefectModel:
    """A verified, loaded texture defect model (mode ``binary``, ``multiclass`` or ``oneclass``);
    :meth:`predict` maps a full feature vector to a :class:`Prediction`."""

    model_dir: ModelDir
    pipeline: Any
    features: tuple[str, ...]
    threshold: float
    levels: int
    roi: str | None
    max_side: int | None
    mode: str = "binary"
    families: tuple[str, ...] = ("mazda",)
    classes: tuple[str, ...] = tuple(CLASSES)
    good_class: str | None = "good"
    #: oneclass: sorted novelty scores of held-out good images, and the novelty threshold
    calibration: np.ndarray | None = None
    novelty_threshold: float | None = None
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

    def _row(self, names: tuple[str, ...], values: np.ndarray) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)[self.columns(names)][None, :]
        if not np.isfinite(x).all():
            raise ValueError("non-finite feature values")
        return x

    def p_defect(self, names: tuple[str, ...], values: np.ndarray) -> float:
        """Binary: P(defect). Multi-class: 1 − P(good class) (1.0 without a good class). One-class: the
        calibrated novelty (share of held-out good images that score lower)."""
        return float(self.predict(names, values).scores["p_defect"])

    def novelty(self, x: np.ndarray) -> np.ndarray:
        """One-class novelty score of rows of selected features (larger = less like the good images)."""
        return novelty_scores(self.pipeline, x)

    def calibrated(self, s: np.ndarray) -> np.ndarray:
        """Empirical CDF of the held-out good scores at ``s``: P(a good image scores below s)."""
        cal = self.calibration
        return np.searchsorted(cal, s, side="left") / (len(cal) + 1.0)  # type: ignore[arg-type]

    def predict(self, names: tuple[str, ...], values: np.ndarray, threshold: float | None = None) -> Prediction:
        """Verdict and scores of one feature vector; ``threshold`` overrides the manifest's."""
        x = self._row(names, values)
        if self.mode == "oneclass":
            s = float(self.novelty(x)[0])
            p = float(self.calibrated(np.array([s]))[0])
            reject = p >= threshold if threshold is not None else s >= float(self.novelty_threshold)  # type: ignore[arg-type]
            return Prediction(reject, {"p_defect": round(p, 6), "novelty": round(s, 6)},
                              {"threshold": threshold if threshold is not None else self.threshold,
                               "novelty_threshold": self.novelty_threshold})
        thr = self.threshold if threshold is None else threshold
        proba = self.pipeline.predict_proba(x)[0]
        if self.mode == "binary":
            p = float(proba[1])
            return Prediction(p >= thr, {"p_defect": round(p, 6)}, {"threshold": thr})
        probs = {c: float(v) for c, v in zip(self.classes, proba)}
        defects = [c for c in self.classes if c != self.good_class]
        p = 1.0 - probs[self.good_class] if self.good_class else 1.0
        top = max(defects, key=probs.__getitem__)
        predicted = max(probs, key=probs.__getitem__)
        scores = {"p_defect": round(p, 6), **{f"p_{c}": round(v, 6) for c, v in probs.items()}}
        detail = {"threshold": thr, "defect_type": top, "defect_probability": round(probs[top], 6),
                  "predicted_class": predicted}
        return Prediction(predicted != self.good_class or p >= thr, scores, detail)


def _verified(md: ModelDir, name: str) -> bytes:
    m = md.manifest
    if name not in m.artifacts:
        raise ModelIntegrityError(f"model {m.name}/{m.version}: manifest lists no {name}")
    blob = md.artifact(name).read_bytes()
    if hashlib.sha256(blob).hexdigest() != m.artifacts[name]["sha256"]:
        raise ModelIntegrityError(f"model {m.name}/{m.version}: {name} changed while loading — refusing it")
    return blob


def load_model(path: str | Path | ModelDir) -> DefectModel:  # or a PatchModel for mode "patches"
    """Verify a model version folder (sha256 of every artifact) and load its pipeline with skops."""
    import io

    import skops.io as sio

    md = path if isinstance(path, ModelDir) else load_model_dir(path)
    m = md.manifest
    if m.task != TASK:
        raise ModelIntegrityError(f"model {m.name}/{m.version} is for task {m.task!r}, not {TASK!r}")
    mode = str(m.input.get("mode", "binary"))
    if mode not in MODES:
        raise ModelIntegrityError(f"model {m.name}/{m.version}: unknown mode {mode!r} (known: {', '.join(MODES)})")
    blob = _verified(md, ARTIFACT)
    try:
        pipe = sio.loads(blob, trusted=list(TRUSTED_TYPES))
    except Exception as e:  # skops raises UntrustedTypesFoundException, or errors on a foreign file
        raise ModelIntegrityError(f"model {m.name}/{m.version}: {ARTIFACT} cannot be loaded safely: {e}") from None
    if mode == "patches":
        from inspector.texture.patch_model import load_patch_model

        return load_patch_model(md, pipe, _verified)  # type: ignore[return-value]
    feats = tuple(str(f) for f in m.input.get("features", []))
    n_in = getattr(pipe, "n_features_in_", None)
    able = hasattr(pipe, "predict_proba") if mode != "oneclass" else hasattr(pipe, "steps")
    if not feats or n_in != len(feats) or not able:
        raise ModelIntegrityError(f"model {m.name}/{m.version}: pipeline and manifest features disagree")
    calibration = None
    try:
        levels = int(m.input.get("levels", 64))
        roi = m.input.get("roi")
        roi = None if roi in (None, "none") else str(roi)
        max_side = m.input.get("max_side")
        max_side = int(max_side) if max_side else None
        threshold = float(m.thresholds.get("reject_probability", DEFAULT_THRESHOLD))
        families = tuple(str(f) for f in m.input.get("families", ["mazda"]))
        classes = tuple(str(c) for c in m.classes) or tuple(CLASSES)
        good = m.input.get("good_class", "good" if mode == "binary" else None)
        novelty_thr = m.thresholds.get("novelty")
        if mode == "oneclass":
            calibration = np.sort(np.load(io.BytesIO(_verified(md, CALIBRATION)), allow_pickle=False).astype(float))
            novelty_thr = float(novelty_thr)
            if calibration.ndim != 1 or len(calibration) < 2:
                raise ValueError("calibration scores must be a 1-D array of at least 2 values")
    except (TypeError, ValueError) as e:
        raise ModelIntegrityError(f"model {m.name}/{m.version}: malformed input block in the manifest: {e}") from None
    if mode == "multiclass" and len(getattr(pipe, "classes_", [])) != len(classes):
        raise ModelIntegrityError(f"model {m.name}/{m.version}: pipeline has {len(pipe.classes_)} classes, "
                                  f"the manifest {len(classes)}")
    return DefectModel(model_dir=md, pipeline=pipe, features=feats, threshold=threshold, levels=levels, roi=roi,
                       max_side=max_side, mode=mode, families=families, classes=classes, good_class=good,
                       calibration=calibration, novelty_threshold=novelty_thr)
