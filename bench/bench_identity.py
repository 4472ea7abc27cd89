"""Benchmark the identity CNN: TensorFlow vs ONNX Runtime fp32 vs ONNX Runtime int8, in one process.

For each backbone, one frame = its 20 tiles in one batch, with the outputs serving needs (probs, last
conv map, pooled features). Reports per-frame latency (median), tiles/s, and ratios against the
TensorFlow run measured in the same process (timings on a shared machine are noisy; ratios are what
to compare). Also the numpy Grad-CAM cost per frame and int8/fp32 top-1 agreement on the measured tiles.

    OPENBLAS_NUM_THREADS=1 python bench/bench_identity.py                     # resnet50 + default model, CPU
    OPENBLAS_NUM_THREADS=1 python bench/bench_identity.py --backbones efficientnet_lite0,tiny
    python bench/bench_identity.py --backbones default --providers TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider

"default" is the shipped models/excipient-identity-default (latest version); its TensorFlow twin is the
same architecture with random weights (speed does not depend on the weight values). "efficientnet_lite0"
is the shipped default when that is a Lite0 model (version 2), otherwise Lite0 with ImageNet weights and a
random head. int8 is calibrated on real SEM tiles (``--real``, default ../shared/datasets/sem-microplastics,
every other frame) and its top-1 agreement with fp32 is measured on the *other* real frames; it is
accepted only at >= 99 % (synthetic frames are used, and said so, when the real set is absent).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def sem_tiles(n_frames: int) -> list[np.ndarray]:
    """Grey uint8 tiles of synthetic SEM frames (one array of 20 tiles per frame)."""
    from inspector.identity.tiling import frame_tiles
    from inspector.synth.sem import SEM_CLASSES, render_sem

    return [frame_tiles(render_sem(SEM_CLASSES[i % len(SEM_CLASSES)], 70_000 + i)[0])[0] for i in range(n_frames)]


def real_tiles(root: Path, n_frames: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(calibration, held-out) tiles of real SEM frames spread over the classes: alternate frames."""
    from inspector.identity.tiling import frame_tiles
    from inspector.offline.identity.data import list_frames, read_frame

    _, frames = list_frames(root)
    pick = [frames[int(i)][0] for i in np.linspace(0, len(frames) - 1, 2 * n_frames).round()]
    tiles = [frame_tiles(read_frame(p))[0] for p in pick]
    return tiles[0::2], tiles[1::2]


def timeit(fn, reps: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def tf_runner(model, x: np.ndarray):
    import tensorflow as tf

    from inspector.offline.identity.backbones import explainer_model

    explainer = explainer_model(model)

    @tf.function(input_signature=[tf.TensorSpec((None, *x.shape[1:]), tf.float32)])
    def step(t):
        return explainer(t, training=False)

    xt = tf.constant(x)
    return lambda: [o.numpy() for o in step(xt)]


def bench_backbone(name: str, frames: list[np.ndarray], args: argparse.Namespace, tmp: Path) -> list[dict]:
    import keras

    from inspector.offline.identity.backbones import build_classifier, get_spec
    from inspector.offline.identity.export import export_model
    from inspector.identity.gradcam import HEAD_ARTIFACT, DenseHead, gradcam
    from inspector.offline.identity.quantize import INT8_ARTIFACT, quantize_onnx
    from inspector.identity.runtime import OrtModel
    from inspector.identity.tiling import preprocess
    from inspector.modelrepo import Manifest, load_model_dir, resolve, write_model_dir

    keras.utils.set_random_seed(0)
    default = resolve(REPO / "models", "excipient-identity-default")
    if name == "efficientnet_lite0" and default.manifest.extra["backbone"] == "efficientnet_lite0":
        name = "default"
    if name == "default":
        md = default
        spec = get_spec(md.manifest.extra["backbone"])
        model = build_classifier(spec.name, len(md.manifest.classes), hidden=md.manifest.extra["head"]["hidden"])
        label = f"default v{md.manifest.version} ({spec.name})"
    elif name == "efficientnet_lite0":
        spec = get_spec(name)
        model = build_classifier(spec.name, 10, weights="imagenet")
        label = f"{spec.name} (ImageNet backbone, random head)"
        md = export_model(model, tmp / spec.name / "1", name=spec.name, version="1", classes=[f"c{i}" for i in range(10)],
                          backbone=spec.name, preprocess_mode=spec.preprocess_mode)
    else:
        spec = get_spec(name)
        model = build_classifier(spec.name, 10, weights=None)
        label = spec.name
        md = export_model(model, tmp / spec.name / "1", name=spec.name, version="1", classes=[f"c{i}" for i in range(10)],
                          backbone=spec.name, preprocess_mode=spec.preprocess_mode)
    x = preprocess(frames[0], spec.preprocess_mode)
    calib_frames, held_frames = args.real_tiles if args.real_tiles else (frames[1:2], frames[2:])
    calib = np.concatenate([preprocess(f, spec.preprocess_mode) for f in calib_frames])
    held = np.concatenate([preprocess(f, spec.preprocess_mode) for f in held_frames])
    rows = []
    print(f"\n== {label}: {len(x)} tiles per frame, {args.reps} timed frames per engine", flush=True)
    t_tf = timeit(tf_runner(model, x), args.reps)
    rows.append({"backbone": label, "engine": "TensorFlow (tf.function)", "times": t_tf})
    fp32 = OrtModel(md, args.providers, cache_dir=tmp / "trt-cache", intra_op_threads=args.threads)
    t32 = timeit(lambda: fp32.run(x), args.reps)
    rows.append({"backbone": label, "engine": f"ORT fp32 [{fp32.provider}]", "times": t32})
    int8_dir = tmp / f"{spec.name}-int8"
    int8_dir.mkdir(exist_ok=True)
    t = time.perf_counter()
    quantize_onnx(md.artifact("model.onnx"), int8_dir / INT8_ARTIFACT, calib, progress=False)
    print(f"   int8 calibration on {len(calib)} tiles: {time.perf_counter() - t:.1f} s", flush=True)
    for f in ("model.onnx", HEAD_ARTIFACT):
        shutil.copyfile(md.artifact(f), int8_dir / f)
    m = md.manifest
    write_model_dir(int8_dir, Manifest(name=m.name, version="int8", task=m.task, classes=m.classes,
                                       artifacts={INT8_ARTIFACT: {}, "model.onnx": {}, HEAD_ARTIFACT: {}},
                                       preprocessing=m.preprocessing, extra={**m.extra, "precision": "int8"}))
    q = OrtModel(load_model_dir(int8_dir), args.providers, cache_dir=tmp / "trt-cache",
                 intra_op_threads=args.threads, precision="int8")
    t8 = timeit(lambda: q.run(x), args.reps)
    top32 = np.concatenate([fp32.run(held[i:i + 20])["probs"].argmax(1) for i in range(0, len(held), 20)])
    top8 = np.concatenate([q.run(held[i:i + 20])["probs"].argmax(1) for i in range(0, len(held), 20)])
    agree = float(np.mean(top8 == top32))
    where = "real SEM" if args.real_tiles else "synthetic SEM"
    verdict = "accepted" if agree >= 0.99 else "REFUSED (< 99 %)"
    caveat = "" if name == "default" else "; random-init weights: near ties" if "random" not in label else "; random head"
    rows.append({"backbone": label, "engine": f"ORT int8 QDQ [{q.provider}]", "times": t8,
                 "note": f"top-1 agreement with fp32 {agree:.1%} on {len(held)} held-out {where} tiles: "
                         f"{verdict}{caveat}"})
    out = fp32.run(x)
    head = DenseHead.load(md.artifact(HEAD_ARTIFACT))
    tg = timeit(lambda: gradcam(out["conv_map"], out["pooled"], head, out["probs"].mean(0).argmax()), args.reps)
    rows.append({"backbone": label, "engine": "numpy Grad-CAM (20 tiles)", "times": tg, "no_ratio": True})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="resnet50,default", help="comma list: default, tiny, resnet50, vgg16, …")
    p.add_argument("--providers", default="CPUExecutionProvider",
                   help="ONNX Runtime providers in order, e.g. TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider")
    p.add_argument("--reps", type=int, default=10, help="timed frames per engine")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (TF and ORT alike)")
    p.add_argument("--real", default=str(REPO.parent / "shared" / "datasets" / "sem-microplastics"),
                   help="folder of real SEM frames (class sub-folders) for int8 calibration and agreement")
    p.add_argument("--real-frames", type=int, default=12, help="real frames to calibrate on (as many held out)")
    args = p.parse_args(argv)
    args.real_tiles = real_tiles(Path(args.real), args.real_frames) if Path(args.real).is_dir() else None
    if args.real_tiles is None:
        print(f"real SEM frames not found at {args.real}: int8 agreement measured on synthetic frames", flush=True)
    args.providers = [s.strip() for s in args.providers.split(",") if s.strip()]

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    frames = sem_tiles(3)  # frame 0 is timed; frames 1-2 calibrate int8
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [b.strip() for b in args.backbones.split(",") if b.strip()]:
            rows += bench_backbone(name, frames, args, Path(tmp))
    print(f"\nidentity CNN, one frame = 20 tiles of 224x224; {args.threads} threads; median of {args.reps}; "
          f"{os.cpu_count()} CPUs (shared machine: compare ratios)\n")
    print("| backbone | engine | ms / frame | tiles / s | speed vs TF |")
    print("|---|---|---:|---:|---:|")
    ref = None
    for r in rows:
        med = statistics.median(r["times"])
        if r["engine"].startswith("TensorFlow"):
            ref = med
        ratio = "" if r.get("no_ratio") or ref is None else f"{ref / med:.2f}x"
        print(f"| {r['backbone']} | {r['engine']} | {1000 * med:.1f} | {20 / med:.0f} | {ratio} |"
              + (f" {r['note']}" if r.get("note") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
