"""Synthetic secondary-electron (SE) images of the ten seed-000 excipients.

``render_sem(cls, seed)`` → ``(uint8 H×W image, params)``. A scene is a height map and a material
(SE yield) map (see :mod:`inspector.synth.sem_scene`), shaded the way SE images look:

* yield rises with the local surface tilt (∝ 1 − cos θ, saturating): particle rims are bright
  — the edge effect — while flat tops are mid-grey;
* convex ridges and thin edges get an extra boost (height minus its local mean);
* points lower than their surroundings (the tape beside a particle, crevices) are darker, as fewer
  secondary electrons escape to the detector;
* a weak directional term for the detector position;
* carbon-tape background: low-frequency contrast variation plus fine grain;
* defocus (Gaussian, random σ), Poisson-like shot noise and faint scan-line noise.

Same ``(cls, seed, lot, width, height, data_bar)`` → byte-identical image.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from inspector.synth.databar import DATA_BAR_ROWS, data_bar as _data_bar
from inspector.synth.errors import SynthError
from inspector.synth.rng import check_seed, fast_normal, make_rng, smooth_noise
from inspector.synth.sem_scene import draw_particles, sample_particles
from inspector.synth.sem_spec import SEM_CLASSES, SEM_SPECS, class_slug, lot_spec, resolve_sem_class, um_per_px

__all__ = ["SEM_CLASSES", "class_slug", "render_sem", "sem_class_info"]

#: mean SE yield of the bare carbon tape
TAPE_YIELD = 0.30
#: extra yield in the boundary band of a particle, relative to its material yield
EDGE_GAIN = 0.45
MIN_SIZE = 64
MAX_SIZE = 8192


def sem_class_info(cls: str | int) -> dict[str, Any]:
    """Static facts of a class: name, slug, index, magnification, µm/px, particle families."""
    idx = resolve_sem_class(cls)
    spec = SEM_SPECS[idx]
    return {
        "class": spec.name,
        "slug": class_slug(spec.name),
        "class_index": idx,
        "magnification": spec.magnification,
        "um_per_px": um_per_px(spec.magnification),
        "families": [f.__dict__.copy() for f in spec.families],
    }


def _background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Carbon tape: (height map, material map, texture field), float32.

    The tape's relief is fine grain plus medium lumps; the texture field (unit-ish variance, mostly
    the medium scale) is reused, scaled per class, as the particles' surface roughness.
    """
    low = smooth_noise(rng, h, w, 160.0)
    fine = smooth_noise(rng, h, w, 2.5)
    medium = smooth_noise(rng, h, w, 10.0)
    height_map = cv2.addWeighted(fine, 0.84, medium, 0.72, 0.0)  # tape grain
    texture = cv2.addWeighted(fine, 0.3, medium, 0.9, 0.0)  # particle roughness: mostly medium scale
    material = low
    material *= np.float32(0.10 * TAPE_YIELD)
    material += np.float32(TAPE_YIELD)
    return height_map, material, texture


def _shade(height_map: np.ndarray, material: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SE yield image (float32, ~0..2) from the height and material maps."""
    h, w = height_map.shape
    gx = cv2.Sobel(height_map, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(height_map, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    det = rng.uniform(0, 2 * np.pi)
    directional = cv2.addWeighted(gx, float(np.cos(det)), gy, float(np.sin(det)), 0.0)
    np.clip(directional, -1.0, 1.0, out=directional)
    # sin²θ of the surface tilt: 0 on flats, → 1 on walls (the SE edge effect)
    s2 = cv2.magnitude(gx, gy)
    np.multiply(s2, s2, out=s2)
    tilt = s2 / (s2 + np.float32(1.0))
    # convex ridges and thin edges: height above its 5×5 mean
    convex = height_map - cv2.boxFilter(height_map, -1, (5, 5))
    np.clip(convex, 0.0, 3.0, out=convex)
    # how far a point lies below its neighbourhood (tape beside particles, crevices): darker
    small = cv2.resize(height_map, (max(w // 8, 1), max(h // 8, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 3.0)
    depth = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    depth -= height_map
    depth *= np.float32(-1.0 / 70.0)
    np.clip(depth, -0.35, 0.0, out=depth)
    depth += np.float32(1.0)  # 1 − clipped depth
    y = tilt
    y *= np.float32(1.5)
    y += np.float32(0.62)
    y += np.float32(0.3) * directional
    y *= material
    y += np.float32(0.08) * convex
    y *= depth
    return y


def render_sem(
    cls: str,
    seed: int,
    *,
    lot: int = 0,
    size_factor: float | None = None,
    aspect_factor: float | None = None,
    width: int = 1280,
    height: int = 960,
    data_bar: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One SE frame of excipient ``cls`` (display name, slug or index).

    Returns ``(image, params)``: a ``uint8`` array of shape ``(height, width)`` — or
    ``(height + 64, width)`` with ``data_bar=True`` — and the generating parameters, including the
    particle list statistics (``areas_px``, ``elongations``, ``diameters_um``, ``shapes``,
    ``centers_px``; in drawing order, later particles on top),
    ``magnification`` and ``um_per_px``.
    """
    idx = resolve_sem_class(cls)
    seed = check_seed(seed)
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not MIN_SIZE <= int(v) <= MAX_SIZE:
            raise SynthError(f"{name} must be an integer in {MIN_SIZE}..{MAX_SIZE}, got {v!r}")
    width, height = int(width), int(height)
    spec, lot_factors = lot_spec(idx, lot, size_factor, aspect_factor)
    rng = make_rng(seed, idx, int(lot))
    upx = um_per_px(spec.magnification)

    height_map, material, texture = _background(rng, height, width)
    particles = sample_particles(rng, spec, width, height, upx)
    covered = np.zeros((height, width), np.uint8)
    edge = np.zeros((height, width), np.float32)
    visible = draw_particles(rng, spec, particles, height_map, material, texture, covered, edge)
    y = _shade(height_map, material, rng)
    edge *= material
    y += np.float32(EDGE_GAIN) * edge

    defocus = float(rng.uniform(0.6, 1.7))
    y = cv2.GaussianBlur(y, (0, 0), defocus)
    gain = float(rng.uniform(150.0, 175.0))
    offset = float(rng.uniform(-6.0, 6.0))
    grey = y * np.float32(gain) + np.float32(offset)
    np.maximum(grey, 0.0, out=grey)
    electrons = float(rng.uniform(250.0, 600.0))  # detected electrons per pixel at full scale
    noise = fast_normal(rng, (height, width))
    noise *= cv2.sqrt(grey * np.float32(255.0 / electrons))
    grey += noise
    grey += rng.normal(0.0, 0.8, (height, 1)).astype(np.float32)  # scan-line jitter
    np.maximum(grey, 0.0, out=grey)
    img = cv2.convertScaleAbs(grey)  # rounds and saturates to 0..255

    date = f"{int(rng.integers(2019, 2024))}/{int(rng.integers(1, 13)):02d}/{int(rng.integers(1, 29)):02d}"
    if data_bar:
        img = np.vstack([img, _data_bar(width, magnification=spec.magnification, um_per_px=upx, date=date)])

    shown = visible > 0
    areas = [round(p.area_px, 1) for p, s in zip(particles, shown) if s]
    elong = [round(p.elongation, 3) for p, s in zip(particles, shown) if s]
    params: dict[str, Any] = {
        "kind": "sem",
        "class": spec.name,
        "slug": class_slug(spec.name),
        "class_index": idx,
        "seed": seed,
        "lot": int(lot),
        "lot_size_factor": round(lot_factors["size_factor"], 5),
        "lot_aspect_factor": round(lot_factors["aspect_factor"], 5),
        "magnification": spec.magnification,
        "um_per_px": upx,
        "width": width,
        "height": height,
        "data_bar": bool(data_bar),
        "data_bar_rows": DATA_BAR_ROWS if data_bar else 0,
        "n_particles": len(areas),
        "mean_area_px": round(float(np.mean(areas)), 2) if areas else 0.0,
        "mean_elongation": round(float(np.mean(elong)), 4) if elong else 0.0,
        "areas_px": areas,
        "elongations": elong,
        "diameters_um": [round(p.d_um, 2) for p, s in zip(particles, shown) if s],
        "shapes": [p.shape for p, s in zip(particles, shown) if s],
        "centers_px": [[round(p.cx, 1), round(p.cy, 1)] for p, s in zip(particles, shown) if s],
        "coverage": round(float(np.count_nonzero(covered) / covered.size), 4),
        "defocus_sigma_px": round(defocus, 4),
        "electrons_per_px": round(electrons, 2),
        "gain": round(gain, 3),
        "offset": round(offset, 3),
        "date": date,
    }
    return img, params
