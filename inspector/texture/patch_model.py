"""Patch novelty model (manifest ``input.mode = "patches"``): the tablet's worst patch decides.

Artifacts: ``pipeline.skops`` (``StandardScaler → MinCovDet`` over :data:`~inspector.texture.patches.PATCH_FEATURES`
of good-tablet patches), ``frame.skops`` (the same over :data:`~inspector.texture.patches.FRAME_FEATURES`
of good tablets) and ``calibration.npy`` (combined scores of held-out good tablets, sorted).

Frame score = max(worst patch distance / ``tau_patch``, frame distance / ``tau_frame``): each part
is scaled by its own quantile on held-out good tablets, so the frame rejects when either the worst
patch or the surface as a whole is unlike the good tablets. The reject threshold
(``thresholds.novelty``) is the ``1 − FRR`` quantile of that score on held-out good tablets;
``p_defect`` is the share of held-out good tablets that score lower.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspector.errors import ModelIntegrityError
from inspector.modelrepo import Manifest, ModelDir
from inspector.texture.model import CALIBRATION, Prediction, novelty_scores
from inspector.texture.patches import DEFAULT_TILES, FRAME_FEATURES, PATCH_FEATURES, PatchGrid, patch_grid

FRAME_ARTIFACT = "frame.skops"


def combined_scores(patch_pipe: Any, frame_pipe: Any, grids: list[PatchGrid], tau_patch: float,
                    tau_frame: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(combined score, worst patch index, worst patch score) per frame."""
    out, worst, wscore = [], [], []
    for g in grids:
        sp = novelty_scores(patch_pipe, g.X)
        sf = float(novelty_scores(frame_pipe, g.frame[None, :])[0])
        k = int(np.argmax(sp))
        out.append(max(sp[k] / tau_patch, sf / tau_frame))
        worst.append(k)
        wscore.append(float(sp[k]))
    return np.array(out), np.array(worst), np.array(wscore)


@dataclass
class PatchModel:
    model_dir: ModelDir
    patch_pipe: Any
    frame_pipe: Any
    calibration: np.ndarray
    tiles: int
    tau_patch: float
    tau_frame: float
    novelty_threshold: float
    threshold: float
    max_side: int | None
    mode: str = "patches"
    families: tuple[str, ...] = ("patches",)
    levels: int = 0
    roi: str | None = "auto"

    @property
    def manifest(self) -> Manifest:
        return self.model_dir.manifest

    def calibrated(self, s: float) -> float:
        return float(np.searchsorted(self.calibration, s, side="left") / (len(self.calibration) + 1.0))

    def predict_grid(self, grid: PatchGrid, threshold: float | None = None) -> Prediction:
        sp = novelty_scores(self.patch_pipe, grid.X)
        sf = float(novelty_scores(self.frame_pipe, grid.frame[None, :])[0])
        k = int(np.argmax(sp))
        s = max(sp[k] / self.tau_patch, sf / self.tau_frame)
        p = self.calibrated(s)
        reject = p >= threshold if threshold is not None else s >= self.novelty_threshold
        x, y, w, h = (int(v) for v in grid.boxes[k])
        detail = {
            "threshold": threshold if threshold is not None else self.threshold,
            "novelty_threshold": self.novelty_threshold,
            "worst_patch": {"x": x, "y": y, "w": w, "h": h, "score": round(float(sp[k] / self.tau_patch), 4),
                            "features": {n: round(float(v), 4) for n, v in zip(PATCH_FEATURES, grid.X[k])}},
            "surface_score": round(sf / self.tau_frame, 4),
            "decided_by": "patch" if sp[k] / self.tau_patch >= sf / self.tau_frame else "surface",
            "patches": int(len(grid.X)),
        }
        return Prediction(bool(reject), {"p_defect": round(p, 6), "novelty": round(float(s), 6)}, detail)

    def grid(self, gray: np.ndarray) -> PatchGrid:
        from inspector.texture.describe import limit_size

        return patch_grid(limit_size(gray, self.max_side), self.tiles)


def load_patch_model(md: ModelDir, pipeline: Any, verified: Any) -> PatchModel:
    """Finish loading a ``patches`` model whose primary pipeline is already verified and loaded."""
    import skops.io as sio

    from inspector.texture.model import TRUSTED_TYPES

    m = md.manifest
    try:
        frame_pipe = sio.loads(verified(md, FRAME_ARTIFACT), trusted=list(TRUSTED_TYPES))
    except ModelIntegrityError:
        raise
    except Exception as e:
        raise ModelIntegrityError(f"model {m.name}/{m.version}: {FRAME_ARTIFACT} cannot be loaded safely: {e}") from None
    try:
        cal = np.sort(np.load(io.BytesIO(verified(md, CALIBRATION)), allow_pickle=False).astype(float))
        feats = tuple(m.input.get("features", ()))
        ffeats = tuple(m.input.get("frame_features", ()))
        if feats != PATCH_FEATURES or ffeats != FRAME_FEATURES:
            raise ValueError(f"features {feats}/{ffeats} are not this extractor's {PATCH_FEATURES}/{FRAME_FEATURES}")
        if getattr(pipeline, "n_features_in_", None) != len(feats) or frame_pipe.n_features_in_ != len(ffeats):
            raise ValueError("pipelines and manifest features disagree")
        max_side = m.input.get("max_side")
        model = PatchModel(
            model_dir=md, patch_pipe=pipeline, frame_pipe=frame_pipe, calibration=cal,
            tiles=int(m.input.get("tiles", DEFAULT_TILES)), tau_patch=float(m.thresholds["tau_patch"]),
            tau_frame=float(m.thresholds["tau_frame"]), novelty_threshold=float(m.thresholds["novelty"]),
            threshold=float(m.thresholds.get("reject_probability", 0.95)), max_side=int(max_side) if max_side else None)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelIntegrityError(f"model {m.name}/{m.version}: malformed patch model: {e}") from None
    if cal.ndim != 1 or len(cal) < 2:
        raise ModelIntegrityError(f"model {m.name}/{m.version}: calibration scores must be a 1-D array of ≥ 2 values")
    return model
