"""Calibration of the open-set check and of the lot-drift reference on a model version (offline).

``inspector calibrate openset MODEL_DIR --data DIR``: every frame of DIR (one sub-folder per known
class, names matching the model's classes) goes once through the model's own ONNX session (the
serving runtime); per class, a fraction of the frames is held out. The *fit* frames' tile
embeddings give the class means and the shared covariance (Ledoit-Wolf shrinkage: 1280-d
embeddings from a few thousand tiles), the kNN bank, the whitened PCA basis of the drift
reference and its per-class means; the *held-out* known frames give the operating thresholds
(the ``quantile`` of their frame scores, finite-sample corrected); the drift threshold comes from
permutations: pseudo-lots of one class's calibration frames against the mean of its other frames. Writes ``openset.npz`` into the model folder, lists it
with its sha256 in the manifest, and records the ``extra.openset`` block and ``thresholds.ood``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InspectorError
from inspector.identity.openset import (
    AGGREGATIONS, ARTIFACT, METHODS, aggregate_scores, embed, energy_score, knn_score, l2_normalise,
    mahalanobis_score, msp_score,
)

log = logging.getLogger("inspector.openset")

DRIFT_LOT_SIZES = (8, 16, 24)
DRIFT_MIN_FRAMES = 8


@dataclass
class Embeddings:
    """Per-tile model outputs of a set of frames (the expensive part, cached)."""

    pooled: np.ndarray  # (n_tiles, D) float32
    probs: np.ndarray  # (n_tiles, C) float32 — model classes
    logits: np.ndarray  # (n_tiles, C) from the dense head
    tile_frame: np.ndarray  # (n_tiles,) index into frames
    frame_labels: np.ndarray  # (n_frames,) index into ``labels``
    labels: list[str]  # names of the data's sub-folders
    frames: list[str] = field(default_factory=list)

    def frame_mean(self) -> np.ndarray:
        n = len(self.frame_labels)
        out = np.zeros((n, self.pooled.shape[1]))
        np.add.at(out, self.tile_frame, self.pooled.astype(np.float64))
        return out / np.bincount(self.tile_frame, minlength=n)[:, None]

    def subset(self, frame_idx: np.ndarray) -> Embeddings:
        frame_idx = np.asarray(frame_idx, np.int64)
        remap = -np.ones(len(self.frame_labels), np.int64)
        remap[frame_idx] = np.arange(len(frame_idx))
        keep = remap[self.tile_frame] >= 0
        return Embeddings(self.pooled[keep], self.probs[keep], self.logits[keep], remap[self.tile_frame[keep]],
                          self.frame_labels[frame_idx], self.labels, [self.frames[i] for i in frame_idx])

    def save(self, path: Path) -> None:
        np.savez(path, pooled=self.pooled, probs=self.probs, logits=self.logits, tile_frame=self.tile_frame,
                 frame_labels=self.frame_labels, labels=np.array(self.labels), frames=np.array(self.frames))

    @classmethod
    def load(cls, path: Path) -> Embeddings:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["pooled"], z["probs"], z["logits"], z["tile_frame"], z["frame_labels"],
                       [str(s) for s in z["labels"]], [str(s) for s in z["frames"]])


def list_class_frames(data_dir: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Sub-folder names and frames; unlike training, a single class is allowed (a foreign set)."""
    from inspector.offline.identity.data import IMAGE_SUFFIXES

    root = Path(data_dir)
    if not root.is_dir():
        raise InspectorError(f"data folder {root} does not exist")
    labels: list[str] = []
    frames: list[tuple[Path, int]] = []
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for d in subdirs or [root]:
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            frames.extend((f, len(labels)) for f in files)
            labels.append(d.name)
    if not frames:
        raise InspectorError(f"{root} holds no image frames")
    return labels, frames


def compute_embeddings(model_dir: Any, data_dir: str | Path, *, cache_dir: str | Path | None = None,
                       progress: bool = True) -> Embeddings:
    """Run every frame of ``data_dir`` through the model (ONNX Runtime, CPU); cached by model + data hash."""
    from tqdm import tqdm

    from inspector.identity.gradcam import HEAD_ARTIFACT, DenseHead
    from inspector.identity.runtime import OrtModel
    from inspector.identity.tiling import frame_tiles, preprocess
    from inspector.offline.identity.data import read_frame

    labels, frames = list_class_frames(data_dir)
    h = hashlib.sha256(model_dir.manifest.sha256.encode())
    for p, lab in frames:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0{lab}\n".encode())
    key = h.hexdigest()[:20]
    cache = Path(cache_dir) / f"emb-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        log.info("embeddings of %s from cache %s", data_dir, cache)
        return Embeddings.load(cache)
    ort = OrtModel(model_dir, ["CPUExecutionProvider"], intra_op_threads=2)
    head = DenseHead.load(model_dir.artifact(HEAD_ARTIFACT))
    pooled, probs, tile_frame = [], [], []
    for i, (path, _) in enumerate(tqdm(frames, desc=f"embedding {Path(data_dir).name}", unit="frame",
                                       disable=not progress)):
        tiles, _ = frame_tiles(read_frame(path), ort.tile)
        out = ort.run(preprocess(tiles, ort.preprocess_mode))
        pooled.append(out["pooled"].astype(np.float32))
        probs.append(out["probs"].astype(np.float32))
        tile_frame.append(np.full(len(tiles), i, np.int32))
    pooled_a = np.concatenate(pooled)
    emb = Embeddings(pooled_a, np.concatenate(probs), head.logits(pooled_a).astype(np.float32),
                     np.concatenate(tile_frame), np.array([lab for _, lab in frames], np.int32), labels,
                     [str(p) for p, _ in frames])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        emb.save(cache)
    return emb


def holdout_split(frame_labels: np.ndarray, fraction: float, seed: int,
                  groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per class, hold out ``fraction`` of the frames (whole groups when ``groups`` is given)."""
    rng = np.random.default_rng(seed)
    fit, hold = [], []
    for c in np.unique(frame_labels):
        idx = np.flatnonzero(frame_labels == c)
        g = groups[idx] if groups is not None else idx
        ug = rng.permutation(np.unique(g))
        n_hold = max(1, int(round(fraction * len(ug)))) if len(ug) > 1 else 0
        held = np.isin(g, ug[:n_hold])
        fit.append(idx[~held])
        hold.append(idx[held])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(hold))


def conformal_quantile(scores: np.ndarray, q: float) -> float:
    """The ceil((n+1) q)-th smallest score: P(new known score > t) <= 1 - q for exchangeable frames."""
    s = np.sort(np.asarray(scores, np.float64))
    i = min(len(s) - 1, int(np.ceil((len(s) + 1) * q)) - 1)
    return float(s[max(i, 0)])


def fit_reference(fit: Embeddings, class_idx: np.ndarray, num_classes: int, *, k: int, bank_size: int,
                  drift_dims: int, seed: int) -> dict[str, np.ndarray]:
    """Class means, shared precision, kNN bank, whitened PCA basis and drift means from fit frames.

    ``class_idx`` maps each of ``fit.labels`` to its model class index."""
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    x = fit.pooled.astype(np.float64)
    y = class_idx[fit.frame_labels[fit.tile_frame]]
    d = x.shape[1]
    means = np.zeros((num_classes, d))
    for c in range(num_classes):
        if not np.any(y == c):
            raise InspectorError(f"no calibration frames for model class index {c}")
        means[c] = x[y == c].mean(0)
    precision = LedoitWolf(assume_centered=True).fit(x - means[y]).precision_
    rng = np.random.default_rng(seed)
    bank = l2_normalise(x[rng.permutation(len(x))[:bank_size]])
    fm = fit.frame_mean()
    fy = class_idx[fit.frame_labels]
    kd = int(min(drift_dims, d, len(fm) - 1))
    pca = PCA(n_components=kd, whiten=False, random_state=seed).fit(fm)
    proj = pca.components_.T / np.sqrt(np.maximum(pca.explained_variance_, 1e-12))
    z = (fm - pca.mean_) @ proj
    dmeans = np.stack([z[fy == c].mean(0) for c in range(num_classes)])
    dprec = LedoitWolf(assume_centered=True).fit(z - dmeans[fy]).precision_
    return {"means": means.astype(np.float32), "precision": precision.astype(np.float32),
            "bank": bank.astype(np.float32), "pca_mean": pca.mean_.astype(np.float32),
            "pca_proj": proj.astype(np.float32), "drift_means": dmeans.astype(np.float32),
            "drift_precision": dprec.astype(np.float32),
            "drift_counts": np.bincount(fy, minlength=num_classes).astype(np.int32)}


def frame_scores(emb: Embeddings, arrays: dict[str, np.ndarray], k: int) -> dict[str, dict[str, np.ndarray]]:
    """{method: {aggregation: (n_frames,) scores}} — the same functions the daemon runs."""
    tile = {
        "msp": msp_score(emb.probs), "energy": energy_score(emb.logits),
        "mahalanobis": mahalanobis_score(emb.pooled, arrays["means"], arrays["precision"]),
        "knn": knn_score(emb.pooled, arrays["bank"], k),
    }
    n = len(emb.frame_labels)
    order = np.argsort(emb.tile_frame, kind="stable")
    bounds = np.searchsorted(emb.tile_frame[order], np.arange(n + 1))
    out: dict[str, dict[str, np.ndarray]] = {}
    for m in METHODS:
        s = tile[m][order]
        out[m] = {a: np.array([aggregate_scores(s[bounds[i]:bounds[i + 1]], a) for i in range(n)])
                  for a in AGGREGATIONS}
    return out


def drift_statistic(z: np.ndarray, mean: np.ndarray, precision: np.ndarray, n_ref: float = np.inf) -> float:
    """Two-sample Hotelling statistic (z̄ - m)ᵀ S⁻¹ (z̄ - m) / (1/n + 1/n_ref) of a lot's frame embeddings
    ``z`` (n, k) against a reference mean ``m`` estimated from ``n_ref`` frames."""
    from inspector.daemon.drift import drift_value

    z = np.asarray(z, np.float64)
    return drift_value(z.sum(0), len(z), mean, precision, n_ref)


def permutation_drift_threshold(z: np.ndarray, zy: np.ndarray, precision: np.ndarray, *, q: float,
                                sizes: tuple[int, ...] = DRIFT_LOT_SIZES, n_perm: int = 500,
                                seed: int = 0) -> tuple[float, dict[str, float]]:
    """Threshold of the drift statistic under "same distribution": for each class, ``n_perm`` times, a
    random pseudo-lot of ``n`` of its calibration frames is compared with the mean of the *other*
    frames (a reference it was not part of, with its own n_ref); the ``q`` quantile over every class
    and lot size. Sizes that leave fewer than 3 reference frames are skipped for that class (a class with
    very few frames uses pseudo-lots of half its frames: the report lists the sizes used)."""
    from inspector.daemon.drift import drift_value

    rng = np.random.default_rng(seed)
    stats: dict[int, list[float]] = {}
    for c in np.unique(zy):
        zc = np.asarray(z[zy == c], np.float64)
        for n in [n for n in sizes if n <= len(zc) - 3] or [max(1, len(zc) // 2)]:
            for _ in range(n_perm):
                perm = rng.permutation(len(zc))
                lot, rest = zc[perm[:n]], zc[perm[n:]]
                stats.setdefault(n, []).append(drift_value(lot.sum(0), n, rest.mean(0), precision, len(rest)))
    used = dict(sorted(stats.items()))
    allv = np.concatenate([np.array(v) for v in used.values()])
    return float(np.quantile(allv, q)), {str(n): float(np.quantile(v, q)) for n, v in used.items()}


def calibrate(emb: Embeddings, classes: list[str], *, method: str = "mahalanobis", aggregation: str = "mean",
              quantile: float = 0.99, k: int = 5, bank_size: int = 2048, drift_dims: int = 16,
              drift_quantile: float = 0.999, holdout: float = 0.3, seed: int = 0,
              groups: np.ndarray | None = None, morphology: np.ndarray | None = None,
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit on part of ``emb``, choose thresholds on the held-out known frames: (arrays, manifest block).

    ``morphology``: (n_frames, k) particle-morphology vectors of ``emb``'s frames — adds the second
    lot-drift view (its reference uses every frame, like the embedding view's permutation null)."""
    from inspector.inspections.excipient_identity import match_class

    if method not in METHODS or aggregation not in AGGREGATIONS:
        raise InspectorError(f"method must be one of {METHODS} and aggregation one of {AGGREGATIONS}")
    class_idx = np.array([match_class(lab, classes) if match_class(lab, classes) is not None else -1
                          for lab in emb.labels])
    unknown = [lab for lab, i in zip(emb.labels, class_idx) if i < 0]
    if unknown:
        raise InspectorError(f"data sub-folders {unknown} are not classes of the model ({', '.join(classes)})")
    fit_idx, hold_idx = holdout_split(emb.frame_labels, holdout, seed, groups)
    per_class = np.bincount(class_idx[emb.frame_labels[fit_idx]], minlength=len(classes))
    if len(hold_idx) < 10 or per_class.min() < 3:
        raise InspectorError(f"too few calibration frames ({len(hold_idx)} held out, at least {per_class.min()} "
                             f"fit per class): give at least ~6 frames per class, ideally 20+")
    fit, hold = emb.subset(fit_idx), emb.subset(hold_idx)
    arrays = fit_reference(fit, class_idx, len(classes), k=k, bank_size=bank_size, drift_dims=drift_dims, seed=seed)
    scores = frame_scores(hold, arrays, k)
    thresholds = {m: {a: conformal_quantile(scores[m][a], quantile) for a in AGGREGATIONS} for m in METHODS}
    z_all = np.stack([embed(emb.pooled[emb.tile_frame == i], arrays["pca_mean"], arrays["pca_proj"])
                      for i in range(len(emb.frame_labels))])
    zy = class_idx[emb.frame_labels]
    dthr, dthr_n = permutation_drift_threshold(z_all, zy, arrays["drift_precision"].astype(np.float64),
                                               q=drift_quantile, seed=seed)
    arrays["ref_proj"] = z_all.astype(np.float32)
    arrays["ref_labels"] = zy.astype(np.int32)
    block = {
        "method": method, "aggregation": aggregation, "threshold": thresholds[method][aggregation],
        "quantile": quantile, "k": int(k), "artifact": ARTIFACT, "thresholds": thresholds,
        "logits": "dense head applied to pooled embeddings (exact, as for Grad-CAM)",
        "fit_frames": int(len(fit_idx)), "fit_tiles": int(len(fit.pooled)), "holdout_frames": int(len(hold_idx)),
        "bank": int(len(arrays["bank"])), "dim": int(arrays["means"].shape[1]), "seed": int(seed),
        "drift": {"dims": int(arrays["pca_proj"].shape[1]), "threshold": dthr, "by_lot_size": dthr_n,
                  "quantile": drift_quantile, "min_frames": DRIFT_MIN_FRAMES,
                  "statistic": "(lot mean - reference mean)^T S^-1 (lot mean - reference mean) / (1/n + 1/n_ref), "
                               "whitened PCA space of frame-mean embeddings, S = shared within-class covariance",
                  "null": f"permutation: pseudo-lots of {list(DRIFT_LOT_SIZES)} calibration frames of one class "
                          "vs the mean of the class's other frames, 500 per class and size"},
    }
    if morphology is not None:
        from inspector.offline.identity.openset_morph import fit_morphology

        marrays, mblock = fit_morphology(morphology, zy, len(classes), q=drift_quantile, seed=seed)
        arrays.update(marrays)
        block["drift"]["morphology"] = mblock
    return arrays, block


def write_openset(model_dir: Any, arrays: dict[str, np.ndarray], block: dict[str, Any]) -> Any:
    """Write ``openset.npz`` into a verified model folder and update its manifest (other artifacts'
    hashes are kept as verified, never recomputed, so a tampered file is still refused)."""
    from inspector.modelrepo import MANIFEST, load_model_dir, sha256_file

    md = load_model_dir(model_dir.path)  # verify everything before touching the folder
    path = md.path / ARTIFACT
    tmp = md.path / (ARTIFACT + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    m = md.manifest
    m.artifacts[ARTIFACT] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    m.thresholds["ood"] = float(block["threshold"])
    m.extra["openset"] = {**block, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    mtmp = md.path / (MANIFEST + ".tmp")
    mtmp.write_text(json.dumps(m.to_dict(), indent=2) + "\n", encoding="utf-8")
    mtmp.replace(md.path / MANIFEST)
    return load_model_dir(md.path)


def calibrate_model(model_path: str | Path, data_dir: str | Path, *, cache_dir: str | Path | None = None,
                    progress: bool = True, command: str = "", morphology: bool = True,
                    **kw: Any) -> tuple[Any, dict[str, Any]]:
    """The whole step: verify the model, embed ``data_dir`` (and measure its particle morphology),
    calibrate, write. Returns (ModelDir, block)."""
    from inspector.modelrepo import load_model_dir
    from inspector.offline.identity.openset_morph import compute_morphology

    md = load_model_dir(model_path)
    emb = compute_embeddings(md, data_dir, cache_dir=cache_dir, progress=progress)
    if morphology:
        kw["morphology"] = compute_morphology([Path(f) for f in emb.frames], cache_dir=cache_dir, progress=progress)
    arrays, block = calibrate(emb, list(md.manifest.classes), **kw)
    block["data_dir"] = str(data_dir)
    block["command"] = command
    return write_openset(md, arrays, block), block
