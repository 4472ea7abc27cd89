"""Simple particle measurements on an SEM frame: Otsu threshold + connected components (cv2).

Used to check that generated images really carry the intended factors (size ordering between
grades, elongation between MCC grades) and as a cheap baseline for lot-to-lot drift work. Touching
particles merge into one component — the statistic is of the image, not of the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspector.synth.errors import SynthError

__all__ = ["ParticleStats", "measure_particles"]


@dataclass(frozen=True)
class ParticleStats:
    areas: np.ndarray  # component areas (px), float64
    elongations: np.ndarray  # √(λ₁/λ₂) of each component's second moments (≥ 1)
    foreground: float  # fraction of the frame above the Otsu threshold
    threshold: float

    @property
    def count(self) -> int:
        return int(self.areas.size)


def measure_particles(img: np.ndarray, *, min_area: int = 100, smooth_sigma: float = 2.0, crop_rows: int | None = None) -> ParticleStats:
    """Segment bright particles on the dark tape (Otsu, holes filled) and measure each connected component.

    ``crop_rows``: keep only the first rows (e.g. 960 to drop a 64-row SEM data bar).
    """
    if not isinstance(img, np.ndarray) or img.ndim != 2 or img.dtype != np.uint8:
        raise SynthError("measure_particles needs a 2-D uint8 grey image")
    if crop_rows is not None:
        img = img[:crop_rows]
    blur = cv2.GaussianBlur(img, (0, 0), smooth_sigma) if smooth_sigma > 0 else img
    thr, mask = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # fill holes: SE particles are bright at their rims, and a flat top may fall below the threshold
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(mask, contours, -1, 255, thickness=cv2.FILLED)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    keep = np.flatnonzero(areas >= min_area) + 1
    elong = np.empty(keep.size)
    for j, k in enumerate(keep):
        x, y, w, h = stats[k, :4]
        m = cv2.moments((labels[y : y + h, x : x + w] == k).astype(np.uint8), binaryImage=True)
        c20, c02, c11 = m["mu20"] / m["m00"], m["mu02"] / m["m00"], m["mu11"] / m["m00"]
        tr, det = c20 + c02, c20 * c02 - c11 * c11
        disc = np.sqrt(max(tr * tr / 4 - det, 0.0))
        elong[j] = np.sqrt((tr / 2 + disc) / max(tr / 2 - disc, 1e-9))
    return ParticleStats(areas[keep - 1], elong, float(np.count_nonzero(mask)) / mask.size, float(thr))
