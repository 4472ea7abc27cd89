"""One grey frame → its named texture features, as the inline inspection and the offline tools both need it."""

from __future__ import annotations

import numpy as np

from inspector.errors import BadFrameError


def limit_size(gray: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale (area interpolation) so that the longer side is at most ``max_side`` pixels."""
    if not max_side or max(gray.shape[:2]) <= max_side:
        return gray
    import cv2

    s = max_side / max(gray.shape[:2])
    size = (max(1, round(gray.shape[1] * s)), max(1, round(gray.shape[0] * s)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def roi_arg(roi: str | None) -> str | None:
    """CLI/manifest ROI spelling → the extractor's argument ("auto" or None)."""
    if roi is None or str(roi).lower() in ("none", "null", ""):
        return None
    if str(roi).lower() == "auto":
        return "auto"
    raise ValueError(f"roi must be 'auto' or 'none', got {roi!r}")


def describe(gray: np.ndarray, *, levels: int, roi: str | None, max_side: int | None) -> tuple[tuple[str, ...], np.ndarray]:
    """Texture features of one grey image: (names, finite float64 values). Raises BadFrameError."""
    from inspector.texture.features import extract

    fv = extract(limit_size(gray, max_side), levels=levels, roi=roi_arg(roi))
    values = np.asarray(fv.values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        names = [n for n, b in zip(fv.names, bad) if b]
        raise BadFrameError(f"non-finite texture features: {', '.join(names[:5])}{'…' if len(names) > 5 else ''}",
                            "features")
    return tuple(fv.names), values
