"""The paper's classifiers as scikit-learn Pipelines (scaling is fit inside the pipeline, per fold).

=====  ============================================================  =========================================
name   estimator                                                     paper (seed-001, 2.2.4)
=====  ============================================================  =========================================
svm    ``SVC(kernel="linear", C=1)``                                 MATLAB SVM, linear kernel, SMO
knn    ``KNeighborsClassifier(n_neighbors=2, metric="cosine")``      KNN, k = 2, cosine distance
nb     ``GaussianNB()``                                              naive Bayes (Gaussian class-conditionals)
ann    ``MLPClassifier((16,), solver="lbfgs", alpha=1e-2)``          "ANN" reported in Tables 3-8
=====  ============================================================  =========================================

Every pipeline is ``StandardScaler → estimator``. With k = 2 neighbours a tie (one vote each) goes
to the smaller class label, as in MATLAB's ``fitcknn`` ('smallest' tie-break); in our binary
encoding that is the negative class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sklearn.calibration import CalibratedClassifierCV
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from inspector.texture.model import TRUSTED_TYPES  # noqa: F401  (re-exported: the trust list lives with the loader)

CLASSIFIERS: tuple[str, ...] = ("svm", "knn", "nb", "ann")
#: not in the paper: SVMs whose hyper-parameters are tuned by an inner stratified 5-fold grid search
#: on the training part only (the test part never reaches the search)
TUNED: tuple[str, ...] = ("svmt", "rbf")
CLASSIFIER_LABELS: dict[str, str] = {"svm": "SVM", "knn": "KNN", "nb": "NB", "ann": "ANN",
                                     "svmt": "SVM-lin tuned", "rbf": "SVM-RBF tuned"}
#: inner grids of the tuned SVMs (features are standardised first, so gamma is on the scale of 1/p)
TUNE_GRIDS: dict[str, dict[str, list]] = {
    "svmt": {"C": [0.001, 0.01, 0.1, 1.0, 10.0]},
    "rbf": {"C": [1.0, 10.0, 100.0, 1000.0], "gamma": [3e-4, 1e-3, 3e-3, 1e-2]},
}


def make_classifier(name: str, *, seed: int = 0, probability: bool = False, calibration_folds: int = 5,
                    params: dict[str, Any] | None = None) -> Any:
    """A fresh, unfitted estimator.

    ``svmt``/``rbf`` without ``params`` are a ``GridSearchCV`` over :data:`TUNE_GRIDS` (inner stratified
    5-fold on the data they are fit on); with ``params`` (the grid's winner) a plain SVC.

    ``probability=True`` wraps the SVM in a sigmoid (Platt) ``CalibratedClassifierCV`` so that it has
    ``predict_proba`` (the other three have it natively); ``calibration_folds`` must not exceed the
    smallest class of the training set."""
    if name == "svm":
        svm = SVC(kernel="linear", C=1.0, random_state=seed, max_iter=1_000_000)
        if probability:
            return CalibratedClassifierCV(svm, method="sigmoid", ensemble=False, cv=calibration_folds)
        return svm
    if name in TUNED:
        kernel = "linear" if name == "svmt" else "rbf"
        if params is None:
            from sklearn.model_selection import GridSearchCV, StratifiedKFold

            return GridSearchCV(SVC(kernel=kernel, random_state=seed, max_iter=1_000_000), TUNE_GRIDS[name],
                                cv=StratifiedKFold(5, shuffle=True, random_state=seed), n_jobs=1)
        svm = SVC(kernel=kernel, random_state=seed, max_iter=1_000_000, **params)
        if probability:
            return CalibratedClassifierCV(svm, method="sigmoid", ensemble=False, cv=calibration_folds)
        return svm
    if name == "knn":
        return KNeighborsClassifier(n_neighbors=2, metric="cosine", algorithm="brute")
    if name == "nb":
        return GaussianNB()
    if name == "ann":
        return MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", alpha=1e-2, max_iter=2000, random_state=seed)
    raise ValueError(f"unknown classifier {name!r} (known: {', '.join(CLASSIFIERS)})")


def make_pipeline(name: str, *, seed: int = 0, probability: bool = False, calibration_folds: int = 5,
                  params: dict[str, Any] | None = None) -> Pipeline:
    """``StandardScaler → classifier``: the scaler only ever sees the data the pipeline is fit on (for the
    tuned SVMs: the whole training part, inner validation folds included — never the test part)."""
    clf = make_classifier(name, seed=seed, probability=probability, calibration_folds=calibration_folds,
                          params=params)
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def balanced_fit_params(name: str, y: np.ndarray) -> dict[str, np.ndarray]:
    """``Pipeline.fit`` keyword arguments that weight both classes equally (``n / (2 n_c)`` per sample).

    KNN takes no sample weights: it gets none (its k = 2 vote is unweighted)."""
    if name == "knn":
        return {}
    y = np.asarray(y)
    classes, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    w = len(y) / (len(classes) * counts[inv])
    return {"clf__sample_weight": w}


def parse_classifiers(spec: str | None) -> tuple[str, ...]:
    """``"svm,knn"`` → ("svm", "knn"); None or "all" → every classifier. Raises ValueError on unknown names."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return CLASSIFIERS
    names = tuple(dict.fromkeys(s.strip().lower() for s in spec.split(",") if s.strip()))
    bad = [n for n in names if n not in CLASSIFIERS + TUNED]
    if bad or not names:
        shown = ", ".join(bad) if bad else repr(spec)
        raise ValueError(f"unknown classifier(s) {shown} (known: {', '.join(CLASSIFIERS + TUNED)})")
    return names
