"""Full-resolution inline tablet_defect: 2580 × 1944 frames, no downscaling, 2 workers, through the daemon.

    OPENBLAS_NUM_THREADS=1 python bench/bench_texture_fullres.py [--duration 30] [--fps 15] [--frames 8]

1. renders ``--frames`` synthetic tablets at 2580 × 1944 (seeded; cached as BMP under out/bench-fullres/);
2. in one process, with one OpenCV thread (as in a daemon worker when 2 workers share 2 cores), times per
   frame the serving path of the default patch model (``models/tablet-defect-default``, latest
   version, ``max_side`` none) against the reference run in the same process, frame by frame: the first,
   multi-pass implementation of the patch features (``tests/support/patch_reference.py``) with the same
   scoring. It prints process CPU time (every thread of the process: load-independent on a shared
   machine) and wall time, the ratio old / new, and that both give the same verdicts and scores;
   ``--with-v1`` adds the whole-tablet 281-feature model (version 1) at the same resolution;
3. runs the real daemon (``inspector run``) on those frames (replay camera, looping, ``--fps``
   paced, queue ``block`` so nothing is dropped silently; 2 workers) for ``--duration`` seconds,
   subscribes to ``result.tablet_defect.`` and prints frames/s of results, the p50/p99 frame latency
   (the header's ``acquired_at`` to the moment the subscriber has the result), the CPU time of the
   whole daemon (every process) per result, and the load average before and after.

The target in issue 14 is ≥ 15 frames/s on 2 cores. The load average says how much of the machine
other work took (the daemon itself adds ≈ 2 while it runs).
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
sys.path.insert(1, str(REPO / "tests" / "support"))  # the reference implementation (patch_reference.py)
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


def in_process(paths: list[Path], repeat: int, with_v1: bool) -> None:
    from patch_reference import patch_grid_reference

    from inspector.frame import Frame, FrameMeta
    from inspector.inspections.base import InspectionContext
    from inspector.inspections.tablet_defect import TabletDefect

    cv2.setNumThreads(1)  # what a worker gets when 2 workers share 2 cores (inspector/daemon/worker.py)
    ctx = InspectionContext(state_dir=Path(tempfile.mkdtemp()), models_dir=REPO / "models")
    imgs = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    fr = [Frame(g, FrameMeta("bench", i, 0.0, W, H, "Mono8")) for i, g in enumerate(imgs)]
    insp = TabletDefect(TabletDefect.Params(snapshot=False), ctx)  # warms the numba kernels up
    model = insp._model

    def old(i: int):  # the first implementation of the same path: features, then the same scoring
        return model.predict_grid(patch_grid_reference(imgs[i]))

    def new(i: int):
        return insp.inspect(fr[i])

    def timed(fn, i):
        t, c = time.perf_counter(), time.process_time()
        out = fn(i)
        return out, time.process_time() - c, time.perf_counter() - t

    old(0), new(0)
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    wall: dict[str, list[float]] = {"old": [], "new": []}
    same, drift = True, 0.0
    for _ in range(repeat):
        for i in range(len(fr)):  # interleaved frame by frame: the machine's load hits both alike
            a, ca, wa = timed(old, i)
            b, cb, wb = timed(new, i)
            cpu["old"].append(ca), cpu["new"].append(cb), wall["old"].append(wa), wall["new"].append(wb)
            same &= (b.verdict == "reject") == a.reject
            drift = max(drift, abs(b.scores["novelty"] - a.scores["novelty"]) / max(abs(a.scores["novelty"]), 1e-9))
    for k, label in (("old", "first implementation (reference)"), ("new", "serving path (inspect)")):
        c, w = np.array(cpu[k]), np.array(wall[k])
        print(f"{label}: process CPU median {1e3 * np.median(c):.1f} ms, best {1e3 * c.min():.1f} ms; wall median "
              f"{1e3 * np.median(w):.1f} ms per {W}x{H} frame, one OpenCV thread")
    ratio = np.median(cpu["old"]) / np.median(cpu["new"])
    print(f"new vs first implementation (median process CPU, same process, {len(cpu['new'])} frames): "
          f"{ratio:.2f}x less CPU; same verdicts: {same}; largest relative novelty-score difference {drift:.1e}; "
          f"2 workers at the new median could serve at most {2 / np.median(cpu['new']):.0f} frames/s "
          f"(before acquisition, transport and the operator thumbnail)")
    if with_v1:
        v1 = TabletDefect(TabletDefect.Params(max_side=100_000, version="1"), ctx)
        v1.inspect(fr[0])
        c = [timed(lambda i: v1.inspect(fr[i]), i)[1] for i in range(len(fr))]
        print(f"whole-tablet 281 features (v1) at full resolution: process CPU median {1e3 * np.median(c):.0f} ms "
              f"per frame ({np.median(c) / np.median(cpu['new']):.1f}x the new path)")


def profile(paths: list[Path], repeat: int) -> None:
    """Where the CPU of ``patch_grid`` goes, old and new: cProfile with a CPU timer, top calls per frame."""
    import cProfile
    import pstats

    from patch_reference import patch_grid_reference

    from inspector.texture.patches import patch_grid, warmup

    cv2.setNumThreads(1)
    warmup()
    imgs = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    for label, fn in (("first implementation", patch_grid_reference), ("now", patch_grid)):
        fn(imgs[0])
        pr = cProfile.Profile(timer=time.process_time)
        pr.enable()
        for _ in range(repeat):
            for g in imgs:
                fn(g)
        pr.disable()
        n = repeat * len(imgs)
        stats = pstats.Stats(pr).stats  # type: ignore[attr-defined]
        rows = sorted(((v[2] / n * 1e3, k[2] if k[0] == "~" else f"{Path(k[0]).name}:{k[2]}")
                       for k, v in stats.items()), reverse=True)[:10]
        print(f"patch_grid, {label}: {sum(v[2] for v in stats.values()) / n * 1e3:.1f} ms process CPU per frame; "
              "top calls (own time, ms/frame): " + ", ".join(f"{name} {ms:.1f}" for ms, name in rows))


def _tree_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by ``pid`` and every live descendant (Linux /proc), by
    process title (``inspector: worker 1`` …; workers summed as ``worker``)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parent[int(d.name)] = int(fields[1])
        ticks[int(d.name)] = int(fields[11]) + int(fields[12])
    tree, grew = {pid}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        grew = bool(more)
        tree |= more
    out: dict[str, float] = {}
    for p in tree:
        try:
            title = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        role = title.removeprefix("inspector: ").split(" ")[0] if title.startswith("inspector: ") else "other"
        out[role] = out.get(role, 0.0) + ticks.get(p, 0) / os.sysconf("SC_CLK_TCK")
    return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def through_daemon(paths: list[Path], duration: float, fps: float, snapshot: bool) -> None:
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
        "inspections": [{"name": "tablet_defect", "params": {"model": "tablet-defect-default", "snapshot": snapshot}}],
    }
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"result.tablet_defect.")
    sub.connect(endpoint)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    load_before = os.getloadavg()
    proc = subprocess.Popen([sys.executable, "-m", "inspector", "run", "--config", str(tmp / "config.yaml"),
                             "--duration", str(duration + 20)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    got: list[tuple[float, float, str]] = []
    start = None
    cpu0: dict[str, float] = {}
    cpu1: dict[str, float] = {}
    deadline = time.monotonic() + duration + 60
    while time.monotonic() < deadline:
        if sub.poll(500):
            parts = sub.recv_multipart()
            now = time.time()
            h = json.loads(parts[1])
            if start is None:
                start = now + 5.0  # skip the first 5 s (workers warming up)
            if now >= start:
                if not got:
                    cpu0 = _tree_cpu(proc.pid)
                got.append((now, now - float(h["acquired_at"]), h["verdict"]))
            if start is not None and now >= start + duration:
                cpu1 = _tree_cpu(proc.pid)
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
    n = max(1, len(t) - 1)
    per_role = {k: 1e3 * (cpu1.get(k, 0.0) - cpu0.get(k, 0.0)) / n for k in sorted(cpu1)}
    print(f"daemon, {W}x{H} Mono8, 2 workers, camera paced at {fps:g}/s, snapshot {'on' if snapshot else 'off'}: "
          f"{rate:.1f} results/s over {t[-1] - t[0]:.0f} s ({len(t)} results, verdicts {verdicts}); frame latency p50 "
          f"{np.median(lat):.0f} ms, p99 {np.percentile(lat, 99):.0f} ms, max {lat.max():.0f} ms; target 15/s -> "
          f"{100 * rate / 15:.0f} % of it; load average (1 min) {load_before[0]:.2f} before, {load[0]:.2f} at the end, "
          f"on {os.cpu_count()} CPUs")
    print(f"daemon CPU per result (every process, load-independent): {sum(per_role.values()):.0f} ms = "
          + ", ".join(f"{k} {v:.0f} ms" for k, v in per_role.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--skip-daemon", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also print where patch_grid's CPU goes, old and new")
    ap.add_argument("--with-v1", action="store_true", help="also time the whole-tablet 281-feature model (slow)")
    ap.add_argument("--snapshot", action="store_true", help="daemon: attach the PNG snapshot to rejects (the inspection's default; off in this bench unless given)")
    a = ap.parse_args()
    paths = frames(a.frames)
    print(f"load average (1 min) at the start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if a.profile:
        profile(paths, a.repeat)
    in_process(paths, a.repeat, a.with_v1)
    if not a.skip_daemon:
        through_daemon(paths, a.duration, a.fps, a.snapshot)


if __name__ == "__main__":
    main()
