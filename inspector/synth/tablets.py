"""Synthetic reflected-light microscope images of tablet surfaces, good and defective (seed 001).

``render_tablet(cls, seed)`` → ``(uint8 H×W grey image, params)``. Views: ``"whole"`` — a round
tablet on a dark background — and ``"closeup"`` — about 3× closer, the face filling the frame (the
rim shows for edge defects, and sometimes for the others so that the rim alone tells nothing).

Classes: ``good`` and the defects in :mod:`inspector.synth.tablet_defects`, each at severity 1..3
(``good`` is severity 0). Same arguments → byte-identical image.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from inspector.synth.errors import SynthError
from inspector.synth.rng import check_seed, fast_normal, make_rng, smooth_noise
from inspector.synth.tablet_defects import PAINTERS
from inspector.synth.tablet_surface import Surface, shade

__all__ = ["TABLET_CLASSES", "TABLET_VIEWS", "render_tablet"]

TABLET_CLASSES: tuple[str, ...] = ("good", "moisture", "humidity", "temperature", "chip", "crack")
TABLET_VIEWS: tuple[str, ...] = ("whole", "closeup")
MIN_SIZE = 64
MAX_SIZE = 8192
#: probability that a close-up of a non-edge class still shows the rim
P_RIM_IN_CLOSEUP = 0.3


def _resolve(cls: str | int) -> int:
    if isinstance(cls, (int, np.integer)) and not isinstance(cls, bool):
        if 0 <= int(cls) < len(TABLET_CLASSES):
            return int(cls)
    elif str(cls).strip().lower() in TABLET_CLASSES:
        return TABLET_CLASSES.index(str(cls).strip().lower())
    raise SynthError(f"unknown tablet class {cls!r}; known: {', '.join(TABLET_CLASSES)}")


def _geometry(rng: np.random.Generator, cls: str, view: str, w: int, h: int) -> tuple[float, float, float]:
    """(cx, cy, radius) of the tablet in frame pixels."""
    if view == "whole":
        r = rng.uniform(0.36, 0.42) * min(w, h)
        return w / 2 + rng.normal(0, 0.02) * w, h / 2 + rng.normal(0, 0.02) * h, r
    r = rng.uniform(0.36, 0.42) * min(w, h) * rng.uniform(2.6, 3.4)
    show_rim = cls == "chip" or rng.random() < P_RIM_IN_CLOSEUP
    ang = rng.uniform(0, 2 * np.pi)
    if show_rim:  # the rim crosses the frame, 55–80 % of the frame is tablet
        d = r - rng.uniform(0.1, 0.3) * min(w, h)
    else:  # the whole frame on the face, at least 8 % of the radius from the rim
        d = rng.uniform(0.0, max(0.92 * r - np.hypot(w, h) / 2, 0.0))
    return w / 2 - np.cos(ang) * d, h / 2 - np.sin(ang) * d, r


def _base_surface(s: Surface) -> dict[str, Any]:
    """Pressed-powder face: flat, slightly domed, bevelled rim, granular texture, optional score."""
    rng = s.rng
    h, w = s.shape
    k = s.scale
    rho = s.rr / np.float32(s.radius)
    bevel = rng.uniform(0.05, 0.08)
    dome = np.float32(rng.uniform(4.0, 10.0) * k)
    s.height[:] = dome * (np.float32(1.0) - rho * rho)
    edge = np.clip((rho - np.float32(1.0 - bevel)) / np.float32(bevel), 0.0, 1.0)
    s.height -= np.float32(1.1 * bevel * s.radius) * edge * edge
    grain = smooth_noise(rng, h, w, 1.6 * k) * np.float32(0.55) + smooth_noise(rng, h, w, 5.0 * k) * np.float32(0.35)
    s.height += np.float32(0.35 * k) * grain
    base = rng.uniform(0.72, 0.86)
    s.albedo[:] = np.float32(base) * (np.float32(1.0) + np.float32(0.03) * smooth_noise(rng, h, w, 3.0 * k))
    s.albedo *= np.float32(1.0) + np.float32(0.02) * smooth_noise(rng, h, w, 90.0 * k)
    s.gloss[:] = np.float32(rng.uniform(0.02, 0.06))
    # sparse pores and bright granules of the pressed powder
    n = int(rng.integers(40, 90) * (w * h) / (1024 * 768))
    pts = rng.uniform([0, 0], [w, h], size=(n, 2))
    spots = np.zeros(s.shape, np.float32)
    for (x, y), v in zip(pts, rng.choice([-1.0, 1.0], n, p=[0.7, 0.3])):
        cv2.circle(spots, (int(x * 4), int(y * 4)), max(int(rng.uniform(0.6, 1.6) * k * 4), 3), float(v), -1, cv2.LINE_AA, 2)
    s.albedo *= np.float32(1.0) + np.float32(0.25) * spots
    scored = bool(rng.random() < 0.4)
    if scored:  # break line through the centre
        ang = rng.uniform(0, np.pi)
        line = np.zeros(s.shape, np.uint8)
        dx, dy = np.cos(ang) * s.radius * 0.93, np.sin(ang) * s.radius * 0.93
        cv2.line(line, (int(s.cx - dx), int(s.cy - dy)), (int(s.cx + dx), int(s.cy + dy)), 255, max(int(3 * k), 2), cv2.LINE_AA)
        groove = cv2.GaussianBlur(line.astype(np.float32) * np.float32(1 / 255), (0, 0), 1.5 * k)
        s.height -= np.float32(6.0 * k) * groove
    return {"scored": scored, "bevel": round(float(bevel), 4)}


def render_tablet(
    cls: str,
    seed: int,
    *,
    severity: int | None = None,
    view: str = "whole",
    width: int = 1024,
    height: int = 768,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One grey microscope image of a tablet surface of class ``cls``.

    ``severity``: 1..3 for defect classes (drawn uniformly when None), must be None or 0 for
    ``good``. ``view``: ``"whole"`` or ``"closeup"``. Returns ``(uint8 (height, width), params)``.
    """
    idx = _resolve(cls)
    name = TABLET_CLASSES[idx]
    seed = check_seed(seed)
    if view not in TABLET_VIEWS:
        raise SynthError(f"unknown view {view!r}; known: {', '.join(TABLET_VIEWS)}")
    for key, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not MIN_SIZE <= int(v) <= MAX_SIZE:
            raise SynthError(f"{key} must be an integer in {MIN_SIZE}..{MAX_SIZE}, got {v!r}")
    width, height = int(width), int(height)
    if name == "good":
        if severity not in (None, 0):
            raise SynthError(f"class 'good' has no severity, got {severity!r}")
    elif severity is not None and (isinstance(severity, bool) or severity not in (1, 2, 3)):
        raise SynthError(f"severity must be 1, 2 or 3, got {severity!r}")

    rng = make_rng(seed, 1000 + idx, TABLET_VIEWS.index(view))
    sev = 0 if name == "good" else int(severity) if severity is not None else int(rng.integers(1, 4))
    cx, cy, r = _geometry(rng, name, view, width, height)
    s = Surface(width, height, cx, cy, r, rng)
    params: dict[str, Any] = {"kind": "tablet", "class": name, "slug": name, "class_index": idx, "seed": seed,
                              "severity": sev, "view": view, "width": width, "height": height,
                              "center_x": round(float(cx), 2), "center_y": round(float(cy), 2), "radius_px": round(float(r), 2)}
    params.update(_base_surface(s))
    if name != "good":
        params.update(PAINTERS[name](s, sev))

    bg_level = rng.uniform(0.05, 0.10)
    background = np.float32(bg_level) * (np.float32(1.0) + np.float32(0.12) * smooth_noise(rng, height, width, 200.0))
    az = rng.uniform(0, 2 * np.pi)
    tilt = rng.uniform(0.15, 0.35)
    light = (float(np.cos(az) * tilt), float(np.sin(az) * tilt), 1.0)
    img = shade(s, light, background)
    # vignetting of the microscope optics
    ys = (np.arange(height, dtype=np.float32)[:, None] - height / 2) / np.float32(height / 2)
    xs = (np.arange(width, dtype=np.float32)[None, :] - width / 2) / np.float32(width / 2)
    vig = np.float32(1.0) - np.float32(rng.uniform(0.06, 0.14)) * (xs * xs + ys * ys) * np.float32(0.5)
    img *= vig
    focus = float(rng.uniform(0.5, 1.3))
    img = cv2.GaussianBlur(img, (0, 0), focus)
    gain = float(rng.uniform(215.0, 240.0))
    grey = img * np.float32(gain)
    grey += fast_normal(rng, (height, width)) * np.float32(rng.uniform(1.5, 3.0))
    np.maximum(grey, 0.0, out=grey)
    out = cv2.convertScaleAbs(grey)
    params.update({"light_azimuth_deg": round(float(np.degrees(az)), 2), "light_tilt": round(float(tilt), 4),
                   "focus_sigma_px": round(focus, 4), "gain": round(gain, 3)})
    return out, params
