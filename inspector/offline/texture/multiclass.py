"""Multi-class defect typing experiments: every class of the data set against every other.

The same selectors (refit on each training part), classifiers and protocols as the binary
experiments (:mod:`inspector.offline.texture.experiment`), plus ``repeats``: the ``split`` protocol
is run on ``repeats`` random stratified 50/50 splits (seeds ``seed … seed + repeats − 1``) and
``cv`` as repeated stratified k-fold, so every figure is a mean ± sd over the repeats. LOO is
deterministic and runs once.

Per (feature set, classifier) a confusion matrix is kept per repeat; from it come per-class
precision / recall / F1, their macro averages and the micro figures (for single-label multi-class
data micro precision = micro recall = micro F1 = accuracy).
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.offline.texture.classifiers import CLASSIFIERS
from inspector.offline.texture.dataset import DatasetError, FeatureTable
from inspector.offline.texture.experiment import PROTOCOLS, evaluate_folds, make_splits
from inspector.offline.texture.selection import parse_feature_set

MULTICLASS_FEATURE_SETS: tuple[str, ...] = ("all", "cs15", "gr15", "rf15")


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 per class of a confusion matrix (rows = true, columns = predicted)."""
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        rec = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    return {"precision": prec, "recall": rec, "f1": f1}


def summary(cm: np.ndarray) -> dict[str, float]:
    """Accuracy, macro precision / recall / F1 and micro F1 (= accuracy) of one confusion matrix."""
    pc = per_class(cm)
    acc = float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan")
    return {"accuracy": acc, "macro_precision": float(pc["precision"].mean()),
            "macro_recall": float(pc["recall"].mean()), "macro_f1": float(pc["f1"].mean()), "micro_f1": acc}


@dataclass
class MultiCell:
    """One (feature set, classifier): a confusion matrix per repeat."""

    feature_set: str
    classifier: str
    confusions: list[np.ndarray] = field(default_factory=list)

    @property
    def total(self) -> np.ndarray:
        return np.sum(self.confusions, axis=0)

    def stat(self, key: str) -> tuple[float, float]:
        """(mean, sd) over repeats of a :func:`summary` key (sd 0 for a single repeat; ddof = 1)."""
        v = np.array([summary(cm)[key] for cm in self.confusions])
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0

    def class_stat(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean, sd) over repeats of a :func:`per_class` metric, one value per class."""
        v = np.array([per_class(cm)[key] for cm in self.confusions])
        return v.mean(0), (v.std(0, ddof=1) if len(v) > 1 else np.zeros(v.shape[1]))

    def to_dict(self, classes: list[str]) -> dict[str, Any]:
        d: dict[str, Any] = {"feature_set": self.feature_set, "classifier": self.classifier,
                             "repeats": len(self.confusions)}
        for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "micro_f1"):
            m, s = self.stat(key)
            d[key] = {"mean": m, "sd": s}
        d["per_repeat_accuracy"] = [summary(cm)["accuracy"] for cm in self.confusions]
        d["per_class"] = {}
        for key in ("precision", "recall", "f1"):
            m, s = self.class_stat(key)
            for c, mv, sv in zip(classes, m, s):
                d["per_class"].setdefault(c, {})[key] = {"mean": float(mv), "sd": float(sv)}
        d["confusion_total"] = self.total.astype(int).tolist()
        return d


@dataclass
class MulticlassResult:
    dataset: str
    protocol: str
    seed: int
    folds: int | None
    repeats: int
    classes: list[str]
    class_counts: dict[str, int]
    feature_sets: list[str]
    classifiers: list[str]
    cells: list[MultiCell]
    #: feature set -> feature name -> number of folds that selected it
    selection_counts: dict[str, dict[str, int]]
    n_folds: int
    families: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    extraction: dict[str, Any] = field(default_factory=dict)
    convergence_warnings: int = 0
    seconds: float = 0.0
    #: published figure shown beside ours, e.g. {"label": ..., "accuracy": 0.9893, "sd": 0.0063, "source": ...}
    anchor: dict[str, Any] | None = None

    def cell(self, feature_set: str, classifier: str) -> MultiCell:
        for c in self.cells:
            if (c.feature_set, c.classifier) == (feature_set, classifier):
                return c
        raise KeyError((feature_set, classifier))

    def best(self) -> MultiCell:
        return max(self.cells, key=lambda c: c.stat("accuracy")[0])

    def to_dict(self) -> dict[str, Any]:
        keys = ("dataset", "protocol", "seed", "folds", "repeats", "classes", "class_counts", "feature_sets",
                "classifiers", "selection_counts", "n_folds", "families", "skipped", "extraction",
                "convergence_warnings", "seconds", "anchor")
        d = {k: getattr(self, k) for k in keys}
        d["task"] = "multiclass"
        d["results"] = [c.to_dict(self.classes) for c in self.cells]
        return d


def repeated_splits(y: np.ndarray, protocol: str, *, seed: int, folds: int, repeats: int) -> list[list]:
    """One list of (train, test) pairs per repeat (LOO: a single repeat)."""
    if protocol == "loo":
        return [make_splits(y, "loo")]
    return [make_splits(y, protocol, seed=seed + r, folds=folds) for r in range(repeats)]


def run_multiclass(
    table: FeatureTable,
    *,
    classes: list[str] | None = None,
    protocol: str = "split",
    feature_sets: tuple[str, ...] | list[str] = MULTICLASS_FEATURE_SETS,
    classifiers: tuple[str, ...] | list[str] = CLASSIFIERS,
    seed: int = 0,
    folds: int = 10,
    repeats: int = 1,
    dataset: str = "",
    progress: bool = True,
    anchor: dict[str, Any] | None = None,
) -> MulticlassResult:
    """Run the protocol ``repeats`` times on every feature set × classifier (tqdm counts folds)."""
    from sklearn.exceptions import ConvergenceWarning
    from tqdm import tqdm

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
    for fs in feature_sets:
        if parse_feature_set(fs)[0] == "pair":
            raise ValueError("the best-pair search is binary (naive-Bayes log ratio of two classes): "
                             "use all, cs<k>, gr<k> or rf<k> for several classes")
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    t0 = time.perf_counter()
    labels = np.array(table.labels)
    classes = list(classes) if classes else list(dict.fromkeys(table.labels))
    rows = np.isin(labels, classes)
    X, lab = table.X[rows], labels[rows]
    y = np.array([classes.index(c) for c in lab])
    counts = np.bincount(y, minlength=len(classes))
    need = max(4 if protocol == "split" else 3, folds if protocol == "cv" else 0)
    if len(classes) < 2 or counts.min() < need:
        raise DatasetError(f"multi-class {protocol} needs at least 2 classes of {need} images each; got "
                           + ", ".join(f"{c} {n}" for c, n in zip(classes, counts)))
    plans = repeated_splits(y, protocol, seed=seed, folds=folds, repeats=repeats)
    cells = {(fs, c): MultiCell(fs, c) for fs in feature_sets for c in classifiers}
    sel: dict[str, Counter] = {fs: Counter() for fs in feature_sets if fs != "all"}
    k = len(classes)
    with tqdm(total=sum(len(p) for p in plans), desc=f"{protocol} folds", unit="fold", disable=not progress) as bar, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for splits in plans:
            cms = {key: np.zeros((k, k), dtype=np.int64) for key in cells}
            for preds, chosen in evaluate_folds(X, y, splits, feature_sets=feature_sets, classifiers=classifiers,
                                                seed=seed):
                for key, (yt, yp) in preds.items():
                    np.add.at(cms[key], (yt, yp), 1)
                for fs, idx in chosen.items():
                    if fs in sel:
                        sel[fs].update(table.names[i] for i in idx)
                bar.update(1)
            for key, cm in cms.items():
                cells[key].confusions.append(cm)
        n_warn = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return MulticlassResult(
        dataset=dataset, protocol=protocol, seed=seed, folds=folds if protocol == "cv" else None,
        repeats=len(plans), classes=classes, class_counts={c: int(n) for c, n in zip(classes, counts)},
        feature_sets=list(feature_sets), classifiers=list(classifiers), cells=list(cells.values()),
        selection_counts={fs: dict(c.most_common()) for fs, c in sel.items()}, n_folds=sum(len(p) for p in plans),
        families=list(table.params.get("families", ["mazda"])), skipped=list(table.skipped),
        extraction=dict(table.params), convergence_warnings=n_warn, seconds=time.perf_counter() - t0, anchor=anchor,
    )
