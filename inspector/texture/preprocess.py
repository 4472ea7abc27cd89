"""Texture preprocessing: grayscale, 1 % contrast stretch, region of interest, grey-level quantisation.

Every texture feature family (``glcm``, ``runlength``, ``autoregressive``, ``wavelet``,
``histogram``) works on the output of :func:`prepare`: a :class:`Prepared` image of 0-based grey
levels ``0 … levels-1``. Pixels outside the region of interest carry the *sentinel* level
``levels`` so the counting kernels can skip them without a second mask array.

Definitions (see ``docs/texture-features.md``):

* **Grayscale**: RGB → grey with ITU-R BT.601 weights (:func:`inspector.frame.to_gray`, OpenCV),
  dtype preserved (uint8 stays uint8, uint16 stays uint16).
* **Stretch limits** (MATLAB ``stretchlim`` with the default 1 % tolerance, over ROI pixels only,
  on the native integer histogram — 256 bins for 8-bit, 65536 for 16-bit):
  ``lo`` = the first grey value whose cumulative fraction exceeds 0.01, ``hi`` = the first whose
  cumulative fraction reaches 0.99. If ``lo == hi`` (more than 98 % of the ROI has one value) the
  limits fall back to the ROI's minimum and maximum, as ``stretchlim`` does. If min == max the ROI
  has no texture and :class:`~inspector.errors.BadFrameError` (``kind="no_texture"``) is raised.
* **Quantisation**: ``q = min(floor((x - lo) * levels / (hi - lo)), levels - 1)`` with ``x``
  clipped to ``[lo, hi]`` first (exact integer arithmetic). This is the contrast stretch
  ``(x - lo) / (hi - lo)`` followed by uniform quantisation to ``levels`` bins, and it is invariant
  to a scaling of the input: a 16-bit image equal to an 8-bit one times 257 gives identical levels.
  Grey levels are 0-based (MaZda reports 1-based levels; only ``SumAverg`` and the histogram
  ``Mean`` differ, by +2 and +1 respectively).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspector.errors import BadFrameError, ConfigError

#: quantisation levels accepted (MaZda offers 1…8 bits; we allow any count in this range)
MIN_LEVELS, MAX_LEVELS = 2, 256
#: cumulative fraction saturated at each end by the contrast stretch
STRETCH_TOLERANCE = 0.01


@dataclass(frozen=True, slots=True)
class Prepared:
    """A quantised grey-level image ready for the feature kernels.

    ``q`` holds levels ``0 … levels-1`` inside the ROI and the sentinel ``levels`` outside it;
    its dtype is uint8, or uint16 when ``levels == 256`` (the sentinel needs a 9th bit).
    ``mask`` is ``None`` when the ROI is the whole image.
    """

    q: np.ndarray
    levels: int
    mask: np.ndarray | None
    roi_pixels: int
    stretch: tuple[int, int]
    source_dtype: str

    @property
    def sentinel(self) -> int:
        return self.levels


def check_levels(levels: int) -> int:
    """Validate the quantisation level count (a user parameter) and return it as int."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)):
        raise ConfigError(f"levels must be an integer, got {levels!r}")
    if not MIN_LEVELS <= int(levels) <= MAX_LEVELS:
        raise ConfigError(f"levels={levels} is out of range {MIN_LEVELS}..{MAX_LEVELS}")
    return int(levels)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8/uint16 grey image from a 2-D image or an (H, W, 3|4) RGB(A) one.

    Raises :class:`BadFrameError` (``kind="pixel_format"``) for other dtypes or shapes.
    """
    if not isinstance(image, np.ndarray):
        raise BadFrameError(f"image must be a numpy array, got {type(image).__name__}", "pixel_format")
    if image.dtype not in (np.uint8, np.uint16):
        raise BadFrameError(
            f"texture features need a uint8 or uint16 image, got dtype {image.dtype}", "pixel_format"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        from inspector.frame import to_gray

        image = to_gray(image)
    if image.ndim != 2:
        raise BadFrameError(
            f"texture features need an (H, W) or (H, W, 3) image, got shape {image.shape}", "pixel_format"
        )
    if image.shape[0] * image.shape[1] >= 2**31:
        raise BadFrameError(f"image of shape {image.shape} is too large (2^31 pixels or more)", "too_large")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise BadFrameError(f"image of shape {image.shape} is too small for texture features", "too_small")
    return np.ascontiguousarray(image)


def _as_mask(roi: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(roi)
    if mask.ndim == 3 and mask.shape[2] in (1, 3, 4):
        mask = mask[:, :, 0]
    if mask.shape != shape:
        raise BadFrameError(f"ROI mask shape {mask.shape} does not match the image shape {shape}", "roi")
    if mask.dtype != np.bool_:
        if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
            raise BadFrameError(f"ROI mask must be boolean or numeric, got dtype {mask.dtype}", "roi")
        mask = mask != 0
    return np.ascontiguousarray(mask)


def resolve_roi(gray: np.ndarray, roi: np.ndarray | str | None) -> np.ndarray | None:
    """Boolean ROI mask for ``gray`` (``None`` = whole image).

    ``roi`` may be ``None``, ``"auto"`` (:func:`inspector.texture.roi.auto_roi`: bright disk on a
    dark background) or an array (non-zero = inside) of the image's (H, W) shape.
    """
    if roi is None:
        return None
    if isinstance(roi, str):
        if roi != "auto":
            raise BadFrameError(f"unknown ROI {roi!r}: use 'auto', a mask array or None", "roi")
        from inspector.texture.roi import auto_roi

        mask = auto_roi(gray)
    else:
        mask = _as_mask(roi, gray.shape)
    if mask.all():
        return None
    if not mask.any():
        raise BadFrameError("the ROI mask is empty", "roi")
    return mask


def _histogram(gray: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Integer histogram of the native grey values (256 or 65536 bins) over the ROI."""
    nbins = 256 if gray.dtype == np.uint8 else 65536
    if gray.dtype == np.uint8 and gray.size < 1 << 24:  # calcHist counts in float32: exact below 2^24
        import cv2

        m = None if mask is None else mask.view(np.uint8)
        hist = cv2.calcHist([gray], [0], m, [256], [0, 256]).ravel()
        return hist.astype(np.int64)
    values = gray if mask is None else gray[mask]
    return np.bincount(values.ravel(), minlength=nbins).astype(np.int64)


def stretch_limits(hist: np.ndarray, tolerance: float = STRETCH_TOLERANCE) -> tuple[int, int]:
    """(lo, hi) grey values saturating ``tolerance`` of the ROI at each end (MATLAB ``stretchlim``)."""
    n = int(hist.sum())
    if n == 0:
        raise BadFrameError("the ROI has no pixels", "roi")
    cdf = np.cumsum(hist)
    # compare integers: cdf/n > tol  <=>  cdf > tol*n (exact for the counts involved)
    lo = int(np.searchsorted(cdf, tolerance * n, side="right"))
    hi = int(np.searchsorted(cdf, (1.0 - tolerance) * n, side="left"))
    if lo >= hi:
        nz = np.flatnonzero(hist)
        lo, hi = int(nz[0]), int(nz[-1])
    if lo == hi:
        raise BadFrameError(
            f"the ROI is constant (every pixel = {lo}): no texture to measure", "no_texture"
        )
    return lo, hi


def quantisation_lut(lo: int, hi: int, levels: int, nbins: int) -> np.ndarray:
    """Lookup table native grey value -> 0-based level (stretch + uniform quantisation)."""
    x = np.clip(np.arange(nbins, dtype=np.int64), lo, hi) - lo
    q = np.minimum((x * levels) // (hi - lo), levels - 1)
    return q.astype(np.uint8 if levels <= 255 else np.uint16)


def prepare(image: np.ndarray, *, levels: int = 64, roi: np.ndarray | str | None = None) -> Prepared:
    """Grayscale, stretch (1 %), ROI and quantise ``image`` for the feature kernels."""
    levels = check_levels(levels)
    gray = to_grayscale(image)
    mask = resolve_roi(gray, roi)
    hist = _histogram(gray, mask)
    lo, hi = stretch_limits(hist)
    nbins = 256 if gray.dtype == np.uint8 else 65536
    lut = quantisation_lut(lo, hi, levels, nbins)
    # levels == 256 needs the sentinel 256: always uint16 then
    qdtype = np.uint8 if levels <= 255 else np.uint16
    if gray.dtype == np.uint8 and qdtype == np.uint8:
        import cv2

        q = cv2.LUT(gray, lut)
    else:
        q = lut.astype(qdtype, copy=False)[gray]
    if mask is not None:
        np.putmask(q, ~mask, levels)
    roi_pixels = int(hist.sum())
    return Prepared(
        q=np.ascontiguousarray(q, dtype=qdtype),
        levels=levels,
        mask=mask,
        roi_pixels=roi_pixels,
        stretch=(lo, hi),
        source_dtype=str(gray.dtype),
    )
