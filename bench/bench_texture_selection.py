"""Benchmark of the texture selection fast paths and the tablet_defect inspection latency.

Every figure is a ratio against a reference run in the same process (absolute times on a shared
machine are noise):

1. ReliefF: our vectorised ``relieff_scores`` vs skrebate's ``ReliefF`` (same weights, checked).
2. Best pair: the vectorised exact LOO accuracy of Gaussian NB over all C(281, 2) pairs vs
   scikit-learn's ``cross_val_score(GaussianNB(), LeaveOneOut())`` on a sample of pairs, extrapolated.
3. tablet_defect: per-frame latency of a 1024 × 768 synthetic tablet at ``max_side`` 512 vs full size
   (needs the default model in ``models/``).

    OPENBLAS_NUM_THREADS=1 python bench/bench_texture_selection.py [--n 120] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_relieff(n: int, repeat: int) -> None:
    from skrebate import ReliefF

    from inspector.offline.texture.selection import relieff_scores

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 281))
    y = np.repeat([0, 1], n // 2)
    X[:, 7] += y
    ref = ReliefF(n_neighbors=10, categorical_features=[], label_type="binary").fit(X.copy(), y)
    assert np.allclose(relieff_scores(X, y), ref.feature_importances_, atol=1e-12)
    t_ref = _best_of(lambda: ReliefF(n_neighbors=10, categorical_features=[], label_type="binary").fit(X.copy(), y),
                     max(1, repeat // 2))
    t_ours = _best_of(lambda: relieff_scores(X, y), repeat)
    print(f"ReliefF {n}x281: skrebate {t_ref:.3f} s, vectorised {t_ours:.4f} s -> {t_ref / t_ours:.0f}x faster")


def bench_pairs(n: int, repeat: int, sample: int = 40) -> None:
    from sklearn.model_selection import LeaveOneOut, cross_val_score
    from sklearn.naive_bayes import GaussianNB

    from inspector.offline.texture.selection import best_pair

    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 281))
    y = np.repeat([0, 1], n // 2)
    pairs = rng.choice(281, size=(sample, 2), replace=False)
    t = time.perf_counter()
    for i, j in pairs:
        cross_val_score(GaussianNB(), X[:, [i, j]], y, cv=LeaveOneOut())
    per_pair = (time.perf_counter() - t) / sample
    n_pairs = 281 * 280 // 2
    t_ours = _best_of(lambda: best_pair(X, y), repeat)
    print(f"best pair {n}x281 (all {n_pairs} pairs): sklearn LOO loop ≈ {per_pair * n_pairs:.0f} s (extrapolated "
          f"from {sample} pairs), vectorised {t_ours:.3f} s -> {per_pair * n_pairs / t_ours:.0f}x faster")


def bench_inspection(repeat: int) -> None:
    from inspector.frame import Frame, FrameMeta
    from inspector.inspections.base import InspectionContext
    from inspector.inspections.tablet_defect import TabletDefect
    from inspector.synth.tablets import render_tablet

    repo = Path(__file__).resolve().parents[1] / "models"
    if not (repo / "tablet-defect-default").is_dir():
        print("tablet_defect: no default model in models/, skipped")
        return
    img, _ = render_tablet("crack", 3)
    frame = Frame(img, FrameMeta("bench", 1, 0.0, img.shape[1], img.shape[0], "Mono8" if img.ndim == 2 else "RGB8"))
    ctx = InspectionContext(state_dir=Path("/tmp"), models_dir=repo)
    times = {}
    for side in (512, 100_000):
        insp = TabletDefect(TabletDefect.Params(version="1", max_side=side), ctx)  # the binary whole-tablet model
        insp.inspect(frame)
        times[side] = _best_of(lambda: insp.inspect(frame), repeat)
    print(f"tablet_defect {img.shape[1]}x{img.shape[0]}: full size {times[100_000] * 1e3:.0f} ms, max_side 512 "
          f"{times[512] * 1e3:.0f} ms per frame -> {times[100_000] / times[512]:.1f}x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=120, help="samples for the selection benchmarks")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    bench_relieff(a.n, a.repeat)
    bench_pairs(a.n, a.repeat)
    bench_inspection(a.repeat)


if __name__ == "__main__":
    main()
