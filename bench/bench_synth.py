"""Benchmark the synthetic-scene generators on ONE core.

Prints SEM frames/s per class (1280×960, no data bar) and tablet images/s per class (1024×768),
each with its cost relative to a reference measured in the same process: one 1280×960 float32
``Generator.standard_normal`` draw plus one ``cv2.GaussianBlur`` (σ = 1.5) — the least work any
noisy, blurred synthetic frame needs. Ratios are comparable across machines and load; absolute
frames/s are not (timings on a shared machine are noisy: the median of several runs is reported).

    OPENBLAS_NUM_THREADS=1 python bench/bench_synth.py [--frames 5] [--target 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def _median_time(fn, n: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds per call. With one thread, CPU time is the one-core cost even
    when other processes share the machine; wall time includes waiting for the core."""
    wall, cpu = [], []
    for i in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return statistics.median(wall), statistics.median(cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5, help="frames per class (median reported)")
    ap.add_argument("--target", type=float, default=5.0, help="SEM frames/s target")
    ap.add_argument("--skip-tablets", action="store_true")
    args = ap.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)

    from inspector.synth.sem import SEM_CLASSES, render_sem
    from inspector.synth.tablets import TABLET_CLASSES, render_tablet

    rng = np.random.Generator(np.random.PCG64(0))

    def reference(_: int) -> None:
        x = rng.standard_normal((960, 1280), dtype=np.float32)
        cv2.GaussianBlur(x, (0, 0), 1.5)

    render_sem(SEM_CLASSES[0], 0)  # warm-up (noise LUT, imports)
    ref_wall, ref_cpu = _median_time(reference, 15)
    print(f"reference (normal 1280x960 float32 + GaussianBlur): wall {ref_wall * 1e3:.1f} ms, CPU {ref_cpu * 1e3:.1f} ms")
    hdr = f"{'ms wall':>8s} {'ms CPU':>8s} {'/s (CPU)':>9s} {'x ref':>6s}"
    print(f"{'SEM class':24s} {hdr}")
    rates = []
    for c in SEM_CLASSES:
        w, t = _median_time(lambda i, c=c: render_sem(c, 1000 + i), args.frames)
        rates.append(1.0 / t)
        print(f"{c:24s} {w * 1e3:8.1f} {t * 1e3:8.1f} {1.0 / t:9.2f} {t / ref_cpu:6.1f}")
    worst, mean = min(rates), len(rates) / sum(1.0 / r for r in rates)
    print(f"SEM on one core (CPU time): all-class mean {mean:.2f} frames/s, slowest class {worst:.2f} frames/s; "
          f"target {args.target:g}: {'met' if worst >= args.target else 'NOT met'} by the slowest class, "
          f"{'met' if mean >= args.target else 'NOT met'} on average")
    if not args.skip_tablets:
        print(f"{'tablet class (view)':24s} {hdr}")
        for c in TABLET_CLASSES:
            for view in ("whole", "closeup"):
                w, t = _median_time(lambda i, c=c, v=view: render_tablet(c, 2000 + i, view=v), args.frames)
                print(f"{c + ' (' + view + ')':24s} {w * 1e3:8.1f} {t * 1e3:8.1f} {1.0 / t:9.2f} {t / ref_cpu:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
