"""Soak test: run the daemon for a while at its rated frame rate and report memory at start and end.

    python bench/soak.py --minutes 30 [--config my-line.yaml] [--fps 10]

Prints the RSS of the supervisor and of each child process (from /proc) at start and end, the
frames acquired / inspected / dropped / lost, and the growth ratio end/start. Not part of CI.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def snapshot(pid: int) -> dict[int, int]:
    return {p: rss_kib(p) for p in [pid, *children(pid)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--config", help="daemon config (default: the embedded demo with a temp state dir)")
    ap.add_argument("--fps", type=float, default=None, help="override camera.fps")
    ap.add_argument("--sample-s", type=float, default=30.0)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="inspector-soak-"))
    if a.config:
        cfg_path = Path(a.config)
    else:
        cfg = yaml.safe_load((Path(__file__).parents[1] / "inspector/defaults/config.yaml").read_text())
        cfg["state_dir"] = str(tmp / "state")
        cfg["log"] = {"results": False}
        cfg_path = tmp / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ)
    if a.fps:
        env["INSPECTOR_CAMERA__FPS"] = str(a.fps)
    proc = subprocess.Popen([sys.executable, "-m", "inspector", "run", "--config", str(cfg_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    time.sleep(30)  # start-up: workers and models loaded
    start = snapshot(proc.pid)
    t0 = time.monotonic()
    print(f"start RSS (KiB): {start}", flush=True)
    while time.monotonic() - t0 < a.minutes * 60 and proc.poll() is None:
        time.sleep(a.sample_s)
        s = snapshot(proc.pid)
        print(f"{(time.monotonic() - t0) / 60:6.1f} min  total RSS {sum(s.values()) / 1024:8.1f} MiB  {s}", flush=True)
    end = snapshot(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    m = re.search(r"acquired (\d+), inspected (\d+), dropped (\d+), lost (\d+)", out)
    print(f"end RSS (KiB): {end}")
    s0, s1 = sum(start.values()), sum(end.values())
    print(f"total RSS start {s0 / 1024:.1f} MiB, end {s1 / 1024:.1f} MiB, ratio end/start {s1 / max(s0, 1):.3f}")
    print("frames:", m.group(0) if m else "(no summary: daemon output below)\n" + out[-2000:])
    return proc.returncode or 0


if __name__ == "__main__":
    raise SystemExit(main())
