"""Soak test: run the daemon for hours and report each process's memory slope after warm-up.

    python bench/soak.py --minutes 120 --preset demo          # embedded default, 5 frames/s
    python bench/soak.py --minutes 120 --preset genicam       # simulated GenTL camera, 20 frames/s
    python bench/soak.py --minutes 30 --config my-line.yaml --fps 10

Every ``--sample-s`` it reads the RSS of the supervisor and of each child from /proc, keyed by the
process title (``inspector: worker 0``…, so a restarted child continues its series). At the end it
prints, per process, RSS at the end of warm-up and at the end and the least-squares slope in MiB/h
over the samples after ``--warmup-min``, and the frame accounting; ``--out DIR`` also writes the
samples (CSV), the table (Markdown) and a PNG plot. A benchmark, not part of the test suite.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def title(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"pid {pid}"
    if raw.startswith("inspector:"):
        return raw
    if "resource_tracker" in raw:
        return "python resource tracker"
    return "fork server" if "forkserver" in raw else f"pid {pid}"


def children(pid: int) -> list[int]:
    """All descendants (the daemon's children are forked by its fork server, a child of its own)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for k in kids:
            out += [k, *children(k)]
    return out


def snapshot(pid: int) -> dict[str, int]:
    snap = {}
    for p in [pid, *children(pid)]:
        name = title(p)
        if name == f"pid {p}" and p == pid:
            name = "inspector: supervisor"
        snap[name] = rss_kib(p)
    return snap


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def preset_config(preset: str, tmp: Path) -> dict:
    cfg = yaml.safe_load((ROOT / "inspector/defaults/config.yaml").read_text())
    cfg["state_dir"] = str(tmp / "state")
    cfg["log"] = {"results": False}
    # free ports: two soaks (or a soak beside a running daemon) must not collide
    cfg["publish"] = {**cfg.get("publish", {}), "endpoint": f"tcp://127.0.0.1:{free_port()}"}
    cfg["metrics"] = {**cfg.get("metrics", {}), "listen": f"127.0.0.1:{free_port()}"}
    cfg["control"] = {**cfg.get("control", {}), "endpoint": f"tcp://127.0.0.1:{free_port()}"}
    if preset == "genicam":
        cfg["camera"] = {"driver": "genicam", "cti": None, "width": 640, "height": 480,
                         "pixel_format": "Mono8", "fps": 20}
        cfg["inspections"] = [{"name": "quality"}]
    elif preset == "demo":
        cfg["camera"] = {**cfg.get("camera", {}), "fps": 5}
    return cfg


def slope_mib_per_h(ts: list[float], kib: list[int]) -> float:
    if len(ts) < 3:
        return float("nan")
    t = np.asarray(ts) / 3600.0
    y = np.asarray(kib, dtype=float) / 1024.0
    return float(np.polyfit(t, y, 1)[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=120.0)
    ap.add_argument("--warmup-min", type=float, default=10.0)
    ap.add_argument("--preset", choices=["demo", "genicam"], default="demo")
    ap.add_argument("--config", help="daemon config (overrides --preset)")
    ap.add_argument("--fps", type=float, default=None, help="override camera.fps")
    ap.add_argument("--sample-s", type=float, default=30.0)
    ap.add_argument("--out", type=Path, help="write samples.csv, soak.md and soak.png here")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="inspector-soak-"))
    if a.config:
        cfg_path = Path(a.config)
    else:
        cfg_path = tmp / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(preset_config(a.preset, tmp)))
    env = dict(os.environ)
    if a.fps:
        env["INSPECTOR_CAMERA__FPS"] = str(a.fps)
    log_path = tmp / "daemon.log"
    with open(log_path, "w") as log:  # a file, not a pipe nobody reads (a full pipe blocks the daemon)
        proc = subprocess.Popen([sys.executable, "-m", "inspector", "run", "--config", str(cfg_path)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    series: dict[str, list[tuple[float, int]]] = defaultdict(list)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < a.minutes * 60 and proc.poll() is None:
            time.sleep(a.sample_s)
            now = time.monotonic() - t0
            snap = snapshot(proc.pid)
            for name, kib in snap.items():
                series[name].append((now, kib))
            print(f"{now / 60:6.1f} min  total RSS {sum(snap.values()) / 1024:8.1f} MiB  "
                  + "  ".join(f"{k.removeprefix('inspector: ')}={v / 1024:.1f}" for k, v in sorted(snap.items())),
                  flush=True)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    out = log_path.read_text()
    m = re.search(r"acquired (\d+), inspected (\d+), dropped (\d+), lost (\d+)", out)
    warm = a.warmup_min * 60
    rows = []
    for name, pts in sorted(series.items()):
        after = [(t, k) for t, k in pts if t >= warm]
        if not after:
            continue
        rows.append((name, after[0][1] / 1024, after[-1][1] / 1024,
                     slope_mib_per_h([t for t, _ in after], [k for _, k in after])))
    table = ["| process | RSS after warm-up (MiB) | RSS at end (MiB) | slope after warm-up (MiB/h) |",
             "|---|---|---|---|"]
    table += [f"| {n} | {r0:.1f} | {r1:.1f} | {s:+.2f} |" for n, r0, r1, s in rows]
    frames = m.group(0) if m else "(no summary)"
    summary = (f"preset {a.preset if not a.config else a.config}, {a.minutes:.0f} min, warm-up {a.warmup_min:.0f} min; "
               f"frames: {frames}" + (" (balanced)" if m and int(m.group(1)) == sum(map(int, m.groups()[1:])) else ""))
    print("\n".join(table))
    print(summary)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        with open(a.out / "samples.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["process", "seconds", "rss_kib"])
            for name, pts in series.items():
                w.writerows((name, f"{t:.1f}", k) for t, k in pts)
        (a.out / "soak.md").write_text("\n".join(table) + "\n\n" + summary + "\n")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4.5))
        for name, pts in sorted(series.items()):
            ax.plot([t / 60 for t, _ in pts], [k / 1024 for _, k in pts], label=name.removeprefix("inspector: "))
        ax.axvline(a.warmup_min, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("minutes")
        ax.set_ylabel("RSS (MiB)")
        ax.set_title(summary[:90])
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(a.out / "soak.png", dpi=110)
    return 0 if m else 1


if __name__ == "__main__":
    raise SystemExit(main())
