"""Unknown-material scores and the lot-drift projection of an identity model (serving, numpy only).

Four tile scores, higher = further from the known classes, computed from what the ONNX model
already returns (``probs``, ``pooled``) and the dense head (exact logits, as for Grad-CAM):

    msp          1 - max softmax probability                      (Hendrycks & Gimpel 2017)
    energy       -logsumexp(logits), logits from the head          (Liu et al. 2020)
    mahalanobis  min over classes of the squared Mahalanobis distance of the pooled
                 embedding to the class mean, one shared covariance (Lee et al. 2018)
    knn          distance of the L2-normalised embedding to its k-th nearest neighbour in a
                 sub-sampled bank of training embeddings          (Sun et al. 2022)

Tile scores are aggregated into one frame score (``mean``, ``q90`` = 90th percentile, ``max``).
The calibration (``inspector calibrate openset``, offline) writes ``openset.npz`` (plain arrays,
loaded with ``allow_pickle=False``) listed with its sha256 in the manifest, and the block
``extra.openset`` (method, aggregation, threshold, k …); ``thresholds.ood`` repeats the threshold.

Lot drift: each frame's mean pooled embedding is projected on the top principal components of
the calibration embeddings, whitened (``embed``); when the calibration also measured particle
morphology (``morph_*`` arrays), the frame's morphology vector is a second view. The supervisor
(``inspector.daemon.drift``) compares a lot's running means with the expected excipient's references.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import ModelIntegrityError

ARTIFACT = "openset.npz"
METHODS = ("msp", "energy", "mahalanobis", "knn")
AGGREGATIONS = ("mean", "q90", "max")
#: arrays of openset.npz and their number of dimensions
ARRAYS = {
    "means": 2, "precision": 2, "bank": 2,  # (C, D), (D, D), (B, D) L2-normalised
    "pca_mean": 1, "pca_proj": 2,  # (D,), (D, k) whitened projection
    "drift_means": 2, "drift_precision": 2, "drift_counts": 1,  # (C, k), (k, k), (C,) reference frames
    "ref_proj": 2, "ref_labels": 1,  # (N, k) reference frame embeddings and their class index
}
#: optional arrays (calibrations since the particle-morphology drift view): per-class reference
#: means, precisions and frame counts of the morphology vectors (inspector.identity.morphology), and
#: every reference frame's vector (for ``inspector drift report``)
MORPHOLOGY_ARRAYS = {"morph_means": 2, "morph_precision": 3, "morph_counts": 1, "morph_ref": 2}


def msp_score(probs: np.ndarray) -> np.ndarray:
    """1 - maximum softmax probability per tile."""
    return 1.0 - np.asarray(probs, np.float64).max(axis=1)


def energy_score(logits: np.ndarray) -> np.ndarray:
    """Free energy -logsumexp(logits) per tile (temperature 1); low for confident known tiles."""
    z = np.asarray(logits, np.float64)
    m = z.max(axis=1, keepdims=True)
    return -(m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))


def mahalanobis_all(pooled: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances (n, C) of embeddings to each class mean, shared precision."""
    x = np.asarray(pooled, np.float64)
    mu = np.asarray(means, np.float64)
    p = np.asarray(precision, np.float64)
    xp = x @ p
    pm = mu @ p  # (C, D)
    d = (xp * x).sum(1)[:, None] - 2.0 * x @ pm.T + (pm * mu).sum(1)[None, :]
    return np.maximum(d, 0.0)


def mahalanobis_score(pooled: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Distance to the nearest class mean per tile."""
    return mahalanobis_all(pooled, means, precision).min(axis=1)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_score(pooled: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distance of each normalised embedding to its k-th nearest (normalised) bank vector.

    Exact brute force: one (n, B) product and a partition — for a frame's 20 tiles against a bank
    of a few thousand vectors this is a fraction of a millisecond, no index structure needed."""
    q = l2_normalise(pooled)
    b = np.asarray(bank, np.float64)
    k = int(min(max(1, k), len(b)))
    d2 = np.maximum(2.0 - 2.0 * (q @ b.T), 0.0)  # both sides unit length
    return np.sqrt(np.partition(d2, k - 1, axis=1)[:, k - 1])


def aggregate_scores(scores: np.ndarray, how: str) -> float:
    """Tile scores -> frame score."""
    s = np.asarray(scores, np.float64)
    if how == "mean":
        return float(s.mean())
    if how == "q90":
        return float(np.quantile(s, 0.9))
    if how == "max":
        return float(s.max())
    raise ValueError(f"unknown aggregation {how!r} (known: {', '.join(AGGREGATIONS)})")


@dataclass
class OpenSet:
    """The calibrated open-set check and drift reference of one model version."""

    method: str
    aggregation: str
    threshold: float
    k: int
    arrays: dict[str, np.ndarray]
    block: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path, block: dict[str, Any], num_classes: int) -> OpenSet:
        """Read ``openset.npz`` (no pickles) and check it against the manifest block."""
        try:
            method, agg = str(block["method"]), str(block["aggregation"])
            threshold, k = float(block["threshold"]), int(block.get("k", 1))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelIntegrityError(f"malformed openset block in the manifest: {e!r}") from None
        if method not in METHODS or agg not in AGGREGATIONS or not np.isfinite(threshold):
            raise ModelIntegrityError(f"openset block: unknown method/aggregation {method!r}/{agg!r} "
                                      f"or threshold {threshold!r}")
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                arrays = {name: np.asarray(z[name]) for name in ARRAYS}
                arrays.update({name: np.asarray(z[name]) for name in MORPHOLOGY_ARRAYS if name in z.files})
        except (OSError, KeyError, ValueError) as e:
            raise ModelIntegrityError(f"unreadable open-set artifact {path}: {e}") from None
        for name, nd in {**ARRAYS, **MORPHOLOGY_ARRAYS}.items():
            if name in arrays and arrays[name].ndim != nd:
                raise ModelIntegrityError(f"open-set artifact {path}: {name} has {arrays[name].ndim} dims, not {nd}")
        c, d = arrays["means"].shape
        kd = arrays["pca_proj"].shape[1]
        ok = (c == num_classes and arrays["precision"].shape == (d, d) and arrays["bank"].shape[1] == d
              and arrays["pca_mean"].shape == (d,) and arrays["pca_proj"].shape[0] == d
              and arrays["drift_means"].shape == (c, kd) and arrays["drift_precision"].shape == (kd, kd)
              and arrays["drift_counts"].shape == (c,))
        if "morph_means" in arrays:
            mm = arrays["morph_means"].shape[1] if arrays["morph_means"].ndim == 2 else -1
            ok = ok and all(n in arrays for n in MORPHOLOGY_ARRAYS) and arrays["morph_means"].shape == (c, mm) \
                and arrays["morph_precision"].shape == (c, mm, mm) and arrays["morph_counts"].shape == (c,)
        if not ok:
            raise ModelIntegrityError(f"open-set artifact {path}: array shapes do not fit {num_classes} classes")
        return cls(method, agg, threshold, k, arrays, dict(block))

    @property
    def measures_morphology(self) -> bool:
        """Calibrated with a particle-morphology reference: the inspection measures each frame."""
        return "morph_means" in self.arrays

    @property
    def dim(self) -> int:
        return int(self.arrays["means"].shape[1])

    def tile_scores(self, method: str, probs: np.ndarray, logits: np.ndarray, pooled: np.ndarray) -> np.ndarray:
        a = self.arrays
        if method == "msp":
            return msp_score(probs)
        if method == "energy":
            return energy_score(logits)
        if method == "mahalanobis":
            return mahalanobis_score(pooled, a["means"], a["precision"])
        if method == "knn":
            return knn_score(pooled, a["bank"], self.k)
        raise ValueError(f"unknown open-set method {method!r}")

    def score(self, probs: np.ndarray, logits: np.ndarray, pooled: np.ndarray) -> float:
        """The frame's unknown-material score with the calibrated method and aggregation."""
        if np.shape(pooled)[1] != self.dim:
            raise ValueError(f"pooled features have {np.shape(pooled)[1]} dims, the open-set artifact {self.dim}")
        return aggregate_scores(self.tile_scores(self.method, probs, logits, pooled), self.aggregation)

    def check(self, probs: np.ndarray, logits: np.ndarray, pooled: np.ndarray) -> tuple[float, int]:
        """(frame score, nearest class index) with one Mahalanobis pass: what the inspection needs per frame."""
        if np.shape(pooled)[1] != self.dim:
            raise ValueError(f"pooled features have {np.shape(pooled)[1]} dims, the open-set artifact {self.dim}")
        d = mahalanobis_all(pooled, self.arrays["means"], self.arrays["precision"])
        tile = d.min(axis=1) if self.method == "mahalanobis" else self.tile_scores(self.method, probs, logits, pooled)
        return aggregate_scores(tile, self.aggregation), int(np.argmin(d.mean(axis=0)))

    def nearest_class(self, pooled: np.ndarray) -> tuple[int, float]:
        """Known class whose mean is nearest (Mahalanobis, mean over tiles) and that mean distance."""
        d = mahalanobis_all(pooled, self.arrays["means"], self.arrays["precision"]).mean(axis=0)
        i = int(np.argmin(d))
        return i, float(d[i])

    def embed(self, pooled: np.ndarray) -> np.ndarray:
        """The frame's compact embedding: mean pooled embedding, PCA-projected and whitened (k,)."""
        return embed(pooled, self.arrays["pca_mean"], self.arrays["pca_proj"])


def embed(pooled: np.ndarray, pca_mean: np.ndarray, pca_proj: np.ndarray) -> np.ndarray:
    """Frame-mean of tile embeddings projected on a whitened PCA basis."""
    m = np.asarray(pooled, np.float64).mean(axis=0)
    return (m - np.asarray(pca_mean, np.float64)) @ np.asarray(pca_proj, np.float64)
