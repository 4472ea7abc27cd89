"""The 281 MaZda-style texture features of seed 001: public API.

``extract(image)`` returns a :class:`FeatureVector` with the features in this fixed order
(``feature_names()``, 281 entries for the defaults):

1. histogram (4): ``Mean, Variance, Skewness, Kurtosis``
2. GLCM (220): for d = 1…5, offsets ``S(d,0), S(0,d), S(d,d), S(d,-d)``, each with
   ``AngScMom, Contrast, Correlat, SumOfSqs, InvDfMom, SumAverg, SumVarnc, SumEntrp, Entropy,
   DifVarnc, DifEntrp``
3. run length (20): ``Horzl_, Vertl_, 45dgr_, 135dr_`` × ``RLNonUni, GLevNonU, LngREmph,
   ShrtREmp, Fraction``
4. autoregressive model (5): ``Teta1, Teta2, Teta3, Teta4, Sigma``
5. Haar wavelet (32): scales 1…8 × ``WavEnLL, WavEnLH, WavEnHL, WavEnHH`` (``WavEnLL_s-1`` …)

Definitions of each family are in its module and in ``docs/texture-features.md``. The values are
always finite: an image for which a feature cannot be defined raises
:class:`~inspector.errors.BadFrameError` with ``kind`` ``"pixel_format"`` (not uint8/uint16 or
not (H, W[, 3])), ``"roi"`` (bad mask), ``"no_roi"`` (auto ROI failed), ``"no_texture"`` (constant
ROI) or ``"too_small"`` (ROI without pixel pairs at the largest distance, without a 2 × 2 block,
or without enough pixels to fit the AR model). A ROI too small for the larger wavelet scales is
*not* an error: see :mod:`inspector.texture.wavelet` and ``meta["wavelet_scales_available"]``.

The numba kernels are compiled once and cached on disk (``cache=True``); call :func:`warmup` at
start-up so the first frame does not pay the load/compile time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.errors import BadFrameError, ConfigError
from inspector.texture.autoregressive import AR_FEATURES, MIN_AR_SAMPLES, ar_moments, ar_solve
from inspector.texture.glcm import cooccurrence, glcm_names, haralick, offsets_for
from inspector.texture.histogram import HIST_FEATURES, histogram_features, level_histogram
from inspector.texture.preprocess import Prepared, prepare
from inspector.texture.runlength import runlength_features, runlength_names
from inspector.texture.wavelet import haar_energies, wavelet_names

N_FEATURES = 281
DEFAULT_DISTANCES: tuple[int, ...] = (1, 2, 3, 4, 5)
DEFAULT_SCALES = 8
MAX_SCALES = 10  # 2^10 x 2^10 box sums of 8-bit levels still fit the int32 kernels


@dataclass(slots=True)
class FeatureVector:
    """Named texture features of one image; ``values`` is float64 and always finite."""

    names: tuple[str, ...]
    values: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, self.values)}

    def __len__(self) -> int:
        return len(self.names)


def _check_distances(distances: Iterable[int]) -> tuple[int, ...]:
    try:
        ds = tuple(int(d) for d in distances)
    except (TypeError, ValueError):
        raise ConfigError(f"distances must be positive integers, got {distances!r}") from None
    if not ds or any(d < 1 for d in ds) or len(set(ds)) != len(ds):
        raise ConfigError(f"distances must be distinct positive integers, got {ds}")
    return ds


def _check_scales(scales: int) -> int:
    if isinstance(scales, bool) or not isinstance(scales, (int, np.integer)):
        raise ConfigError(f"scales must be an integer, got {scales!r}")
    if not 1 <= int(scales) <= MAX_SCALES:
        raise ConfigError(f"scales={scales} is out of range 1..{MAX_SCALES}")
    return int(scales)


def feature_names(scales: int = DEFAULT_SCALES, *, distances: tuple[int, ...] = DEFAULT_DISTANCES) -> tuple[str, ...]:
    """Feature names in the fixed order of :func:`extract` (281 for the defaults)."""
    scales = _check_scales(scales)
    distances = _check_distances(distances)
    return tuple(
        list(HIST_FEATURES)
        + glcm_names(distances)
        + runlength_names()
        + list(AR_FEATURES)
        + wavelet_names(scales)
    )


def _glcm_counts(prep: Prepared, distances: tuple[int, ...]) -> np.ndarray:
    counts = cooccurrence(prep.q, prep.levels, distances)
    empty = np.flatnonzero(counts.reshape(len(counts), -1).sum(axis=1) == 0)
    if len(empty):
        prefix, dr, dc = offsets_for(distances)[int(empty[0])]
        raise BadFrameError(
            f"image/ROI too small: no pixel pair inside the ROI at offset {prefix} "
            f"(Δrow={dr}, Δcol={dc}); use smaller distances or a larger ROI",
            "too_small",
        )
    return counts


def _ar_block(prep: Prepared) -> np.ndarray:
    n, s, m = ar_moments(prep.q, prep.levels)
    if n < MIN_AR_SAMPLES:
        raise BadFrameError(
            f"image/ROI too small for the AR model: {n} pixels with a complete causal "
            f"neighbourhood (< {MIN_AR_SAMPLES})",
            "too_small",
        )
    return ar_solve(n, s, m)


def extract(
    image: np.ndarray,
    *,
    levels: int = 64,
    roi: np.ndarray | str | None = None,
    distances: tuple[int, ...] = DEFAULT_DISTANCES,
    scales: int = DEFAULT_SCALES,
) -> FeatureVector:
    """All texture features of one image (2-D uint8/uint16 or (H, W, 3) RGB).

    ``roi``: ``None`` (whole image), ``"auto"`` (bright tablet disk on a dark background) or a
    mask of the image's (H, W) shape (non-zero = inside). ``levels``: grey levels after the 1 %
    stretch (2…256). Raises :class:`BadFrameError` where a feature cannot be defined.
    """
    distances = _check_distances(distances)
    scales = _check_scales(scales)
    prep = prepare(image, levels=levels, roi=roi)
    names = feature_names(scales, distances=distances)

    hist = level_histogram(prep.q, prep.levels)
    h_feats = histogram_features(hist)
    counts = _glcm_counts(prep, distances)
    g_feats = haralick(counts).ravel()
    d1 = counts[4 * distances.index(1) : 4 * distances.index(1) + 4] if 1 in distances else None
    rl_feats = runlength_features(prep.q, prep.levels, prep.roi_pixels, hist, d1)
    ar_feats = _ar_block(prep)
    energies, available = haar_energies(prep.q, prep.levels, scales, masked=prep.mask is not None)
    if available == 0:
        raise BadFrameError("image/ROI too small: no 2×2 block inside the ROI for the Haar wavelet", "too_small")

    values = np.concatenate([h_feats, g_feats, rl_feats, ar_feats, energies.ravel()])
    warnings: list[str] = []
    if available < scales:
        missing = f"{available + 1}" if available + 1 == scales else f"{available + 1}..{scales}"
        warnings.append(f"ROI too small for wavelet scale(s) {missing}: they repeat scale {available}")
    if not np.all(np.isfinite(values)):  # defensive: the definitions above never produce NaN/inf
        bad = [n for n, v in zip(names, values) if not np.isfinite(v)]
        raise BadFrameError(f"non-finite texture features {bad[:5]}", "no_texture")
    meta: dict[str, Any] = {
        "levels": prep.levels,
        "roi_pixels": prep.roi_pixels,
        "roi": "auto" if isinstance(roi, str) else ("mask" if prep.mask is not None else "full"),
        "shape": tuple(int(s) for s in prep.q.shape),
        "source_dtype": prep.source_dtype,
        "stretch": prep.stretch,
        "distances": distances,
        "scales": scales,
        "wavelet_scales_available": available,
        "warnings": warnings,
    }
    return FeatureVector(names=names, values=values, meta=meta)


def extract_many(
    images: Iterable[np.ndarray], *, progress: bool = False, desc: str = "texture features", **kw: Any
) -> np.ndarray:
    """(n, n_features) matrix of :func:`extract` over ``images``; ``progress`` shows a tqdm bar.

    ``kw`` are passed to :func:`extract` (``levels``, ``roi``, ``distances``, ``scales``).
    """
    items = images
    if progress:
        from tqdm import tqdm

        items = tqdm(images, desc=desc, unit="img")
    n_cols = len(feature_names(kw.get("scales", DEFAULT_SCALES), distances=kw.get("distances", DEFAULT_DISTANCES)))
    rows = [extract(img, **kw).values for img in items]
    if not rows:
        return np.empty((0, n_cols))
    return np.vstack(rows)


def warmup() -> None:
    """Load (or compile, the first time) every numba kernel on a tiny image."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (24, 24), dtype=np.uint8)
    extract(img, scales=2)
    mask = np.ones(img.shape, bool)
    mask[0, 0] = False
    extract(img, roi=mask, scales=2)
