"""Classification metrics of the identity models: confusion matrix, per-class precision / recall / F,
frame-level aggregation. Plain numpy, no TensorFlow; imported by training, evaluation and reports
(its own module so that none of those needs another to compute a score).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["classification_metrics", "confusion_matrix", "frame_probabilities"]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts; rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def classification_metrics(cm: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Per-class precision / recall / F-measure, their means, and accuracy from a confusion matrix.

    An undefined ratio (no prediction of, or no sample of, a class) counts as 0, as scikit-learn's
    ``zero_division=0``.
    """
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    pred = cm.sum(axis=0)
    true = cm.sum(axis=1)
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    total = cm.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "mean_precision": float(precision.mean()),
        "mean_recall": float(recall.mean()),
        "mean_f1": float(f1.mean()),
        "per_class": {c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for c, p, r, f, s in zip(classes, precision, recall, f1, true, strict=True)},
        "support": int(total),
    }


def frame_probabilities(probs: np.ndarray, frame_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean tile probability per source frame: (frame ids sorted, (n_frames, classes))."""
    ids = np.unique(frame_ids)
    return ids, np.stack([probs[frame_ids == i].mean(axis=0) for i in ids])
