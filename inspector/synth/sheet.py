"""Contact sheets: one labelled tile per class, so a person can judge realism at a glance."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.synth.errors import SynthError

__all__ = ["contact_sheet", "write_contact_sheet"]

LABEL_ROWS = 34


def _tile(img: np.ndarray, label: str, tile_w: int) -> np.ndarray:
    h, w = img.shape[:2]
    tile_h = int(round(h * tile_w / w))
    small = cv2.resize(img, (tile_w, tile_h), interpolation=cv2.INTER_AREA)
    strip = np.full((LABEL_ROWS, tile_w), 255, np.uint8)
    cv2.putText(strip, label, (8, LABEL_ROWS - 11), cv2.FONT_HERSHEY_SIMPLEX, 0.55, 0, 1, cv2.LINE_AA)
    return np.vstack([small, strip])


def contact_sheet(
    kind: str = "sem", seed: int = 0, *, lot: int = 0, view: str = "whole", data_bar: bool = False,
    tile_width: int = 384, columns: int | None = None,
) -> np.ndarray:
    """uint8 grey contact sheet: one tile per class of ``kind`` (``"sem"`` or ``"tablets"``)."""
    tiles: list[np.ndarray] = []
    if kind == "sem":
        from inspector.synth.sem import SEM_CLASSES, render_sem

        for i, name in enumerate(SEM_CLASSES):
            img, p = render_sem(name, seed, lot=lot, data_bar=data_bar)
            tiles.append(_tile(img, f"{name}  x{p['magnification']}  ({p['um_per_px']:.2f} um/px)", tile_width))
        columns = columns or 5
    elif kind == "tablets":
        from inspector.synth.tablets import TABLET_CLASSES, render_tablet

        for name in TABLET_CLASSES:
            img, p = render_tablet(name, seed, view=view)
            label = name if name == "good" else f"{name}  severity {p['severity']}"
            tiles.append(_tile(img, label, tile_width))
        columns = columns or 3
    else:
        raise SynthError(f"unknown sheet kind {kind!r}; known: sem, tablets")
    th = max(t.shape[0] for t in tiles)
    tiles = [np.vstack([t, np.full((th - t.shape[0], tile_width), 255, np.uint8)]) if t.shape[0] < th else t for t in tiles]
    while len(tiles) % columns:
        tiles.append(np.full((th, tile_width), 255, np.uint8))
    gap = 4
    rows = []
    for r in range(0, len(tiles), columns):
        parts = []
        for t in tiles[r : r + columns]:
            parts += [t, np.full((th, gap), 255, np.uint8)]
        rows += [np.hstack(parts[:-1]), np.full((gap, columns * tile_width + (columns - 1) * gap), 255, np.uint8)]
    return np.vstack(rows[:-1])


def write_contact_sheet(out_png: str | Path, kind: str = "sem", seed: int = 0, **kw: object) -> Path:
    """Render :func:`contact_sheet` and write it as a PNG; returns the path."""
    out = Path(out_png)
    if out.suffix.lower() != ".png":
        raise SynthError(f"contact sheet must be a .png file, got {out}")
    sheet = contact_sheet(kind, seed, **kw)  # type: ignore[arg-type]
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), sheet):
        raise SynthError(f"could not write {out}")
    return out
