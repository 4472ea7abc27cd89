"""Transport benchmark: `python bench/bench_transport.py` (same as `inspector bench transport`)."""

import argparse

from inspector.transport.bench import run_transport_bench

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=2592)
    ap.add_argument("--height", type=int, default=1944)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--transport", choices=["ipc", "tcp", "inproc"], default="ipc")
    a = ap.parse_args()
    for tr in ([a.transport] if a.transport else ["ipc", "tcp", "inproc"]):
        run_transport_bench(a.width, a.height, a.frames, tr)
