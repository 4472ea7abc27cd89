"""One-class (novelty) texture models: learn the good images only, score how unlike them a new image is.

Without defect labels the supervised selectors (chi², gain ratio, ReliefF) cannot run, so the
features are *selected without labels*: standardised, then reduced by a PCA fit on the good
training images (``n_components`` directions, :data:`DEFAULT_COMPONENTS`). On that space four
detectors are compared (scikit-learn, as a field expert would use them):

=========  ===========================================================  ==========================
name       estimator                                                    novelty score
=========  ===========================================================  ==========================
mcd        ``MinCovDet`` — robust (minimum covariance determinant)      Mahalanobis distance
gaussian   ``EmpiricalCovariance`` — plain Gaussian                     Mahalanobis distance
ocsvm      ``OneClassSVM(kernel="rbf", nu=0.05, gamma="scale")``        −score_samples
iforest    ``IsolationForest(n_estimators=200)``                        −score_samples
=========  ===========================================================  ==========================

**Calibration**: the good images are split three ways (seeded): *train* (fit), *calibration*
(held out: their sorted scores are stored with the model, the reject threshold is their
``1 − FRR`` quantile, and a new score is reported as the share of them that score lower) and, for
evaluation only, *test*. Every defect image is a test image of an unknown type.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.errors import InspectorError
from inspector.offline.texture.dataset import FeatureTable
from inspector.offline.texture.train import TrainedModel
from inspector.texture.model import CALIBRATION, novelty_scores

DETECTORS: tuple[str, ...] = ("mcd", "gaussian", "ocsvm", "iforest")
DETECTOR_LABELS = {"mcd": "robust Mahalanobis (MCD)", "gaussian": "Gaussian Mahalanobis",
                   "ocsvm": "one-class SVM", "iforest": "isolation forest"}
DEFAULT_COMPONENTS = 20
#: shares of the good images used to fit / calibrate (the rest is the evaluation's test part)
FIT_SHARE, CAL_SHARE = 0.5, 0.25


def make_detector(name: str, *, n_components: int = DEFAULT_COMPONENTS, seed: int = 0) -> Any:
    """``StandardScaler → PCA → detector`` (unfitted)."""
    from sklearn.covariance import EmpiricalCovariance, MinCovDet
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    dets = {
        "mcd": lambda: MinCovDet(random_state=seed),
        "gaussian": lambda: EmpiricalCovariance(),
        "ocsvm": lambda: OneClassSVM(kernel="rbf", nu=0.05, gamma="scale"),
        "iforest": lambda: IsolationForest(n_estimators=200, random_state=seed),
    }
    if name not in dets:
        raise ValueError(f"unknown detector {name!r} (known: {', '.join(DETECTORS)})")
    return Pipeline([("scale", StandardScaler()), ("pca", PCA(n_components=n_components, random_state=seed)),
                     ("det", dets[name]())])


def fit_detector(name: str, X: np.ndarray, *, n_components: int = DEFAULT_COMPONENTS, seed: int = 0) -> Any:
    k = int(max(1, min(n_components, X.shape[1], X.shape[0] // 3)))
    return make_detector(name, n_components=k, seed=seed).fit(X)


def threshold_at(cal_scores: np.ndarray, frr: float) -> float:
    """Novelty threshold rejecting about ``frr`` of the held-out good images (their 1 − frr quantile)."""
    return float(np.quantile(np.asarray(cal_scores, float), 1.0 - frr, method="higher"))


def split_good(n: int, seed: int, *, with_test: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded (fit, calibration, test) index arrays of n good images; without test: 2/3 fit, 1/3 calibration."""
    perm = np.random.default_rng(seed).permutation(n)
    if with_test:
        a, b = int(round(FIT_SHARE * n)), int(round((FIT_SHARE + CAL_SHARE) * n))
    else:
        a, b = int(round(2 * n / 3)), n
    return np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:])


def auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos]))


@dataclass
class OneClassResult:
    dataset: str
    good: str
    defects: list[str]
    detectors: list[str]
    frr: float
    repeats: int
    seed: int
    class_counts: dict[str, int]
    families: list[str]
    n_components: int
    #: detector -> defect type (and "All") -> list over repeats
    auroc: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    detection: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: detector -> list over repeats of the false-reject rate on the good test images
    test_frr: dict[str, list[float]] = field(default_factory=dict)
    #: detector -> (good test scores, {defect: scores}, threshold) of the first repeat, for the ROC plot
    roc_data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("dataset", "good", "defects", "detectors", "frr", "repeats", "seed",
                                            "class_counts", "families", "n_components", "auroc", "detection",
                                            "test_frr", "seconds")}
        d["task"] = "oneclass"
        return d


def evaluate_oneclass(
    table: FeatureTable,
    *,
    good: str,
    defects: list[str],
    detectors: list[str] | tuple[str, ...] = DETECTORS,
    frr: float = 0.05,
    repeats: int = 1,
    seed: int = 0,
    n_components: int = DEFAULT_COMPONENTS,
    dataset: str = "",
    progress: bool = True,
) -> OneClassResult:
    """Fit each detector on half the good images, set its threshold on a quarter, and score the last
    quarter plus every defect image; AUROC per defect type and detection at the operating point."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    labels = np.array(table.labels)
    G = table.X[labels == good]
    if len(G) < 12:
        raise InspectorError(f"one-class evaluation needs at least 12 good images, got {len(G)}")
    D = {d: table.X[labels == d] for d in defects}
    res = OneClassResult(dataset=dataset, good=good, defects=list(defects), detectors=list(detectors), frr=frr,
                         repeats=repeats, seed=seed, class_counts={c: int((labels == c).sum()) for c in [good, *defects]},
                         families=list(table.params.get("families", ["mazda"])), n_components=n_components)
    with tqdm(total=repeats * len(detectors), desc="one-class fits", unit="fit", disable=not progress) as bar:
        for r in range(repeats):
            fit, cal, test = split_good(len(G), seed + r, with_test=True)
            for det in detectors:
                pipe = fit_detector(det, G[fit], n_components=n_components, seed=seed + r)
                thr = threshold_at(novelty_scores(pipe, G[cal]), frr)
                s_good = novelty_scores(pipe, G[test])
                s_def = {d: novelty_scores(pipe, X) for d, X in D.items()}
                allpos = np.concatenate(list(s_def.values()))
                for d, s in [*s_def.items(), ("All", allpos)]:
                    res.auroc.setdefault(det, {}).setdefault(d, []).append(auroc(s_good, s))
                    res.detection.setdefault(det, {}).setdefault(d, []).append(float((s >= thr).mean()))
                res.test_frr.setdefault(det, []).append(float((s_good >= thr).mean()))
                if r == 0:
                    res.roc_data[det] = (s_good, s_def, thr)
                bar.update(1)
    res.seconds = time.perf_counter() - t0
    return res


def fit_oneclass(
    table: FeatureTable,
    *,
    good: str,
    detector: str = "mcd",
    frr: float = 0.05,
    seed: int = 0,
    n_components: int = DEFAULT_COMPONENTS,
) -> TrainedModel:
    """The shipped one-class model: fit on 2/3 of the good images, calibrate on the other third."""
    labels = np.array(table.labels)
    G = table.X[labels == good]
    if len(G) < 9:
        raise InspectorError(f"one-class training needs at least 9 good images, got {len(G)}")
    if not 0.0 < frr < 0.5:
        raise InspectorError("--frr must be between 0 and 0.5")
    fit, cal, _ = split_good(len(G), seed, with_test=False)
    pipe = fit_detector(detector, G[fit], n_components=n_components, seed=seed)
    cal_scores = np.sort(novelty_scores(pipe, G[cal]))
    thr = threshold_at(cal_scores, frr)
    buf = io.BytesIO()
    np.save(buf, cal_scores.astype(np.float64), allow_pickle=False)
    others = sorted(set(labels) - {good})
    metrics: dict[str, Any] = {"protocol": f"fit on {len(fit)} good images, threshold at the {1 - frr:.3f} quantile "
                               f"of {len(cal)} held-out good images", "calibration_frr": float((cal_scores >= thr).mean())}
    if others:  # defect folders present: their detection at this operating point (not used for fitting)
        s = novelty_scores(pipe, table.X[labels != good])
        metrics["detection_rate_on_defect_folders"] = float((s >= thr).mean())
    return TrainedModel(
        pipeline=pipe, features=list(table.names), feature_set="all", classifier=detector, metrics=metrics,
        class_counts={good: len(G)}, mode="oneclass", classes=[good, "novel"], good_class=good,
        families=list(table.params.get("families", ["mazda"])), extra_artifacts={CALIBRATION: buf.getvalue()},
        thresholds={"novelty": thr, "false_reject_rate": float(frr)},
    )
