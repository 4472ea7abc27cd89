"""Image-quality gate: a line rejects unusable frames before classifying them.

* focus: variance of the Laplacian (Pech-Pacheco et al. 2000) of the grey frame, optionally on a
  downscaled copy so the threshold does not depend on sensor size;
* exposure: fraction of pixels at or below the dark level (under-exposed) and at or above the
  saturation level (over-exposed, clipped highlights), on the sample's full range (8 or 16 bit).

When ``gate`` is on, inspections listed after this one are not run on a rejected frame (the daemon
publishes them as ``reject`` with reason ``image_quality``): a classifier must never vote on a
frame it cannot see.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from pydantic import Field, model_validator

from inspector.frame import Frame
from inspector.inspections.base import Inspection, InspectionParams, InspectionResult


class QualityParams(InspectionParams):
    min_focus: float = Field(20.0, ge=0, description="minimum variance of the Laplacian (8-bit scale)")
    max_dark_fraction: float = Field(0.5, ge=0, le=1, description="max fraction of pixels at/below dark_level")
    max_saturated_fraction: float = Field(0.02, ge=0, le=1, description="max fraction of clipped pixels")
    dark_level: float = Field(0.02, ge=0, lt=1, description="dark threshold, fraction of full scale")
    saturated_level: float = Field(0.99, gt=0, le=1, description="saturation threshold, fraction of full scale")
    focus_max_side: int = Field(1024, ge=64, description="downscale so the longest side is at most this")
    gate: bool = True

    @model_validator(mode="after")
    def _levels(self) -> QualityParams:
        if self.dark_level >= self.saturated_level:
            raise ValueError("dark_level must be below saturated_level")
        return self


class QualityGate(Inspection):
    name = "quality"
    Params = QualityParams
    params: QualityParams

    def inspect(self, frame: Frame) -> InspectionResult:
        t0 = time.perf_counter()
        gray = frame.gray()
        full = 65535.0 if gray.dtype == np.uint16 else 255.0
        h, w = gray.shape
        scale = min(1.0, self.params.focus_max_side / max(h, w))
        small = gray if scale >= 1.0 else cv2.resize(gray, (max(1, int(w * scale)), max(1, int(h * scale))),
                                                     interpolation=cv2.INTER_AREA)
        f32 = small.astype(np.float32) * np.float32(255.0 / full)  # focus on the 8-bit scale for any depth
        t1 = time.perf_counter()
        lap = cv2.Laplacian(f32, cv2.CV_32F, ksize=3)
        focus = float(lap.var())
        n = gray.size
        dark = float(np.count_nonzero(gray <= self.params.dark_level * full)) / n
        sat = float(np.count_nonzero(gray >= self.params.saturated_level * full)) / n
        reasons = []
        if focus < self.params.min_focus:
            reasons.append("out_of_focus")
        if dark > self.params.max_dark_fraction:
            reasons.append("under_exposed")
        if sat > self.params.max_saturated_fraction:
            reasons.append("over_exposed")
        t2 = time.perf_counter()
        return InspectionResult(
            verdict="reject" if reasons else "pass",
            scores={"focus": round(focus, 3), "dark_fraction": round(dark, 5), "saturated_fraction": round(sat, 5)},
            stages={"preprocess": t1 - t0, "infer": t2 - t1},
            detail={"reasons": reasons, "gate": self.params.gate},
            reason=reasons or None,
        )
