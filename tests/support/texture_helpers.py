"""Procedural texture images and class folders for the texture tests ('good' is smooth blurred noise;
defects add spots or fine streaks)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def texture_image(kind: str, seed: int, size: int = 72) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.normal(128, 40, (size, size)), (0, 0), 2.0)
    if kind == "spots":
        for _ in range(6):
            cv2.circle(img, tuple(int(v) for v in rng.integers(8, size - 8, 2)), int(rng.integers(2, 5)), 40, -1)
    elif kind == "streaks":
        img += 35 * np.sin(np.arange(size) * 1.9 + rng.uniform(0, 6))[None, :]
    return np.clip(img, 0, 255).astype(np.uint8)


def texture_folder(root: Path, per_class: int, classes=("good", "spots", "streaks")) -> Path:
    """``per_class`` PNGs of each class under root/<class>/ (seeds 100·class index + i)."""
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(root / cls / f"{i:03d}.png"), texture_image(cls, 100 * k + i))
    return root
