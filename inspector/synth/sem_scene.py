"""Particle populations of an SEM scene: sampling (sizes, shapes, positions) and drawing into maps.

The scene is two float32 maps over the frame: a height map (pixels) and a material map
(secondary-electron yield). Particles are drawn in painter's order, each resting on what lies under
it, so later particles occlude earlier ones and touching particles form agglomerates.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspector.synth.rng import smooth_noise
from inspector.synth.sem_shapes import outline, polygon_stats, profile, rotate
from inspector.synth.sem_spec import SemClassSpec

__all__ = ["Particle", "sample_particles", "draw_particles", "MAX_PARTICLES"]

MAX_PARTICLES = 700
#: probability that a particle is placed touching an earlier one (agglomerates, contacts)
P_TOUCH = 0.25
#: width (px) of the bright SE edge band inside a particle's outline
EDGE_BAND_PX = 2.5


@dataclass(frozen=True)
class Particle:
    family: int
    shape: str
    d_um: float
    d_px: float
    aspect: float
    angle: float
    cx: float
    cy: float
    outline: np.ndarray  # (N, 2) float32 in frame coordinates
    area_px: float
    elongation: float


def sample_particles(
    rng: np.random.Generator, spec: SemClassSpec, width: int, height: int, um_px: float
) -> list[Particle]:
    """Draw particles until their summed area reaches ``spec.coverage`` of the (padded) frame."""
    fams = spec.families
    weights = np.array([f.weight for f in fams], np.float64)
    weights /= weights.sum()
    med_px = min(f.d_median_um for f in fams) / um_px
    pad = min(0.3 * med_px, 40.0)
    target = spec.coverage * (width + 2 * pad) * (height + 2 * pad)
    d_med = np.array([f.d_median_um for f in fams])
    d_sig = np.log([f.d_gsd for f in fams])
    a_med = np.array([f.aspect_median for f in fams])
    a_sig = np.log([f.aspect_gsd for f in fams])
    out: list[Particle] = []
    total = 0.0
    block = 32
    while total < target and len(out) < MAX_PARTICLES:
        # scalar draws in blocks (fewer Python-level RNG calls), outlines per particle
        fi_b = rng.choice(len(fams), size=block, p=weights)
        z = rng.standard_normal((block, 2))
        u = rng.random((block, 6))
        for k in range(block):
            if total >= target or len(out) >= MAX_PARTICLES:
                break
            fi = int(fi_b[k])
            f = fams[fi]
            d_um = float(np.clip(d_med[fi] * np.exp(z[k, 0] * d_sig[fi]), spec.d_min_um, spec.d_max_um))
            aspect = float(max(1.0, a_med[fi] * np.exp(z[k, 1] * a_sig[fi])))
            d_px = d_um / um_px
            angle = float(u[k, 0] * np.pi)
            if out and u[k, 1] < P_TOUCH:
                other = out[int(u[k, 2] * len(out))]
                phi = u[k, 3] * 2 * np.pi
                dist = 0.5 * (other.d_px + d_px) * (0.55 + 0.4 * u[k, 4])
                cx = float(np.clip(other.cx + dist * np.cos(phi), -pad, width + pad))
                cy = float(np.clip(other.cy + dist * np.sin(phi), -pad, height + pad))
            else:
                cx = float(-pad + u[k, 3] * (width + 2 * pad))
                cy = float(-pad + u[k, 5] * (height + 2 * pad))
            pts = rotate(outline(f.shape, rng, d_px, aspect), angle) + np.array([cx, cy], np.float32)
            area, elong = polygon_stats(pts)
            out.append(Particle(fi, f.shape, d_um, d_px, aspect, angle, cx, cy, pts, area, elong))
            total += area
    return out


def draw_particles(
    rng: np.random.Generator,
    spec: SemClassSpec,
    particles: list[Particle],
    height_map: np.ndarray,
    material: np.ndarray,
    rough: np.ndarray,
    covered: np.ndarray,
    edge: np.ndarray,
) -> np.ndarray:
    """Draw ``particles`` into the maps in place; returns the per-particle visible pixel counts.

    ``rough`` is a unit-variance texture field used for surface roughness; ``covered`` (uint8) is
    set to 1 wherever a particle is drawn; ``edge`` (float32) receives each visible particle's
    boundary band ``exp(−d / EDGE_BAND_PX)`` — where secondary electrons escape through the side wall.
    """
    h_img, w_img = height_map.shape
    needs_pits = any(p.shape == "rugged_sphere" for p in particles)
    lumps = smooth_noise(rng, h_img, w_img, 28.0) if needs_pits else None
    pits = smooth_noise(rng, h_img, w_img, 4.0) if needs_pits else None
    visible = np.zeros(len(particles), np.int64)
    for i, p in enumerate(particles):
        fam = spec.families[p.family]
        bx, by, bw, bh = cv2.boundingRect(p.outline)
        x0, y0, x1, y1 = bx - 2, by - 2, bx + bw + 3, by + bh + 3
        vx0, vy0, vx1, vy1 = max(x0, 0), max(y0, 0), min(x1, w_img), min(y1, h_img)
        if vx0 >= vx1 or vy0 >= vy1:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        local = np.round((p.outline - np.array([x0, y0], np.float32)) * 16).astype(np.int32)
        cv2.fillPoly(mask, [local], 255, lineType=cv2.LINE_8, shift=4)
        dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
        relief = profile(p.shape, dist, fam.height)
        r_in = float(dist.max())
        # visible window of the patch
        sy, sx = slice(vy0 - y0, vy1 - y0), slice(vx0 - x0, vx1 - x0)
        fy, fx = slice(vy0, vy1), slice(vx0, vx1)
        m = mask[sy, sx] > 0
        if not cv2.countNonZero(mask[sy, sx]):
            continue
        rel = relief[sy, sx]  # a view into this particle's own relief: safe to edit in place
        d_loc = dist[sy, sx]
        # surface roughness, faded in over the outermost 3 px so outlines stay clean
        t = np.minimum(d_loc, np.float32(3.0))
        t *= np.float32(fam.roughness * min(r_in, 25.0) / 3.0)
        t *= rough[fy, fx]
        rel += t
        if p.shape == "fibre":
            # striations along the fibre: contours of the distance map run parallel to its edges
            period = float(rng.uniform(4.0, 7.0))
            rel += np.float32(min(0.04 * r_in, 0.8)) * np.sin(d_loc * np.float32(2 * np.pi / period))
        elif p.shape == "rugged_sphere" and lumps is not None and pits is not None:
            rel += np.float32(0.06 * r_in) * lumps[fy, fx]
            rel -= np.float32(0.12 * r_in) * np.clip(pits[fy, fx] - np.float32(1.0), 0, None)
        elif p.shape == "starch" and rng.random() < 0.4:
            # hilum dimple / pressure facet on some starch granules
            rel -= np.float32(0.25 * r_in) * cv2.exp((d_loc - np.float32(r_in)) ** 2 * np.float32(-1.0 / (2 * (0.25 * r_in) ** 2 + 1e-6)))
        hv = height_map[fy, fx]
        msub = mask[sy, sx]
        base = np.float32(0.6 * cv2.mean(hv, mask=msub)[0])
        rel += base
        np.copyto(hv, rel, where=m)
        np.copyto(material[fy, fx], np.float32(spec.yield_ * (1.0 + rng.normal(0.0, 0.05))), where=m)
        np.copyto(covered[fy, fx], np.uint8(1), where=m)
        np.copyto(edge[fy, fx], cv2.exp(d_loc * np.float32(-1.0 / EDGE_BAND_PX)), where=m)
        visible[i] = cv2.countNonZero(msub)
    return visible
