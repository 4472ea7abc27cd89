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
)


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
