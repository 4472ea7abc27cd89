"""Inline tablet surface inspection: frame → 281 texture features → P(defect) → pass / reject.

The model is a texture pipeline from the model repository (``inspector train texture``, see
:mod:`inspector.texture.model`): the manifest names the features it consumes, the extraction
settings it was trained with (grey levels, ROI, ``max_side``) and the reject threshold.

Stages reported: ``preprocess`` = grey conversion, optional downscale and texture-feature
extraction (the bulk of the time); ``infer`` = the scikit-learn pipeline. A frame the features
cannot describe (no tablet found, constant ROI, too small…) gets verdict ``error`` with the reason;
the inspection never raises on a bad frame.

``max_side``: texture features depend on resolution, so the default is the value the model was
trained with (manifest ``input.max_side``). Setting it lower than the training resolution trades
accuracy for latency on very large frames; the model's validation figures then no longer apply.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import Field

from inspector.errors import BadFrameError, ConfigError, InspectorError
from inspector.frame import Frame
from inspector.inspections.base import (
    Attachment,
    Inspection,
    InspectionContext,
    InspectionParams,
    InspectionResult,
    ModelInfo,
)
from inspector.modelrepo import resolve

TOP_FEATURES = 3


class TabletDefectParams(InspectionParams):
    model: str = Field("tablet-defect-default", description="model name in the model repository")
    version: str | None = Field(None, description="model version (default: the latest)")
    threshold: float | None = Field(None, gt=0, lt=1, description="reject when P(defect) >= this (default: manifest)")
    roi: Literal["auto", "none"] | None = Field(None, description="ROI for the features (default: manifest)")
    max_side: int | None = Field(None, ge=16, description="downscale frames to this longer side (default: manifest)")
    snapshot: bool = Field(True, description="patch models: attach a PNG with the worst patch drawn on rejects")


def _load(models_dir, name: str, version: str | None):
    from inspector.texture.model import load_model

    return load_model(resolve(models_dir, name, version))


class TabletDefect(Inspection):
    name = "tablet_defect"
    Params = TabletDefectParams
    params: TabletDefectParams

    @classmethod
    def validate_static(cls, params: TabletDefectParams, config) -> None:  # type: ignore[override]
        try:
            _load(config.models_path(), params.model, params.version)
        except InspectorError as e:
            raise ConfigError(f"inspection tablet_defect: {e}") from None

    def __init__(self, params: TabletDefectParams, ctx: InspectionContext):
        super().__init__(params, ctx)
        self._model = _load(ctx.models_dir, params.model, params.version)
        from inspector.texture.features import warmup
        from inspector.texture.patches import warmup as warmup_patches

        warmup()  # load the numba kernels now, not on the first frame
        warmup_patches()

    # ---- settings: the params override the manifest ------------------------------------------------
    @property
    def threshold(self) -> float:
        return self.params.threshold if self.params.threshold is not None else self._model.threshold

    @property
    def roi(self) -> str | None:
        if self.params.roi is None:
            return self._model.roi
        return None if self.params.roi == "none" else self.params.roi

    @property
    def max_side(self) -> int | None:
        return self.params.max_side if self.params.max_side is not None else self._model.max_side

    def inspect(self, frame: Frame) -> InspectionResult:
        if self._model.mode == "patches":
            return self._inspect_patches(frame)
        from inspector.texture.describe import describe

        model = self._model
        t0 = time.perf_counter()
        try:
            names, values = describe(frame.gray(), levels=model.levels, roi=self.roi, max_side=self.max_side,
                                     families=model.families)
        except BadFrameError as e:
            return InspectionResult(
                verdict="error",
                stages={"preprocess": time.perf_counter() - t0},
                detail={"error": str(e), "kind": e.kind},
                reason=e.kind,
            )
        t1 = time.perf_counter()
        pred = model.predict(names, values, self.params.threshold)
        top = self._top_features(names, values)
        t2 = time.perf_counter()
        return InspectionResult(
            verdict="reject" if pred.reject else "pass",
            reason=_defect_reason(pred.reject, pred.detail),
            scores=pred.scores,
            stages={"preprocess": t1 - t0, "infer": t2 - t1},
            detail={**pred.detail, "mode": model.mode, "top_features": top},
        )

    def _inspect_patches(self, frame: Frame) -> InspectionResult:
        """Patch model: score every tablet patch, the worst one (or the whole surface) decides."""
        from inspector.texture.describe import limit_size
        from inspector.texture.patches import patch_grid, snapshot_png

        model = self._model
        t0 = time.perf_counter()
        try:
            gray = limit_size(frame.gray(), self.max_side)
            grid = patch_grid(gray, model.tiles)
        except BadFrameError as e:
            return InspectionResult(verdict="error", stages={"preprocess": time.perf_counter() - t0},
                                    detail={"error": str(e), "kind": e.kind}, reason=e.kind)
        t1 = time.perf_counter()
        pred = model.predict_grid(grid, self.params.threshold)
        t2 = time.perf_counter()
        verdict = "reject" if pred.reject else "pass"
        detail = {**pred.detail, "mode": "patches"}
        attachments = []
        stages = {"preprocess": t1 - t0, "infer": t2 - t1}
        if verdict == "reject" and self.params.snapshot:
            wp = detail["worst_patch"]
            png = snapshot_png(gray, (wp["x"], wp["y"], wp["w"], wp["h"]))
            m = frame.meta
            attachments.append(Attachment(kind="snapshot", header={
                "frame_id": m.frame_id, "camera": m.camera, "run_id": m.run_id, "verdict": verdict, "format": "png",
                "worst_patch": wp, "width": int(gray.shape[1]), "height": int(gray.shape[0]),
                "model": self.model_info().to_dict()}, payload=png))
            stages["snapshot"] = time.perf_counter() - t2
        return InspectionResult(verdict=verdict, scores=pred.scores, stages=stages, detail=detail,
                                attachments=attachments, reason=_defect_reason(pred.reject, detail))

    def _top_features(self, names: tuple[str, ...], values: np.ndarray) -> list[list]:
        """The model's features furthest from the training mean: [name, value, z-score], |z| descending."""
        model = self._model
        x = values[model.columns(names)]
        scaler = model.pipeline.named_steps.get("scale") if hasattr(model.pipeline, "named_steps") else None
        if scaler is None:
            return [[n, float(v), None] for n, v in zip(model.features[:TOP_FEATURES], x[:TOP_FEATURES])]
        z = scaler.transform(x[None, :])[0]
        order = np.argsort(-np.abs(z))[:TOP_FEATURES]
        return [[model.features[i], round(float(x[i]), 6), round(float(z[i]), 3)] for i in order]

    def model_info(self) -> ModelInfo:
        m = self._model.manifest
        return ModelInfo(name=m.name, version=m.version, sha256=m.sha256)

    def reload(self, version: str | None = None) -> ModelInfo:
        """Load and verify another version first; the current model stays in use if that fails."""
        new = _load(self.ctx.models_dir, self.params.model, version)
        self._model = new
        return self.model_info()


def _defect_reason(reject: bool, detail: dict) -> str | None:
    """The audited reason of a reject: the defect type when the model names one, else ``defect``."""
    if not reject:
        return None
    kind = detail.get("defect_type")
    return f"defect:{kind}" if kind else "defect"
