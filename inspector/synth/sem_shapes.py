"""Particle outlines and relief profiles for the SEM scenes.

An outline is a closed polygon ``(N, 2)`` float32 centred on the origin with its long axis on x; its
area equals the requested area-equivalent diameter ``d`` (π d²/4) up to a few percent. A profile maps
the distance-to-boundary map of the filled outline to a height map (pixels), which the shader turns
into secondary-electron contrast.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["outline", "profile", "rotate", "polygon_stats"]


def _scale_to_area(pts: np.ndarray, d: float) -> np.ndarray:
    area = float(cv2.contourArea(pts.astype(np.float32)))
    if area > 0:
        pts = pts * np.sqrt(np.pi * d * d / 4.0 / area)
    return pts


def _radial(rng: np.random.Generator, n: int, harmonics: range, amp: float, jitter: float) -> np.ndarray:
    """Star-shaped outline r(φ) = 1 + Σ a_k cos(kφ + p_k) + per-vertex jitter, unit scale."""
    phi = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    k = np.asarray(harmonics, np.float64)
    z = rng.standard_normal(k.size + n)
    ph = rng.random(k.size) * (2 * np.pi)
    r = 1.0 + (z[: k.size, None] * (amp / np.sqrt(k))[:, None] * np.cos(k[:, None] * phi[None, :] + ph[:, None])).sum(axis=0)
    r += jitter * z[k.size :]
    r = np.clip(r, 0.55, 1.6)
    return np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)


def _chaikin(pts: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Corner cutting: rounds the corners of a closed polygon."""
    for _ in range(iterations):
        nxt = np.concatenate([pts[1:], pts[:1]])
        q = 0.75 * pts + 0.25 * nxt
        r = 0.25 * pts + 0.75 * nxt
        pts = np.stack([q, r], axis=1).reshape(-1, 2)
    return pts


def _fibre(rng: np.random.Generator, d: float, aspect: float) -> np.ndarray:
    area = np.pi * d * d / 4.0
    width = np.sqrt(area / aspect)
    length = aspect * width
    n = int(np.clip(length / max(width, 1.0) * 1.5, 6, 28))
    t = np.linspace(0.0, 1.0, n)
    bend = rng.normal(0.0, 0.10, n).cumsum()  # heading random walk: gently curved, kinked fibres
    bend -= bend.mean()
    heading = bend
    step = length / (n - 1)
    xy = np.stack([np.cos(heading), np.sin(heading)], axis=1) * step
    xy = np.vstack([[0.0, 0.0], np.cumsum(xy[:-1], axis=0)])
    xy -= xy.mean(axis=0)
    normal = np.stack([-np.sin(heading), np.cos(heading)], axis=1)
    w = width * (1.0 + rng.normal(0.0, 0.18, n)) * (0.45 + 0.55 * np.sin(np.pi * np.clip(t, 0.04, 0.96)) ** 0.35)
    w = np.clip(w, 0.25 * width, 1.8 * width)
    left = xy + normal * (w[:, None] / 2)
    right = xy - normal * (w[:, None] / 2)
    # ragged, torn ends: one jittered point beyond each end
    tip0 = xy[0] - np.array([np.cos(heading[0]), np.sin(heading[0])]) * width * rng.uniform(0.1, 0.6)
    tip1 = xy[-1] + np.array([np.cos(heading[-1]), np.sin(heading[-1])]) * width * rng.uniform(0.1, 0.6)
    tip0 += normal[0] * width * rng.uniform(-0.4, 0.4)
    tip1 += normal[-1] * width * rng.uniform(-0.4, 0.4)
    return np.vstack([tip0[None], left, tip1[None], right[::-1]])


def _chunk(rng: np.random.Generator, d: float, aspect: float) -> np.ndarray:
    pts = _radial(rng, 28, range(2, 6), 0.10, 0.03)
    pts[:, 0] *= np.sqrt(aspect)
    pts[:, 1] /= np.sqrt(aspect)
    return pts


def _sphere(rng: np.random.Generator, d: float, aspect: float) -> np.ndarray:
    pts = _radial(rng, 48, range(2, 4), 0.01, 0.004)
    pts[:, 0] *= np.sqrt(aspect)
    pts[:, 1] /= np.sqrt(aspect)
    return pts


def _rugged_sphere(rng: np.random.Generator, d: float, aspect: float) -> np.ndarray:
    pts = _radial(rng, 96, range(3, 14), 0.07, 0.018)
    pts[:, 0] *= np.sqrt(aspect)
    pts[:, 1] /= np.sqrt(aspect)
    return pts


def _starch(rng: np.random.Generator, d: float, aspect: float) -> np.ndarray:
    u = rng.random(18)
    n = 5 + int(u[0] * 4)  # 5..8 corners
    z = rng.standard_normal(2 * n)
    phi = np.sort(u[1] * 2 * np.pi + np.arange(n) * (2 * np.pi / n) + 0.18 * z[:n])
    r = 1.0 + 0.06 * z[n:]
    pts = np.empty((n, 2))
    pts[:, 0] = r * np.cos(phi) * np.sqrt(aspect)
    pts[:, 1] = r * np.sin(phi) / np.sqrt(aspect)
    return _chaikin(pts, 1)  # nearly spherical, but with angles


def _lactose(rng: np.random.Generator, d: float, aspect: float) -> np.ndarray:
    """Tomahawk-like α-lactose monohydrate crystal: a wide back, a wedge-shaped front, cut corners."""
    L, W = aspect, 1.0
    t = rng.uniform(0.30, 0.75)  # taper of the front
    e = rng.uniform(0.05, 0.25) * L
    f = rng.uniform(0.15, 0.40) * L
    a = rng.uniform(0.55, 0.95)
    pts = np.array(
        [
            [-L / 2, -W / 2 * a],
            [-L / 2 + e, -W / 2],
            [L / 2 - f, -W / 2 * (0.5 + 0.5 * t)],
            [L / 2, -W / 2 * t * rng.uniform(0.0, 0.6)],
            [L / 2, W / 2 * t * rng.uniform(0.0, 0.6)],
            [L / 2 - f, W / 2 * (0.5 + 0.5 * t)],
            [-L / 2 + e, W / 2],
            [-L / 2, W / 2 * a],
        ]
    )
    pts += rng.normal(0.0, 0.035, pts.shape) * np.array([L, W])
    if rng.random() < 0.5:
        pts[:, 1] *= -1
        pts = pts[::-1]
    return pts


_OUTLINES = {
    "fibre": _fibre,
    "chunk": _chunk,
    "sphere": _sphere,
    "rugged_sphere": _rugged_sphere,
    "starch": _starch,
    "lactose": _lactose,
}


def outline(shape: str, rng: np.random.Generator, d: float, aspect: float) -> np.ndarray:
    """Closed polygon (N, 2) float32 of a particle of ``shape`` with area π d²/4, long axis on x."""
    pts = _OUTLINES[shape](rng, d, max(float(aspect), 1.0))
    return _scale_to_area(np.asarray(pts, np.float64), d).astype(np.float32)


def rotate(pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return (pts @ np.array([[c, s], [-s, c]], np.float32)).astype(np.float32)


def polygon_stats(pts: np.ndarray) -> tuple[float, float]:
    """(area, elongation) of a polygon; elongation = √(λ₁/λ₂) of its second moments (≥ 1)."""
    m = cv2.moments(pts.astype(np.float32))
    a = abs(m["m00"])
    if a < 1e-9:
        return 0.0, 1.0
    c20, c02, c11 = m["mu20"] / a, m["mu02"] / a, m["mu11"] / a
    tr, det = c20 + c02, c20 * c02 - c11 * c11
    disc = np.sqrt(max(tr * tr / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, max(tr / 2 - disc, 1e-12)
    return float(a), float(np.sqrt(l1 / l2))


def profile(shape: str, dist: np.ndarray, height: float) -> np.ndarray:
    """Height map (float32, px) of a particle from its inside distance-to-boundary map.

    Rounded particles get a circular cross-section ``√(d (2R − d))`` (R = inradius): steep at the
    rim, which is where the SE edge effect makes them bright. Lactose crystals get planar facets
    meeting in ridges with a flat top (``min(d, 0.55 R)``): angular, like the real tomahawks.
    """
    r = float(dist.max()) if dist.size else 0.0
    if r <= 0:
        return np.zeros_like(dist)
    if shape == "lactose":
        return (np.minimum(dist, np.float32(0.55 * r)) * np.float32(0.9 * height)).astype(np.float32)
    d = np.minimum(dist, np.float32(r))
    return (np.sqrt(d * (np.float32(2 * r) - d)) * np.float32(height)).astype(np.float32)
