"""Benchmark: the 281 texture features of a 2580×1944 frame, against references in the same run.

    OPENBLAS_NUM_THREADS=1 python bench/bench_texture.py [--image PATH] [--repeat 7]

Times, on one core and after a warm-up (numba kernels loaded from the on-disk cache):

1. ``inspector.texture.features.extract`` — all 281 features;
2. a naive numpy implementation of the same 281 features (``np.bincount`` GLCMs, run lengths from
   ``np.diff`` change points on sheared views, AR by ``lstsq`` on the full design matrix, Haar
   energies from an integral image), checked to agree with (1);
3. mahotas ``haralick`` (``use_x_minus_y_variance=True``) for the same 20 GLCMs × 11 features,
   against our GLCM part (counting + features);
4. the ``lbp`` family (``inspector.texture.lbp``, numba riu2 codes at 3 radii + histograms) against
   scikit-image's ``local_binary_pattern`` for the same codes (and how many codes agree).

It prints the best and median of wall-clock and thread CPU time (the latter is less sensitive to
other processes on a shared machine), and the ratios reference / ours. The frame is a real
magnetic-tile image resized to 2580×1944 when ``../shared/datasets/magnetic-tile`` exists, else a
synthetic texture.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inspector.texture.features import extract, feature_names, warmup  # noqa: E402
from inspector.texture.glcm import cooccurrence, haralick, offsets_for  # noqa: E402
from inspector.texture.preprocess import prepare  # noqa: E402

H, W = 1944, 2580
DISTANCES = (1, 2, 3, 4, 5)


# ----------------------------------------------------------------------------- test frame


def load_frame(path: str | None) -> tuple[np.ndarray, str]:
    import cv2

    candidates = []
    if path:
        candidates = [Path(path)]
    else:
        root = REPO.parent / "shared" / "datasets" / "magnetic-tile" / "MT_Free" / "Imgs"
        if root.is_dir():
            candidates = sorted(root.glob("*.jpg"), key=lambda p: -p.stat().st_size)[:1]
    for p in candidates:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            return cv2.resize(img, (W, H), interpolation=cv2.INTER_CUBIC), f"{p.name} resized to {W}x{H}"
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.normal(size=(H, W)).astype(np.float32), (0, 0), 1.5)
    img = np.clip(128 + 400 * noise, 0, 255).astype(np.uint8)
    return img, f"synthetic blurred noise {W}x{H}"


# ----------------------------------------------------------------------------- naive numpy


def _shift_pairs(q: np.ndarray, dr: int, dc: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = q.shape
    if dc >= 0:
        return q[: h - dr, : w - dc], q[dr:, dc:]
    return q[: h - dr, -dc:], q[dr:, : w + dc]


def naive_glcm(q: np.ndarray, levels: int) -> np.ndarray:
    mats = []
    for _, dr, dc in offsets_for(DISTANCES):
        a, b = _shift_pairs(q, dr, dc)
        m = np.bincount((a.astype(np.int64) * levels + b).ravel(), minlength=levels * levels)
        m = m.reshape(levels, levels)
        mats.append(m + m.T)
    return haralick(np.array(mats)).ravel()


def _runs_along_columns(a: np.ndarray, sentinel: int) -> tuple[np.ndarray, np.ndarray]:
    """(levels, lengths) of the runs down the columns of ``a`` (sentinel cells separate runs)."""
    col = np.concatenate([a, np.full((1, a.shape[1]), sentinel, a.dtype)]).T.ravel()
    starts = np.concatenate([[0], np.flatnonzero(np.diff(col)) + 1])
    lengths = np.diff(np.concatenate([starts, [col.size]]))
    lv = col[starts]
    keep = lv != sentinel
    return lv[keep], lengths[keep]


def naive_runlength(q: np.ndarray, levels: int) -> np.ndarray:
    h, w = q.shape
    s = levels
    q16 = q.astype(np.int16)
    main = np.full((h, w + h - 1), s, np.int16)  # (r, c) -> column c - r + h - 1: main diagonals
    anti = np.full((h, w + h - 1), s, np.int16)  # (r, c) -> column c + r: anti-diagonals
    rows = np.arange(h)[:, None]
    cols = np.arange(w)[None, :]
    main[rows, cols - rows + h - 1] = q16
    anti[rows, cols + rows] = q16
    out = []
    for arr in (q16.T, q16, anti, main):  # Horzl, Vertl, 45dgr, 135dr
        lv, ln = _runs_along_columns(arr, s)
        nr = float(len(ln))
        by_len = np.bincount(ln).astype(np.float64)
        by_lv = np.bincount(lv, minlength=levels).astype(np.float64)
        lf = ln.astype(np.float64)
        out += [
            (by_len**2).sum() / nr,
            (by_lv**2).sum() / nr,
            (lf**2).sum() / nr,
            (1.0 / lf**2).sum() / nr,
            nr / q.size,
        ]
    return np.array(out)


def naive_ar(q: np.ndarray) -> np.ndarray:
    x = q.astype(np.float64)
    y = x[1:, 1:-1].ravel()
    cols = [np.ones_like(y), x[1:, :-2].ravel(), x[:-1, 1:-1].ravel(), x[:-1, :-2].ravel(), x[:-1, 2:].ravel()]
    a = np.stack(cols, axis=1)
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    sigma = np.sqrt(np.mean((y - a @ coef) ** 2))
    return np.array([*coef[1:], sigma])


def naive_haar(q: np.ndarray, scales: int = 8) -> np.ndarray:
    h, w = q.shape
    ii = np.zeros((h + 1, w + 1), np.int64)
    ii[1:, 1:] = q.astype(np.int64).cumsum(0).cumsum(1)

    def box(r0: int, c0: int, size: int, rows: int, cols: int) -> np.ndarray:
        return (
            ii[r0 + size : r0 + size + rows, c0 + size : c0 + size + cols]
            - ii[r0 : r0 + rows, c0 + size : c0 + size + cols]
            - ii[r0 + size : r0 + size + rows, c0 : c0 + cols]
            + ii[r0 : r0 + rows, c0 : c0 + cols]
        ).astype(np.float64)

    out = []
    for s in range(1, scales + 1):
        hh = 2 ** (s - 1)
        rows, cols = h - 2 * hh + 1, w - 2 * hh + 1
        a, b = box(0, 0, hh, rows, cols), box(0, hh, hh, rows, cols)
        c, d = box(hh, 0, hh, rows, cols), box(hh, hh, hh, rows, cols)
        k = 1.0 / 2**s
        for band in (a + b + c + d, a + b - c - d, a - b + c - d, a - b - c + d):
            out.append(np.mean((band * k) ** 2))
    return np.array(out)


def naive_histogram(q: np.ndarray) -> np.ndarray:
    x = q.ravel().astype(np.float64)
    mu = x.mean()
    d = x - mu
    var = np.mean(d**2)
    return np.array([mu, var, np.mean(d**3) / var**1.5, np.mean(d**4) / var**2 - 3.0])


def naive_extract(image: np.ndarray, levels: int = 64) -> np.ndarray:
    """All 281 features, plain numpy (preprocessing shared: it is a few ms either way)."""
    q = prepare(image, levels=levels).q
    return np.concatenate([naive_histogram(q), naive_glcm(q, levels), naive_runlength(q, levels), naive_ar(q), naive_haar(q)])


# ----------------------------------------------------------------------------- timing


def measure(fn, repeat: int) -> dict[str, float]:
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
    return {"wall_min": min(wall), "wall_med": statistics.median(wall), "cpu_min": min(cpu), "cpu_med": statistics.median(cpu)}


def fmt(m: dict[str, float]) -> str:
    return (
        f"wall best {m['wall_min'] * 1e3:7.1f} ms  median {m['wall_med'] * 1e3:7.1f} ms | "
        f"cpu best {m['cpu_min'] * 1e3:7.1f} ms  median {m['cpu_med'] * 1e3:7.1f} ms"
    )


def stage_breakdown(q: np.ndarray, repeat: int) -> str:
    """Best thread-CPU time of each kernel of ``extract`` on the quantised frame ``q``."""
    from inspector.texture.autoregressive import ar_moments
    from inspector.texture.histogram import level_histogram
    from inspector.texture.runlength import _run_lengths
    from inspector.texture.wavelet import haar_energies

    counts = cooccurrence(q, 64, DISTANCES)
    stages = {
        "histogram": lambda: level_histogram(q, 64),
        "GLCM counts": lambda: cooccurrence(q, 64, DISTANCES),
        "GLCM features": lambda: haralick(counts),
        "run lengths": lambda: _run_lengths(q, 64),
        "AR": lambda: ar_moments(q, 64),
        "Haar": lambda: haar_energies(q, 64, 8, masked=False),
    }
    return ", ".join(f"{k} {measure(f, repeat)['cpu_min'] * 1e3:.0f} ms" for k, f in stages.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", help="image to resize to 2580x1944 (default: a magnetic-tile image)")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)

    import mahotas

    image, what = load_frame(args.image)
    print(f"frame: {what}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    t0 = time.perf_counter()
    warmup()
    print(f"warm-up (numba cache load or compile): {time.perf_counter() - t0:.2f} s")

    # correctness of the naive reference against the fast path, on this very frame
    fast = extract(image).values
    slow = naive_extract(image)
    rel = np.abs(fast - slow) / np.maximum(np.abs(slow), 1e-12)
    worst = int(np.argmax(rel))
    print(f"naive vs extract: max relative difference {rel[worst]:.2e} ({feature_names()[worst]})")

    q = prepare(image).q
    ours_glcm = lambda: haralick(cooccurrence(q, 64, DISTANCES))  # noqa: E731
    mahotas_glcm = lambda: [  # noqa: E731
        mahotas.features.haralick(q, distance=d, use_x_minus_y_variance=True) for d in DISTANCES
    ]
    m_ext = measure(lambda: extract(image), args.repeat)
    m_naive = measure(lambda: naive_extract(image), max(2, args.repeat // 3))
    m_og = measure(ours_glcm, args.repeat)
    m_mh = measure(mahotas_glcm, max(2, args.repeat // 3))
    print("extract stages (best cpu):", stage_breakdown(q, args.repeat))
    print(f"extract (281 features)        {fmt(m_ext)}")
    print(f"naive numpy (281 features)    {fmt(m_naive)}")
    print(f"our GLCM part (20 x 11)       {fmt(m_og)}")
    print(f"mahotas haralick (20 x 11)    {fmt(m_mh)}")
    print(
        f"ratios (best cpu): naive/extract = {m_naive['cpu_min'] / m_ext['cpu_min']:.1f}x, "
        f"mahotas/our GLCM = {m_mh['cpu_min'] / m_og['cpu_min']:.1f}x; "
        f"(best wall): {m_naive['wall_min'] / m_ext['wall_min']:.1f}x, {m_mh['wall_min'] / m_og['wall_min']:.1f}x"
    )
    # the lbp family: our numba riu2 kernel against scikit-image's local_binary_pattern, same frame
    from skimage.feature import local_binary_pattern

    from inspector.texture.lbp import LBP_SCALES, lbp_features, riu2_codes

    gray = image if image.ndim == 2 else prepare(image).q
    agree = np.mean([(riu2_codes(gray, p, r) == local_binary_pattern(gray, p, r, method="uniform")[r:-r, r:-r]).mean()
                     for p, r in LBP_SCALES])
    m_lbp = measure(lambda: lbp_features(gray), args.repeat)
    m_sk = measure(lambda: [local_binary_pattern(gray, p, r, method="uniform") for p, r in LBP_SCALES],
                   max(2, args.repeat // 3))
    print(f"lbp family (54 features)      {fmt(m_lbp)}")
    print(f"scikit-image LBP codes (3 r)  {fmt(m_sk)}")
    print(f"lbp: codes equal to scikit-image on {100 * agree:.3f} % of the pixels; ratio (best cpu) "
          f"scikit-image/ours = {m_sk['cpu_min'] / m_lbp['cpu_min']:.1f}x, lbp/extract = "
          f"{m_lbp['cpu_min'] / m_ext['cpu_min']:.2f}")
    budget = 0.25
    print(f"extract best cpu {m_ext['cpu_min']:.3f} s vs budget {budget} s: {'OK' if m_ext['cpu_min'] <= budget else 'OVER'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
