"""The particle-morphology reference of the lot-drift check (offline, part of ``inspector calibrate openset``).

Every calibration frame is measured with the serving function (``inspector.identity.morphology``,
the same code the identity worker runs). Per class: the mean vector and the class's own covariance
(Ledoit-Wolf; classes differ a lot in how much their frames vary: a frame of fibres holds a few
long particles, one of spheres many), and the frame count. The threshold of the Hotelling
statistic comes from permutations: a pseudo-lot of ``n`` frames of one class against the mean and
covariance of the class's *other* frames, ``n_perm`` times per class and lot size; the ``q``
quantile over all of them.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from inspector.identity.morphology import FEATURES, measure

log = logging.getLogger("inspector.openset")

LOT_SIZES = (8, 16, 32)


def compute_morphology(frames: list[Path], *, cache_dir: str | Path | None = None, progress: bool = True) -> np.ndarray:
    """(n_frames, len(FEATURES)) morphology vectors of ``frames`` (cached by file identity and features)."""
    from tqdm import tqdm

    from inspector.identity.tiling import crop_data_bar, to_gray_u8
    from inspector.offline.identity.data import read_frame

    h = hashlib.sha256(("morphology-2:" + ",".join(FEATURES)).encode())  # bump when measure() changes
    for p in frames:
        st = Path(p).stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    cache = Path(cache_dir) / f"morph-{h.hexdigest()[:20]}.npy" if cache_dir else None
    if cache is not None and cache.is_file():
        return np.load(cache, allow_pickle=False)
    out = np.stack([measure(crop_data_bar(to_gray_u8(read_frame(p))))
                    for p in tqdm(frames, desc="particle morphology", unit="frame", disable=not progress)])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, out)
    return out


def _precision(x: np.ndarray) -> np.ndarray:
    from sklearn.covariance import LedoitWolf

    return LedoitWolf().fit(x).precision_


def fit_morphology(m: np.ndarray, y: np.ndarray, num_classes: int, *, q: float, sizes: tuple[int, ...] = LOT_SIZES,
                   n_perm: int = 300, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reference arrays (``morph_*``) and the manifest block of the morphology view.

    ``m``: (n_frames, k) vectors of the calibration frames, ``y``: their model class index."""
    from inspector.errors import InspectorError
    from inspector.daemon.drift import drift_value  # the statistic the supervisor computes per lot

    m = np.asarray(m, np.float64)
    k = m.shape[1]
    means, precs, counts = np.zeros((num_classes, k)), np.zeros((num_classes, k, k)), np.zeros(num_classes, np.int32)
    rng = np.random.default_rng(seed)
    null: dict[int, list[float]] = {}
    for c in range(num_classes):
        x = m[y == c]
        if len(x) < 6:
            raise InspectorError(f"morphology reference: {len(x)} frames of class index {c}; give at least 6")
        means[c], precs[c], counts[c] = x.mean(0), _precision(x), len(x)
        for n in [n for n in sizes if n <= len(x) - 5] or [len(x) // 2]:
            for _ in range(n_perm):
                perm = rng.permutation(len(x))
                lot, rest = x[perm[:n]], x[perm[n:]]
                null.setdefault(n, []).append(drift_value(lot.sum(0), n, rest.mean(0), _precision(rest), len(rest)))
    allv = np.concatenate([np.array(v) for v in null.values()])
    block = {"features": list(FEATURES), "threshold": float(np.quantile(allv, q)), "quantile": q,
             "by_lot_size": {str(n): float(np.quantile(v, q)) for n, v in sorted(null.items())},
             "statistic": "(lot mean - reference mean)^T S_c^-1 (lot mean - reference mean) / (1/n + 1/n_ref), "
                          "per-frame particle morphology (inspector.identity.morphology), S_c = the class's own "
                          "covariance (Ledoit-Wolf)",
             "null": f"permutation: pseudo-lots of {sorted(null)} calibration frames of one class vs the mean and "
                     f"covariance of its other frames, {n_perm} per class and size"}
    arrays = {"morph_means": means.astype(np.float32), "morph_precision": precs.astype(np.float32),
              "morph_counts": counts, "morph_ref": m.astype(np.float32)}
    return arrays, block
