"""Defect painters for tablet surfaces (seed 001's three environmental causes plus line defects).

Each painter edits a :class:`~inspector.synth.tablet_surface.Surface` in place at a graded severity
1..3 and returns the parameters it drew, for the dataset's ground-truth table:

* ``moisture`` (liquid water, W1–W3: 1–3 days): swollen, glossy spots and pitting;
* ``humidity`` (open air, A3–A1: 1–3 days): a slowly roughened, mottled surface;
* ``temperature`` (5 min at 200/240/280 °C, T1–T3): darkening/discolouration, heat cracks, blisters;
* ``chip``: material broken off the edge (a conchoidal notch with a fracture surface);
* ``crack``: mechanical cracks running in from the edge, branching with severity.
"""

from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np

from inspector.synth.rng import smooth_noise
from inspector.synth.tablet_surface import Surface

__all__ = ["PAINTERS", "soft_disks", "draw_cracks"]


def soft_disks(shape: tuple[int, int], pts: np.ndarray, radii: np.ndarray, down: int = 4) -> np.ndarray:
    """Smooth unit bumps (float32 0..1) of the given radii, drawn at 1/``down`` resolution."""
    h, w = shape
    sh, sw = max(h // down, 1), max(w // down, 1)
    m = np.zeros((sh, sw), np.float32)
    for (x, y), r in zip(pts, radii):
        cv2.circle(m, (int(round(x / down * 16)), int(round(y / down * 16))), max(int(round(r / down * 16)), 16), 1.0, -1, cv2.LINE_AA, 4)
    sigma = max(float(np.median(radii)) / down * 0.45, 0.8)
    m = cv2.GaussianBlur(m, (0, 0), sigma)
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)


def _walk(rng: np.random.Generator, start: np.ndarray, heading: float, length: float, step: float, wiggle: float) -> np.ndarray:
    n = max(int(length / step), 2)
    hd = heading + np.cumsum(rng.normal(0.0, wiggle, n))
    d = np.stack([np.cos(hd), np.sin(hd)], axis=1) * step
    return np.vstack([start[None], start[None] + np.cumsum(d, axis=0)])


def draw_cracks(
    s: Surface, starts: np.ndarray, headings: np.ndarray, lengths: np.ndarray, width: float, *,
    wiggle: float, branch_p: float,
) -> tuple[np.ndarray, int]:
    """Rasterise crack polylines (random walks, optional branches) → (float32 mask 0..1, segment count)."""
    mask = np.zeros(s.shape, np.uint8)
    step = max(4.0 * s.scale, 3.0)
    count = 0
    todo = [(np.asarray(p, float), float(h), float(L), width) for p, h, L in zip(starts, headings, lengths)]
    while todo and count < 64:
        p, hd, L, wd = todo.pop()
        line = _walk(s.rng, p, hd, L, step, wiggle)
        thick = max(int(round(wd)), 1)
        cv2.polylines(mask, [np.round(line * 4).astype(np.int32)], False, 255, thick, cv2.LINE_AA, 2)
        count += 1
        if s.rng.random() < branch_p and L > 6 * step:
            k = int(s.rng.integers(len(line) // 4, 3 * len(line) // 4))
            todo.append((line[k], hd + s.rng.choice([-1, 1]) * s.rng.uniform(0.4, 1.0), L * s.rng.uniform(0.3, 0.6), wd * 0.7))
    return mask.astype(np.float32) * np.float32(1.0 / 255.0), count


def _crack_into(s: Surface, mask: np.ndarray, depth: float, darkness: float) -> None:
    groove = cv2.GaussianBlur(mask, (0, 0), max(0.8 * s.scale, 0.7))
    s.height -= np.float32(depth) * groove
    s.albedo *= np.float32(1.0) - np.float32(darkness) * mask


def paint_moisture(s: Surface, sev: int) -> dict[str, Any]:
    rng = s.rng
    n_spots = int(rng.integers(2, 4)) + 2 * sev
    pts = s.sample_points(n_spots, max_r=0.9)
    radii = rng.uniform(0.05, 0.11, n_spots) * (0.7 + 0.25 * sev) * s.radius
    swell = soft_disks(s.shape, pts, radii)
    s.height += np.float32(6.0 * s.scale * (0.6 + 0.3 * sev)) * swell  # swollen
    s.gloss += np.float32(0.55 + 0.15 * sev) * swell  # wet, glossy
    s.albedo *= np.float32(1.0) - np.float32(0.10 + 0.04 * sev) * swell
    # smoother (dissolved) surface inside the spots: pull relief toward its local mean
    smooth = cv2.blur(s.height, (7, 7))
    s.height += (smooth - s.height) * (np.float32(0.7) * swell)
    n_pits = int(25 * sev * rng.uniform(0.8, 1.2))
    pit_pts = np.vstack([s.sample_points(n_pits // 2, max_r=0.95),
                         pts[rng.integers(0, n_spots, n_pits - n_pits // 2)] + rng.normal(0, 1, (n_pits - n_pits // 2, 2)) * radii.mean()])
    pit = np.zeros(s.shape, np.float32)
    pr = rng.uniform(1.2, 2.5 + sev, len(pit_pts)) * s.scale
    for (x, y), r in zip(pit_pts, pr):
        cv2.circle(pit, (int(x * 4), int(y * 4)), max(int(r * 4), 4), 1.0, -1, cv2.LINE_AA, 2)
    pit = cv2.GaussianBlur(pit, (0, 0), 0.8)
    s.height -= np.float32(3.0 * s.scale) * pit
    s.albedo *= np.float32(1.0) - np.float32(0.45) * pit
    return {"days_wet": sev, "seed001_set": f"W{sev}", "spots": n_spots, "pits": int(len(pit_pts))}


def paint_humidity(s: Surface, sev: int) -> dict[str, Any]:
    rng = s.rng
    h, w = s.shape
    mottle = smooth_noise(rng, h, w, 38.0 * s.scale) * np.float32(0.7) + smooth_noise(rng, h, w, 12.0 * s.scale) * np.float32(0.5)
    amp = 0.035 * sev
    s.albedo *= np.float32(1.0) + np.float32(amp) * mottle - np.float32(0.015 * sev)
    rough = smooth_noise(rng, h, w, 2.0 * s.scale)
    s.height += np.float32(0.35 * sev * s.scale) * rough
    days = sev  # severity 1 = A3 (1 day) … 3 = A1 (3 days)
    return {"days_open_air": days, "seed001_set": f"A{4 - sev}", "mottle_amplitude": round(amp, 4)}


def paint_temperature(s: Surface, sev: int) -> dict[str, Any]:
    rng = s.rng
    h, w = s.shape
    temp_c = {1: 200, 2: 240, 3: 280}[sev]
    # browning: darker overall and toward the edge, patchy
    patch = smooth_noise(rng, h, w, 60.0 * s.scale)
    edge = np.clip((s.rr / np.float32(s.radius) - np.float32(0.55)) * np.float32(2.2), 0.0, 1.0)
    dark = np.float32(0.10 * sev) * (np.float32(0.75) + np.float32(0.25) * patch) + np.float32(0.08 * sev) * edge
    s.albedo *= np.float32(1.0) - np.clip(dark, 0.0, 0.6)
    out: dict[str, Any] = {"temperature_c": temp_c, "seed001_set": f"T{sev}", "darkening": round(0.1 * sev, 3)}
    n_cracks = 0
    if sev >= 2:
        n = int(rng.integers(4, 8)) * (sev - 1)
        starts = s.sample_points(n, max_r=0.9)
        mask, n_cracks = draw_cracks(
            s, starts, rng.uniform(0, 2 * np.pi, n), rng.uniform(0.06, 0.16, n) * s.radius,
            max(1.0, 0.8 * s.scale), wiggle=0.35, branch_p=0.5,
        )
        _crack_into(s, mask, 2.0 * s.scale, 0.55)
    out["heat_cracks"] = n_cracks
    n_blisters = 0
    if sev >= 2:
        n_blisters = int(rng.integers(3, 7)) * (sev - 1) ** 2
        pts = s.sample_points(n_blisters, max_r=0.88)
        radii = rng.uniform(0.015, 0.035, n_blisters) * s.radius
        bl = soft_disks(s.shape, pts, radii, down=2)
        s.height += np.float32(5.0 * s.scale) * bl
        s.gloss += np.float32(0.35) * bl
    out["blisters"] = n_blisters
    return out


def paint_chip(s: Surface, sev: int) -> dict[str, Any]:
    rng = s.rng
    ang = s.rim_angle_in_view() + rng.normal(0, 0.15) if s.scale > 1.5 else rng.uniform(0, 2 * np.pi)
    a = s.radius * (0.07 + 0.07 * sev) * rng.uniform(0.8, 1.2)
    b = a * rng.uniform(0.45, 0.8)
    inset = s.radius - 0.35 * b  # centre slightly inside the rim: a real bite out of the edge
    cx = s.cx + np.cos(ang) * inset
    cy = s.cy + np.sin(ang) * inset
    tangent = np.degrees(ang) + 90.0
    # notch: material gone through the edge (the background shows)
    core = np.zeros(s.shape, np.uint8)
    cv2.ellipse(core, ((cx, cy), (2 * a * 0.75, 2 * b * 0.75), tangent), 255, -1, cv2.LINE_AA)
    full = np.zeros(s.shape, np.uint8)
    cv2.ellipse(full, ((cx, cy), (2 * a * 1.25, 2 * b * 1.6), tangent), 255, -1, cv2.LINE_AA)
    core_f = core.astype(np.float32) * np.float32(1 / 255)
    # fracture surface: slopes down toward the notch, rough, freshly exposed (lighter)
    dist = cv2.distanceTransform(255 - core, cv2.DIST_L2, 3)
    ramp = np.clip(np.float32(1.0) - dist / np.float32(max(0.6 * b, 1.0)), 0.0, 1.0) * (full.astype(np.float32) * np.float32(1 / 255))
    ramp = cv2.GaussianBlur(ramp, (0, 0), max(1.5 * s.scale, 1.0))
    h, w = s.shape
    s.height -= np.float32(0.5 * b) * ramp  # conchoidal scoop: steep, so it shades strongly
    s.height += np.float32(2.5 * s.scale) * smooth_noise(rng, h, w, 2.5 * s.scale) * ramp
    s.albedo *= np.float32(1.0) + np.float32(0.12) * ramp
    s.inside *= np.float32(1.0) - core_f
    return {"chip_angle_deg": round(float(np.degrees(ang)) % 360.0, 2), "chip_size_px": round(float(2 * a), 1)}


def paint_crack(s: Surface, sev: int) -> dict[str, Any]:
    rng = s.rng
    n = int(rng.integers(1, 3)) + (sev - 1)
    if s.scale > 1.5:  # close-up: cracks cross the visible surface
        starts = s.sample_points(n, max_r=0.95)
        headings = rng.uniform(0, 2 * np.pi, n)
    else:  # whole tablet: cracks run in from the rim
        ang = rng.uniform(0, 2 * np.pi, n)
        starts = np.stack([s.cx + np.cos(ang) * s.radius * 0.985, s.cy + np.sin(ang) * s.radius * 0.985], axis=1)
        headings = ang + np.pi + rng.normal(0, 0.35, n)
    lengths = rng.uniform(0.35, 0.6, n) * s.radius * (0.6 + 0.35 * sev)
    mask, segs = draw_cracks(s, starts, headings, lengths, max(1.2, (0.8 + 0.6 * sev) * s.scale),
                             wiggle=0.12, branch_p=0.25 * sev)
    _crack_into(s, mask, 4.0 * s.scale, 0.75)
    return {"cracks": n, "crack_segments": segs}


PAINTERS: dict[str, Callable[[Surface, int], dict[str, Any]]] = {
    "moisture": paint_moisture,
    "humidity": paint_humidity,
    "temperature": paint_temperature,
    "chip": paint_chip,
    "crack": paint_crack,
}
