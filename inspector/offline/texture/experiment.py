"""The paper's offline experiments (seed-001, section 3) on a feature table.

For every binary *subset* (each defect class against the negative class, then all defect classes
together as "All"), every *feature set* (all 281, CS-15, GR-15, RF-15, best pair) and every
*classifier* (SVM, KNN, NB, ANN) we report accuracy, sensitivity and specificity under one protocol:

* ``loo``   — leave-one-out cross-validation (the paper's Experiment I);
* ``split`` — one seeded, stratified 50/50 train/test split (the paper's Experiment II);
* ``cv``    — seeded stratified k-fold (not in the paper; LOO costs n fits per cell, which on a
  thousand images with ReliefF in every fold is hours on a CPU).

No information from a test fold leaks: in every fold the selector is fit on the training part only
(once per feature set, shared by the classifiers), and each classifier is a fresh
``StandardScaler → estimator`` Pipeline fit on the training part. In particular the best pair is
searched *inside* each training fold — the paper searched it once on the whole data set, which is
optimistic; the features it would pick are reported separately as descriptive only.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import numpy as np

from inspector.offline.texture.classifiers import CLASSIFIERS, balanced_fit_params, make_pipeline
from inspector.offline.texture.dataset import DatasetError, FeatureTable
from inspector.offline.texture.selection import FEATURE_SETS, parse_feature_set, select_indices

PROTOCOLS: tuple[str, ...] = ("loo", "split", "cv")
#: smallest class size each protocol can run with (selection needs two samples per class per fold)
_MIN_PER_CLASS = {"loo": 3, "split": 4, "cv": 3}


@dataclass
class Subset:
    """One binary problem: rows of the negative class (y = 0) and of some positive classes (y = 1)."""

    name: str
    X: np.ndarray
    y: np.ndarray
    classes: list[str]  # positive classes included


@dataclass
class Cell:
    """Confusion counts of one (subset, feature set, classifier); positives are defects."""

    subset: str
    feature_set: str
    classifier: str
    tp: int = 0
    fn: int = 0
    tn: int = 0
    fp: int = 0

    @property
    def n(self) -> int:
        return self.tp + self.fn + self.tn + self.fp

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else float("nan")

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else float("nan")

    def add(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        t, p = np.asarray(y_true, bool), np.asarray(y_pred, bool)
        self.tp += int((t & p).sum())
        self.fn += int((t & ~p).sum())
        self.tn += int((~t & ~p).sum())
        self.fp += int((~t & p).sum())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n": self.n, "accuracy": self.accuracy, "sensitivity": self.sensitivity,
                "specificity": self.specificity}


@dataclass
class ExperimentResult:
    """Everything the report shows; ``to_dict`` is metrics.json."""

    dataset: str
    protocol: str
    seed: int
    folds: int | None
    negative: str
    positives: list[str]
    class_counts: dict[str, int]
    feature_sets: list[str]
    classifiers: list[str]
    cells: list[Cell]
    #: subset -> feature set -> feature name -> number of folds that selected it
    selection_counts: dict[str, dict[str, dict[str, int]]]
    n_folds: dict[str, int]
    #: features each selector picks on the whole "All" subset (descriptive, like the paper's Table 2)
    selected_on_all: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    extraction: dict[str, Any] = field(default_factory=dict)
    convergence_warnings: int = 0
    seconds: float = 0.0

    def cell(self, subset: str, feature_set: str, classifier: str) -> Cell:
        for c in self.cells:
            if (c.subset, c.feature_set, c.classifier) == (subset, feature_set, classifier):
                return c
        raise KeyError((subset, feature_set, classifier))

    @property
    def subsets(self) -> list[str]:
        return list(dict.fromkeys(c.subset for c in self.cells))

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "cells"}
        d["results"] = [c.to_dict() for c in self.cells]
        return d


def binary_subsets(table: FeatureTable, negative: str, positives: list[str]) -> list[Subset]:
    """Each positive class against ``negative``; plus "All" (every positive) when there are several."""
    labels = np.array(table.labels)
    neg = labels == negative
    out = []
    groups = [[p] for p in positives] + ([list(positives)] if len(positives) > 1 else [])
    for group in groups:
        pos = np.isin(labels, group)
        rows = neg | pos
        name = group[0] if len(group) == 1 else "All"
        out.append(Subset(name=name, X=table.X[rows], y=pos[rows].astype(int), classes=group))
    return out


def make_splits(y: np.ndarray, protocol: str, *, seed: int = 0, folds: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/test index pairs for a protocol (stratified where it applies)."""
    from sklearn.model_selection import LeaveOneOut, StratifiedKFold, train_test_split

    idx = np.arange(len(y))
    if protocol == "loo":
        return list(LeaveOneOut().split(idx))
    if protocol == "split":
        tr, te = train_test_split(idx, test_size=0.5, stratify=y, random_state=seed)
        return [(np.sort(tr), np.sort(te))]
    if protocol == "cv":
        return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(idx, y))
    raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")


def _check_sizes(subset: Subset, protocol: str, folds: int) -> None:
    counts = np.bincount(subset.y, minlength=2)
    need = max(_MIN_PER_CLASS[protocol], folds if protocol == "cv" else 0)
    if counts.min() < need:
        raise DatasetError(
            f"subset {subset.name!r}: {counts[0]} negative and {counts[1]} positive images; "
            f"protocol {protocol!r} needs at least {need} of each"
        )


def evaluate_folds(
    X: np.ndarray,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    *,
    feature_sets: tuple[str, ...] | list[str],
    classifiers: tuple[str, ...] | list[str],
    seed: int = 0,
    balanced: bool = False,
) -> Iterator[tuple[dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]]:
    """For each split, fit selection + pipelines on the training rows only and predict the test rows.

    Yields, per fold, ``{(feature_set, classifier): (y_true, y_pred)}`` and ``{feature_set: indices}``.
    ``balanced`` weights both classes equally where the classifier accepts sample weights (the
    paper's protocol does not: the experiments leave it off).
    """
    if not np.isfinite(X).all():
        raise ValueError("feature matrix contains NaN or infinite values")
    for train, test in splits:
        preds: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        chosen: dict[str, np.ndarray] = {}
        for fs in feature_sets:
            idx = select_indices(fs, X[train], y[train])
            chosen[fs] = idx
            Xtr, Xte = X[np.ix_(train, idx)], X[np.ix_(test, idx)]
            for clf in classifiers:
                kw = balanced_fit_params(clf, y[train]) if balanced else {}
                pipe = make_pipeline(clf, seed=seed).fit(Xtr, y[train], **kw)
                preds[(fs, clf)] = (y[test], pipe.predict(Xte))
        yield preds, chosen


def run_experiment(
    table: FeatureTable,
    *,
    negative: str,
    positives: list[str],
    protocol: str = "loo",
    feature_sets: tuple[str, ...] | list[str] = tuple(FEATURE_SETS),
    classifiers: tuple[str, ...] | list[str] = CLASSIFIERS,
    seed: int = 0,
    folds: int = 10,
    dataset: str = "",
    progress: bool = True,
) -> ExperimentResult:
    """Run the protocol on every subset × feature set × classifier (a tqdm bar counts folds)."""
    from sklearn.exceptions import ConvergenceWarning
    from tqdm import tqdm

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
    for f in feature_sets:
        parse_feature_set(f)  # ValueError on an unknown name
    t0 = time.perf_counter()
    subsets = binary_subsets(table, negative, positives)
    for s in subsets:
        _check_sizes(s, protocol, folds)
    plans = [(s, make_splits(s.y, protocol, seed=seed, folds=folds)) for s in subsets]
    cells: list[Cell] = []
    counts: dict[str, dict[str, dict[str, int]]] = {}
    n_folds: dict[str, int] = {}
    n_warn = 0
    total = sum(len(sp) for _, sp in plans)
    with tqdm(total=total, desc=f"{protocol} folds", unit="fold", disable=not progress) as bar, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for subset, splits in plans:
            bar.set_postfix_str(subset.name)
            sub_cells = {(fs, c): Cell(subset.name, fs, c) for fs in feature_sets for c in classifiers}
            sel: dict[str, Counter] = {fs: Counter() for fs in feature_sets}
            for preds, chosen in evaluate_folds(subset.X, subset.y, splits, feature_sets=feature_sets,
                                                classifiers=classifiers, seed=seed):
                for key, (yt, yp) in preds.items():
                    sub_cells[key].add(yt, yp)
                for fs, idx in chosen.items():
                    if fs != "all":
                        sel[fs].update(table.names[i] for i in idx)
                bar.update(1)
            cells.extend(sub_cells.values())
            counts[subset.name] = {fs: dict(c.most_common()) for fs, c in sel.items() if fs != "all"}
            n_folds[subset.name] = len(splits)
        n_warn = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    whole = subsets[-1]  # "All" when there are several positive classes, else the only subset
    selected_on_all = {
        fs: [table.names[i] for i in select_indices(fs, whole.X, whole.y)] for fs in feature_sets if fs != "all"
    }
    labels = Counter(table.labels)
    return ExperimentResult(
        dataset=dataset,
        protocol=protocol,
        seed=seed,
        folds=folds if protocol == "cv" else None,
        negative=negative,
        positives=list(positives),
        class_counts={c: labels.get(c, 0) for c in [negative, *positives]},
        feature_sets=list(feature_sets),
        classifiers=list(classifiers),
        cells=cells,
        selection_counts=counts,
        n_folds=n_folds,
        selected_on_all=selected_on_all,
        skipped=list(table.skipped),
        extraction=dict(table.params),
        convergence_warnings=n_warn,
        seconds=time.perf_counter() - t0,
    )
