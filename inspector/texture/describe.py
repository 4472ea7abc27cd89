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


#: the named feature families; ``mazda`` is the seed's 281 features (inspector.texture.features), ``lbp``
#: rotation-invariant uniform LBP (inspector.texture.lbp), ``clbp`` completed LBP sign × magnitude (inspector.texture.clbp)
FAMILIES: tuple[str, ...] = ("mazda", "lbp", "clbp")
DEFAULT_FAMILIES: tuple[str, ...] = ("mazda",)


def parse_families(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"mazda,lbp"`` → ("mazda", "lbp") in the canonical order; None → the default. Raises ValueError."""
    if spec is None:
        return DEFAULT_FAMILIES
    items = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [f for f in items if f not in FAMILIES]
    if bad or not items:
        raise ValueError(f"unknown feature famil(ies) {', '.join(bad) or repr(spec)} (known: {', '.join(FAMILIES)})")
    return tuple(f for f in FAMILIES if f in items)


def describe_families(gray: np.ndarray, *, levels: int, roi: str | None, max_side: int | None,
                      families: tuple[str, ...] = DEFAULT_FAMILIES) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """Features of one grey image per family: {family: (names, finite float64 values)}. Raises BadFrameError.

    The ROI is found once (after the downscale) and shared by every family."""
    from inspector.texture.preprocess import resolve_roi, to_grayscale

    g = to_grayscale(limit_size(gray, max_side))
    mask = resolve_roi(g, roi_arg(roi))
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for fam in families:
        if fam == "mazda":
            from inspector.texture.features import extract

            fv = extract(g, levels=levels, roi=mask)
            names, values = tuple(fv.names), np.asarray(fv.values, dtype=np.float64)
        elif fam == "lbp":
            from inspector.texture.lbp import lbp_features, lbp_names

            names, values = lbp_names(), lbp_features(g, mask)
        elif fam == "clbp":
            from inspector.texture.clbp import clbp_features, clbp_names

            names, values = clbp_names(), clbp_features(g, mask)
        else:
            raise ValueError(f"unknown feature family {fam!r} (known: {', '.join(FAMILIES)})")
        bad = ~np.isfinite(values)
        if bad.any():
            shown = [n for n, b in zip(names, bad) if b]
            raise BadFrameError(f"non-finite texture features: {', '.join(shown[:5])}{'…' if len(shown) > 5 else ''}",
                                "features")
        out[fam] = (names, values)
    return out


def describe(gray: np.ndarray, *, levels: int, roi: str | None, max_side: int | None,
             families: tuple[str, ...] = DEFAULT_FAMILIES) -> tuple[tuple[str, ...], np.ndarray]:
    """Texture features of one grey image, families concatenated: (names, finite float64 values)."""
    per = describe_families(gray, levels=levels, roi=roi, max_side=max_side, families=families)
    names = tuple(n for fam in per for n in per[fam][0])
    return names, np.concatenate([per[fam][1] for fam in per])
