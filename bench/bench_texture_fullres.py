"""Full-resolution inline tablet_defect: 2580 × 1944 frames, no downscaling, 2 workers, through the daemon.

    OPENBLAS_NUM_THREADS=1 python bench/bench_texture_fullres.py [--duration 30] [--fps 15] [--frames 6]

1. renders ``--frames`` synthetic tablets at 2580 × 1944 (seeded; cached as BMP under out/bench-fullres/);
2. in one process, times the default patch model (``models/tablet-defect-default``, latest version,
   ``max_side`` none) per frame, against the reference run in the same process: the whole-tablet
   281-feature model (version 1) at the same full resolution — a ratio, not a timed assert;
3. runs the real daemon (``inspector run``) on those frames (replay camera, looping, ``--fps``
   paced, queue ``block`` so nothing is dropped silently; 2 workers) for ``--duration`` seconds,
   subscribes to ``result.tablet_defect.`` and prints frames/s of results and the p50/p99 frame
   latency (the header's ``acquired_at`` to the moment the subscriber has the result).

The target in issue 14 is ≥ 15 frames/s on 2 cores. The printout says how far this machine is from
it, with its load average (the numbers from a shared, loaded machine are pessimistic).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
W, H = 2580, 1944
CLASSES = ("good", "chip", "crack", "good", "moisture", "temperature", "good", "humidity")


def frames(n: int) -> list[Path]:
    from inspector.synth.tablets import render_tablet

    out = REPO / "out" / "bench-fullres"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        cls = CLASSES[i % len(CLASSES)]
        p = out / f"{i:02d}_{cls}.bmp"
        if not p.is_file():
            img, _ = render_tablet(cls, 100 + i, severity=None if cls == "good" else 2, width=W, height=H)
            cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def in_process(paths: list[Path], repeat: int) -> None:
    from inspector.frame import Frame, FrameMeta
    from inspector.inspections.base import InspectionContext
    from inspector.inspections.tablet_defect import TabletDefect

    ctx = InspectionContext(state_dir=Path(tempfile.mkdtemp()), models_dir=REPO / "models")
    imgs = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    fr = [Frame(g, FrameMeta("bench", i, 0.0, W, H, "Mono8")) for i, g in enumerate(imgs)]
    res = {}
    for label, params in (("patch model (default, latest)", {}), ("whole-tablet 281 features (v1)", {"version": "1"})):
        insp = TabletDefect(TabletDefect.Params(max_side=None, **params), ctx)
        insp.inspect(fr[0])
        times, verdicts = [], []
        for _ in range(repeat):
            for f in fr:
                t = time.perf_counter()
                r = insp.inspect(f)
                times.append(time.perf_counter() - t)
                verdicts.append(r.verdict)
        res[label] = np.array(times)
        print(f"{label}: median {1e3 * np.median(times):.0f} ms, best {1e3 * np.min(times):.0f} ms per "
              f"{W}x{H} frame (one core); verdicts {verdicts[:len(fr)]} for {[p.stem for p in paths]}")
    a, b = res.values()
    print(f"patch model vs whole-tablet features at full resolution: {np.median(b) / np.median(a):.1f}x faster")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def through_daemon(paths: list[Path], duration: float, fps: float) -> None:
    import yaml
    import zmq

    tmp = Path(tempfile.mkdtemp(prefix="bench-fullres-"))
    endpoint = f"tcp://127.0.0.1:{_port()}"
    cfg = {
        "camera": {"driver": "replay", "path": str(paths[0].parent), "loop": True, "fps": fps},
        "workers": 2, "queue": {"capacity": 8, "when_full": "block"},
        "publish": {"endpoint": endpoint}, "metrics": {"listen": f"127.0.0.1:{_port()}"},
        "control": {"endpoint": f"tcp://127.0.0.1:{_port()}"}, "state_dir": str(tmp / "state"),
        "models_dir": str(REPO / "models"), "log": {"results": False},
        "inspections": [{"name": "tablet_defect", "params": {"model": "tablet-defect-default", "snapshot": False}}],
    }
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"result.tablet_defect.")
    sub.connect(endpoint)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "inspector", "run", "--config", str(tmp / "config.yaml"),
                             "--duration", str(duration + 20)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    got: list[tuple[float, float, str]] = []
    start = None
    deadline = time.monotonic() + duration + 60
    while time.monotonic() < deadline:
        if sub.poll(500):
            parts = sub.recv_multipart()
            now = time.time()
            h = json.loads(parts[1])
            if start is None:
                start = now + 5.0  # skip the first 5 s (workers warming up)
            if now >= start:
                got.append((now, now - float(h["acquired_at"]), h["verdict"]))
            if start is not None and now >= start + duration:
                break
        elif proc.poll() is not None:
            break
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    sub.close(0)
    ctx.term()
    if len(got) < 2:
        print(f"daemon: fewer than 2 results in the window; stderr tail: {proc.stderr.read()[-800:] if proc.stderr else ''}")
        return
    t = np.array([g[0] for g in got])
    lat = np.array([g[1] for g in got]) * 1e3
    rate = (len(t) - 1) / (t[-1] - t[0])
    verdicts = {v: sum(g[2] == v for g in got) for v in {g[2] for g in got}}
    load = os.getloadavg()
    print(f"daemon, {W}x{H} Mono8, 2 workers, camera paced at {fps:g}/s: {rate:.1f} results/s over "
          f"{t[-1] - t[0]:.0f} s ({len(t)} results, verdicts {verdicts}); frame latency p50 {np.median(lat):.0f} ms, "
          f"p99 {np.percentile(lat, 99):.0f} ms; target 15/s -> {100 * rate / 15:.0f} % of it; "
          f"load average {load[0]:.1f} on {os.cpu_count()} CPUs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--skip-daemon", action="store_true")
    a = ap.parse_args()
    paths = frames(a.frames)
    in_process(paths, a.repeat)
    if not a.skip_daemon:
        through_daemon(paths, a.duration, a.fps)


if __name__ == "__main__":
    main()
