"""Benchmark: per-image cost of the ``clbp`` family (and ``lbp``) as a ratio to the 281 MaZda features.

    OPENBLAS_NUM_THREADS=1 python bench/bench_texture_clbp.py [--repeat 7] [--full]

In one process, after a warm-up (numba kernels loaded from the on-disk cache), on a real 200 × 200 NEU
image when ``../shared/datasets/neu-cls`` exists (else a synthetic texture of that size) and, with
``--full``, on a 2580 × 1944 frame (that image resized):

1. ``inspector.texture.features.extract`` — the 281 MaZda features (the reference of every ratio);
2. ``inspector.texture.lbp.lbp_features`` — 54 riu2 LBP features;
3. ``inspector.texture.clbp.clbp_features`` — 1100 CLBP S × M features (numba, two passes);
4. the same CLBP histograms by the definition in vectorised numpy (a (P, H, W) difference stack per
   scale), checked equal to (3) — why the family is hand-written in numba rather than in numpy
   (scikit-image has no magnitude code at all).

Best and median wall-clock and thread-CPU time; the ratios use the best thread-CPU time (least
sensitive to other processes on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inspector.texture.clbp import CLBP_SCALES, clbp_features  # noqa: E402
from inspector.texture.features import extract, warmup  # noqa: E402
from inspector.texture.lbp import lbp_features  # noqa: E402
from bench_texture import fmt, measure  # noqa: E402  (same timing as the 281-feature bench)


def load_image() -> tuple[np.ndarray, str]:
    import cv2

    root = REPO.parent / "shared" / "datasets" / "neu-cls" / "scratches"
    files = sorted(root.glob("*")) if root.is_dir() else []
    if files:
        img = cv2.imread(str(files[0]), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            return img, str(files[0].relative_to(REPO.parent))
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.normal(128, 40, (200, 200)), (0, 0), 1.5)
    return np.clip(img, 0, 255).astype(np.uint8), "synthetic 200x200"


def numpy_clbp(gray: np.ndarray) -> np.ndarray:
    """CLBP S × M joint histograms by the definition, vectorised numpy (same sampling as scikit-image)."""
    g = gray.astype(np.float64)
    h, w = g.shape
    out = []
    for p, r in CLBP_SCALES:
        ang = 2 * np.pi * np.arange(p) / p
        rows, cols = np.round(-r * np.sin(ang), 5), np.round(r * np.cos(ang), 5)
        c = g[r:h - r, r:w - r]
        d = np.empty((p,) + c.shape)
        for i, (dy, dx) in enumerate(zip(rows, cols)):
            fy, fx, cy, cx = int(np.floor(dy)), int(np.floor(dx)), int(np.ceil(dy)), int(np.ceil(dx))
            wy, wx = dy - fy, dx - fx
            view = lambda a, b: g[r + a:h - r + a, r + b:w - r + b]  # noqa: E731
            top = (1 - wx) * view(fy, fx) + wx * view(fy, cx)
            bottom = (1 - wx) * view(cy, fx) + wx * view(cy, cx)
            d[i] = (1 - wy) * top + wy * bottom - c
        codes = []
        for bits in (d >= 0, np.abs(d) >= np.abs(d).mean()):
            changes = (bits != np.roll(bits, 1, axis=0)).sum(0)
            codes.append(np.where(changes <= 2, bits.sum(0), p + 1))
        joint = codes[0] * (p + 2) + codes[1]
        out.append(np.bincount(joint.ravel(), minlength=(p + 2) ** 2) / joint.size)
    return np.concatenate(out)


def run(gray: np.ndarray, label: str, repeat: int, with_numpy: bool) -> None:
    print(f"--- {label}: {gray.shape[1]}x{gray.shape[0]}")
    m_ext = measure(lambda: extract(gray), repeat)
    m_lbp = measure(lambda: lbp_features(gray), repeat)
    m_clbp = measure(lambda: clbp_features(gray), repeat)
    print(f"mazda extract (281)       {fmt(m_ext)}")
    print(f"lbp family (54)           {fmt(m_lbp)}")
    print(f"clbp family (1100)        {fmt(m_clbp)}")
    line = (f"ratios (best cpu) to mazda: lbp {m_lbp['cpu_min'] / m_ext['cpu_min']:.2f}x, "
            f"clbp {m_clbp['cpu_min'] / m_ext['cpu_min']:.2f}x")
    if with_numpy:
        ref = numpy_clbp(gray)
        diff = np.abs(ref - clbp_features(gray)).max()
        m_np = measure(lambda: numpy_clbp(gray), max(2, repeat // 2))
        print(f"clbp, numpy definition    {fmt(m_np)}   (max |difference| to ours {diff:.1e})")
        line += f"; numpy clbp / ours = {m_np['cpu_min'] / m_clbp['cpu_min']:.1f}x"
    print(line)


def main(argv: list[str] | None = None) -> int:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--full", action="store_true", help="also a 2580x1944 frame (seconds per call)")
    args = ap.parse_args(argv)
    warmup()
    img, src = load_image()
    clbp_features(img[:32, :32])
    lbp_features(img[:32, :32])
    run(img, src, args.repeat, with_numpy=True)
    if args.full:
        big = cv2.resize(img, (2580, 1944), interpolation=cv2.INTER_CUBIC)
        run(big, f"{src} resized", max(2, args.repeat // 3), with_numpy=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
