"""The tablet scene model shared by :mod:`inspector.synth.tablets` and its defect painters.

A :class:`Surface` holds float32 maps over the frame — ``height`` (pixels), ``albedo`` (0..1),
``gloss`` (specular weight, 0..1), ``inside`` (tablet coverage, 0..1) — plus the tablet geometry
(centre, radius in pixels) and helpers to sample points on the visible part of the tablet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["Surface", "disk_coverage", "shade"]


@dataclass
class Surface:
    width: int
    height_px: int
    cx: float
    cy: float
    radius: float
    rng: np.random.Generator
    height: np.ndarray = field(init=False)
    albedo: np.ndarray = field(init=False)
    gloss: np.ndarray = field(init=False)
    inside: np.ndarray = field(init=False)
    rr: np.ndarray = field(init=False)  # distance to the tablet centre (px)

    def __post_init__(self) -> None:
        shape = (self.height_px, self.width)
        self.height = np.zeros(shape, np.float32)
        self.albedo = np.zeros(shape, np.float32)
        self.gloss = np.zeros(shape, np.float32)
        ys = np.arange(self.height_px, dtype=np.float32)[:, None] - np.float32(self.cy)
        xs = np.arange(self.width, dtype=np.float32)[None, :] - np.float32(self.cx)
        self.rr = cv2.magnitude(np.broadcast_to(xs, shape).copy(), np.broadcast_to(ys, shape).copy())
        self.inside = disk_coverage(self.rr, self.radius)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height_px, self.width)

    @property
    def scale(self) -> float:
        """Pixels per 'whole-view' pixel: 1 for the whole tablet, ~3 for a close-up."""
        return self.radius / 300.0

    def sample_points(self, n: int, *, max_r: float = 0.97, min_r: float = 0.0) -> np.ndarray:
        """``n`` points (x, y) uniform on the tablet face that lie inside the frame (rejection)."""
        out = np.empty((0, 2))
        for _ in range(50):
            xy = self.rng.uniform([0, 0], [self.width, self.height_px], size=(max(4 * n, 16), 2))
            r = np.hypot(xy[:, 0] - self.cx, xy[:, 1] - self.cy) / self.radius
            out = np.vstack([out, xy[(r < max_r) & (r >= min_r)]])
            if len(out) >= n:
                break
        if len(out) < n:  # frame barely overlaps the tablet: fall back to the centre
            out = np.vstack([out, np.tile([[self.cx, self.cy]], (n - len(out), 1))])
        return out[:n]

    def rim_angle_in_view(self) -> float:
        """Angle (rad) of the rim point nearest to the frame centre: where an edge defect is seen."""
        return float(np.arctan2(self.height_px / 2 - self.cy, self.width / 2 - self.cx))


def disk_coverage(rr: np.ndarray, radius: float) -> np.ndarray:
    """Anti-aliased coverage of a disk of ``radius`` given the distance map (float32 0..1)."""
    cov = np.float32(radius + 0.5) - rr
    np.clip(cov, 0.0, 1.0, out=cov)
    return cov


def shade(s: Surface, light_dir: tuple[float, float, float], background: np.ndarray) -> np.ndarray:
    """Reflected-light microscope rendering (float32 0..~1.2).

    Lambertian term with a near-axial light plus a Blinn-Phong specular lobe weighted by ``gloss``;
    the tablet is composited over ``background`` by its anti-aliased coverage.
    """
    gx = cv2.Sobel(s.height, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(s.height, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    lx, ly, lz = light_dir
    norm = np.float32(1.0) / cv2.sqrt(gx * gx + gy * gy + np.float32(1.0))
    ndotl = (np.float32(-lx) * gx + np.float32(-ly) * gy + np.float32(lz)) * norm
    np.clip(ndotl, 0.0, 1.0, out=ndotl)
    # half vector between light and the (vertical) viewer
    hx, hy, hz = lx, ly, lz + 1.0
    hn = np.sqrt(hx * hx + hy * hy + hz * hz)
    ndoth = (np.float32(-hx / hn) * gx + np.float32(-hy / hn) * gy + np.float32(hz / hn)) * norm
    np.clip(ndoth, 0.0, 1.0, out=ndoth)
    spec = ndoth**40
    img = s.albedo * (np.float32(0.25) + np.float32(0.75) * ndotl) + s.gloss * spec * np.float32(0.9)
    return img * s.inside + background * (np.float32(1.0) - s.inside)
