"""Local ONNX Runtime vs NVIDIA Triton over loopback gRPC: per-frame latency and tiles/s, one run.

For each model and each concurrency (1, 2, 4 line-PC workers, each sending one frame of 20
preprocessed 224² tiles at a time), the same frames are inferred

* **local**: one in-process ONNX Runtime session per worker (CPU, 1 intra-op thread — the daemon's
  default), the reference;
* **triton**: ``inspector.identity.triton_runtime.TritonModel`` (sha256-verified, chunked) against a
  Triton server on this machine — the real ``tritonserver`` 2.51 bundled with ``nvidia-pytriton``
  (python backend running ONNX Runtime on the exported model, ``--server-instances`` instances,
  1 thread each), started and stopped by the benchmark — or an existing server (``--server-url``).

Printed: median / p95 latency per frame, tiles/s, and the ratios triton ÷ local measured in the same
process, plus Triton's own queue and compute time per request (statistics API), so the transport and
serialisation overhead per frame = client round trip − server queue − server compute.

    python bench/bench_triton.py                                   # default model, concurrency 1 2 4
    python bench/bench_triton.py --model-dir models/excipient-identity-default/1 --backbone resnet50
    python bench/bench_triton.py --accelerator tensorrt --server-url GPUHOST:8001 --export-repo /srv/triton

``--backbone NAME`` adds an UNTRAINED model of that backbone (random weights, built with the project's
identity export; needs the train extra) — the same compute as a trained one, for throughput only.
``--accelerator tensorrt`` writes the production repository (onnxruntime_onnx, GPU instances,
TensorRT fp16) to ``--export-repo`` for a GPU host and benchmarks the server at ``--server-url``; the
bundled CPU server has neither a GPU nor the onnxruntime backend, so it cannot run that variant.
Needs the Triton environment for the local server: ``bash deploy/ci/install-triton.sh``.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inspector.identity.runtime import OrtModel  # noqa: E402
from inspector.identity.tiling import frame_tiles, preprocess, to_gray_u8  # noqa: E402
from inspector.identity.triton_runtime import TritonModel, TritonSettings  # noqa: E402
from inspector.modelrepo import ModelDir, load_model_dir  # noqa: E402
from inspector.offline.triton.export import ExportOptions, write_repository  # noqa: E402
from inspector.offline.triton.server import INSTALL_HINT, TritonServer, find_install  # noqa: E402


def sem_frames(n: int, seed: int = 95_000) -> list[np.ndarray]:
    from inspector.synth.sem import SEM_CLASSES, render_sem

    return [to_gray_u8(render_sem(SEM_CLASSES[i % len(SEM_CLASSES)], seed + i)[0]) for i in range(n)]


def build_untrained(backbone: str, work: Path) -> ModelDir:
    """An untrained identity model of ``backbone`` exported as a model version (throughput only)."""
    out = work / f"untrained-{backbone}" / "1"
    if (out / "manifest.json").is_file():
        return load_model_dir(out)
    try:  # the offline identity code moves to inspector.offline.identity
        from inspector.offline.identity.backbones import build_classifier, get_spec
        from inspector.offline.identity.export import export_model
    except ImportError:
        from inspector.identity.backbones import build_classifier, get_spec
        from inspector.identity.export import export_model
    spec = get_spec(backbone)
    model = build_classifier(spec.name, 10, weights=None)
    return export_model(model, out, name=f"untrained-{backbone}", version="1", classes=[f"c{i}" for i in range(10)],
                        backbone=spec.name, preprocess_mode=spec.preprocess_mode,
                        training={"note": "random weights: benchmark of compute only"})


def run_level(make, batches: list[np.ndarray], concurrency: int, desc: str) -> tuple[list[float], float, int]:
    """``concurrency`` threads, each with its own model from ``make()``, share the frames; returns the
    per-frame latencies (s), the wall time (s) and the tiles inferred."""
    models = [make() for _ in range(concurrency)]
    for m in models:  # warm-up (first-run allocations, gRPC channel)
        m.run(batches[0])
    lat: list[float] = []
    lock = threading.Lock()
    nxt = iter(range(len(batches)))
    bar = tqdm(total=len(batches), desc=desc, leave=False)

    def worker(m) -> None:
        while True:
            with lock:
                i = next(nxt, None)
            if i is None:
                return
            t0 = time.perf_counter()
            m.run(batches[i])
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                bar.update()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    bar.close()
    for m in models:
        getattr(m, "close", lambda: None)()
    return lat, wall, sum(len(b) for b in batches)


def summarise(runs: list[tuple[list[float], float, int]]) -> dict[str, float]:
    """Pooled latency statistics and tiles/s over the rounds of one level."""
    lat = sorted(x for r in runs for x in r[0])
    return {"median_ms": 1000 * statistics.median(lat), "mean_ms": 1000 * statistics.fmean(lat),
            "p95_ms": 1000 * lat[min(len(lat) - 1, int(0.95 * len(lat)))],
            "tiles_per_s": sum(r[2] for r in runs) / sum(r[1] for r in runs), "frames": len(lat)}


def server_stats(url: str, model: str) -> tuple[int, float, float]:
    """(requests, queue ns, compute ns) so far, from Triton's statistics API."""
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(url)
    try:
        st = c.get_inference_statistics(model).model_stats[0].inference_stats
        compute = st.compute_input.ns + st.compute_infer.ns + st.compute_output.ns
        return st.success.count, float(st.queue.ns), float(compute)
    finally:
        c.close()


def bench_model(md: ModelDir, args: argparse.Namespace, frames: list[np.ndarray], work: Path) -> list[dict]:
    mode = str(md.manifest.preprocessing.get("mode", "none"))
    batches = [preprocess(frame_tiles(f, 224)[0], mode) for f in frames]
    name = md.manifest.name
    server = None
    if args.server_url:
        url = args.server_url
        if args.accelerator == "tensorrt":
            root = write_repository(md, args.export_repo, ExportOptions(tensorrt=True, instance_kind="gpu",
                                                                        instance_count=args.server_instances),
                                    overwrite=True)
            print(f"wrote {root} (TensorRT fp16): load it on the server at {url} before this measurement")
    else:
        install = find_install()
        if install is None:
            raise SystemExit(f"no Triton server environment: run {INSTALL_HINT}")
        repo = work / f"repo-{name}"
        write_repository(md, repo, ExportOptions(backend="python", instance_kind="cpu",
                                                 instance_count=args.server_instances, queue_delay_us=0),
                         overwrite=True)
        server = TritonServer(install, repo, log_path=work / f"triton-{name}.log").start(timeout=120)
        url = server.grpc_url
    rows = []
    try:
        settings = TritonSettings(url=url, model=name, timeout_ms=600_000)
        for c in args.concurrency:
            # local and Triton alternate round by round, so a load change on a shared machine hits both
            local_runs, remote_runs, req, q, k = [], [], 0, 0.0, 0.0
            for r in range(args.rounds):
                local_runs.append(run_level(lambda: OrtModel(md, ["CPUExecutionProvider"], intra_op_threads=1),
                                            batches, c, f"{name} local c={c} round {r + 1}"))
                n0, q0, k0 = server_stats(url, name)
                remote_runs.append(run_level(lambda: TritonModel(md, settings), batches, c,
                                             f"{name} triton c={c} round {r + 1}"))
                n1, q1, k1 = server_stats(url, name)
                req, q, k = req + n1 - n0, q + q1 - q0, k + k1 - k0
            local, remote = summarise(local_runs), summarise(remote_runs)
            req = max(1, req)
            rows.append({"model": name, "concurrency": c, "local_median_ms": local["median_ms"],
                         "local_p95_ms": local["p95_ms"], "local_tiles_per_s": local["tiles_per_s"],
                         "triton_median_ms": remote["median_ms"], "triton_p95_ms": remote["p95_ms"],
                         "triton_tiles_per_s": remote["tiles_per_s"],
                         "server_queue_ms": q / req / 1e6, "server_compute_ms": k / req / 1e6,
                         # what the network hop costs a frame (one request per frame: max_batch_size >= 20):
                         # client round trip - server queue - server compute
                         "overhead_ms": remote["mean_ms"] - (q + k) / req / 1e6,
                         "latency_ratio": remote["median_ms"] / local["median_ms"],
                         "throughput_ratio": remote["tiles_per_s"] / local["tiles_per_s"],
                         "frames": local["frames"]})
    finally:
        if server is not None:
            server.stop()
    return rows


COLUMNS = [("model", "model", "{}"), ("concurrency", "c", "{}"), ("local_median_ms", "local ms/frame (p50)", "{:.1f}"),
           ("local_p95_ms", "local p95", "{:.1f}"), ("local_tiles_per_s", "local tiles/s", "{:.0f}"),
           ("triton_median_ms", "Triton ms/frame (p50)", "{:.1f}"), ("triton_p95_ms", "Triton p95", "{:.1f}"),
           ("triton_tiles_per_s", "Triton tiles/s", "{:.0f}"), ("server_queue_ms", "server queue ms/req", "{:.2f}"),
           ("server_compute_ms", "server compute ms/req", "{:.1f}"), ("overhead_ms", "gRPC overhead ms/frame", "{:.1f}"), ("latency_ratio", "latency × local", "{:.2f}"),
           ("throughput_ratio", "tiles/s × local", "{:.2f}")]


def markdown(rows: list[dict]) -> str:
    out = ["| " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        out.append("| " + " | ".join(f.format(r[k]) for k, _, f in COLUMNS) + " |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", action="append", help="model version folder(s) (default: the default model)")
    ap.add_argument("--backbone", action="append", default=[],
                    help="also an untrained model of this backbone (e.g. resnet50; random weights, compute only)")
    ap.add_argument("--frames", type=int, default=12, help="frames (of 20 tiles) per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--rounds", type=int, default=3, help="alternating local / Triton rounds per level")
    ap.add_argument("--server-instances", type=int, default=2, help="model instances on the Triton server")
    ap.add_argument("--server-url", help="benchmark an existing Triton server (host:port) instead of the local one")
    ap.add_argument("--accelerator", choices=("none", "tensorrt"), default="none",
                    help="tensorrt: export the TensorRT fp16 repository for a GPU host (needs --server-url)")
    ap.add_argument("--export-repo", type=Path, help="where --accelerator tensorrt writes the repository")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench-triton", help="CSV + Markdown report folder")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the finally blocks stop the server
    if args.accelerator == "tensorrt" and not (args.server_url and args.export_repo):
        ap.error("--accelerator tensorrt needs a GPU host's Triton (--server-url) and --export-repo; "
                 "the bundled CPU server has no GPU and no onnxruntime backend")
    args.out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]  # a shared machine: the report says how busy it was
    with tempfile.TemporaryDirectory(prefix="bench-triton-") as tmp:
        work = Path(tmp)
        mds = [load_model_dir(p) for p in (args.model_dir or [REPO / "models" / "excipient-identity-default" / "1"])]
        for b in args.backbone:
            mds.append(build_untrained(b, args.out / "models"))
        frames = sem_frames(args.frames)
        rows = [r for md in mds for r in bench_model(md, args, frames, work)]
    table = markdown(rows)
    print(table)
    print(f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} CPUs)")
    with open(args.out / "bench_triton.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (args.out / "bench_triton.md").write_text(
        f"# Local ONNX Runtime vs Triton (loopback gRPC)\n\n`{' '.join(sys.argv)}` — {os.cpu_count()} CPUs, "
        f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at the end\n\n"
        f"{table}\n", encoding="utf-8")
    print(f"\nwrote {args.out / 'bench_triton.csv'} and {args.out / 'bench_triton.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
