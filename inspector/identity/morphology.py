"""Particle morphology of one SEM frame (serving): the second view of lot drift.

The CNN embedding names the powder but hardly moves when a lot's particles are 5–10 % larger or
more elongated (docs/identity-openset.md). This module measures that directly, per frame, with
OpenCV: bright particles on the dark tape are segmented (Gaussian blur, Otsu threshold, holes
filled), then

    log_eqd       mean log equivalent diameter √(4A/π) of the particles (px)
    log_width     log mean Euclidean distance transform inside the particles — a width measure
                  that touching particles do not inflate (they merge into one component, which
                  biases ``log_eqd`` but not the distance to the nearest background pixel)
    log_elong     mean log elongation √(λ₁/λ₂) (second moments) of the isolated particles: not
                  cut by the frame edge, solidity ≥ 0.85 (a lower solidity is touching particles);
                  of every particle when the frame has no isolated one
    log_count     log (1 + number of particles)

Means of logs, not medians: a frame holds 10–40 particles, and the mean of the log is the
efficient estimate of a log-normal size distribution's median (the median wastes a third of the
information); the lot statistic then averages frames.

The supervisor's lot-drift listener (``inspector.daemon.drift``) compares a lot's mean of these
vectors with the expected excipient's reference frames (Hotelling, per-class covariance, threshold
by permutation at calibration — ``inspector calibrate openset``). Only the relative change within
one excipient at one magnification matters, so segmentation bias (merged particles, rims) cancels.

The frame is measured at half resolution (INTER_AREA): particles span tens to hundreds of pixels,
so the logs move by a few hundredths at most (tests/identity/test_morphology.py) for a quarter of the work.
"""

from __future__ import annotations

import cv2
import numpy as np

from inspector.errors import BadFrameError

FEATURES = ("log_eqd", "log_width", "log_elong", "log_count")
MIN_AREA = 25  # px at the measuring scale: smaller components are noise/debris
MIN_SOLIDITY = 0.85  # area / convex-hull area: below, a component is particles touching each other
SCALE = 2  # measure at 1/SCALE resolution


def measure(grey: np.ndarray, *, scale: int = SCALE, min_area: int = MIN_AREA) -> np.ndarray:
    """The morphology vector (``FEATURES``) of a grey uint8 frame without its data bar."""
    if not isinstance(grey, np.ndarray) or grey.ndim != 2 or grey.dtype != np.uint8:
        raise BadFrameError("particle morphology needs a 2-D uint8 grey frame", kind="pixel_format")
    img = grey
    if scale > 1:
        img = cv2.resize(grey, (grey.shape[1] // scale, grey.shape[0] // scale), interpolation=cv2.INTER_AREA)
    blur = cv2.GaussianBlur(img, (0, 0), 2.0 / scale)
    _, mask = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    # fill holes: particles are bright at their rims (edge effect), a flat top may fall below Otsu
    cv2.drawContours(mask, contours, -1, 255, thickness=cv2.FILLED)
    fg = mask > 0
    h, w = mask.shape
    log_eqd, elong = [], ([], [])  # elongations of (isolated particles, every particle)
    for c in contours:
        area = cv2.contourArea(c)
        if area < min_area:
            continue
        log_eqd.append(0.5 * np.log(4.0 * area / np.pi) + np.log(scale))
        m = cv2.moments(c)
        c20, c02, c11 = m["mu20"] / m["m00"], m["mu02"] / m["m00"], m["mu11"] / m["m00"]
        half_tr = (c20 + c02) / 2.0
        disc = np.sqrt(max(half_tr * half_tr - (c20 * c02 - c11 * c11), 0.0))
        e = 0.5 * np.log((half_tr + disc) / max(half_tr - disc, 1e-9))
        elong[1].append(e)
        x, y, bw, bh = cv2.boundingRect(c)
        edge = x == 0 or y == 0 or x + bw >= w or y + bh >= h  # cut by the frame edge: shape unknown
        if not edge and area >= MIN_SOLIDITY * cv2.contourArea(cv2.convexHull(c)):  # not a cluster
            elong[0].append(e)
    if not log_eqd or np.count_nonzero(fg) >= 0.999 * fg.size:  # nothing, or no background (flat frame)
        return np.zeros(len(FEATURES))
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    width = float(dist[fg].mean(dtype=np.float64)) * scale
    # a frame of long fibres may hold no isolated particle: then every particle's elongation (a
    # constant 0 instead would be an outlier that inflates the lot statistic's tail)
    return np.array([float(np.mean(log_eqd)), np.log(max(width, 1e-6)), float(np.mean(elong[0] or elong[1])),
                     np.log1p(len(log_eqd))])
