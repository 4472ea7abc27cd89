"""CLI of identity training and evaluation (TensorFlow is imported inside the handlers only).

    inspector train identity DATA_DIR --backbone resnet50 --weights imagenet|PATH|none \\
        --out models/<name>/<version> [--lr 1e-2 --batch 16 | --grid] [--epochs 100 --patience 10]
    inspector train identity DATA_DIR --backbone efficientnet_lite0 --weights imagenet --out … \\
        [--train-layers head|last_block] [--cache DIR]      (cached frozen-backbone features: minutes on a CPU)
    inspector evaluate identity DATA_DIR --folds 5 --report OUT_DIR [--backbone …] [--grid] [--epochs …]

DATA_DIR holds one sub-folder of full SEM frames per class.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

from inspector.errors import InspectorError


def _floats(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals or any(not v > 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return vals


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _common(p: argparse.ArgumentParser, backbone_default: str) -> None:
    from inspector.offline.identity.backbones import BACKBONES
    from inspector.offline.identity.train import PAPER_BATCHES, PAPER_LRS

    p.add_argument("data_dir", metavar="DATA_DIR", help="one sub-folder of full frames per class")
    p.add_argument("--backbone", default=backbone_default, choices=sorted(BACKBONES),
                   help=f"CNN backbone (default {backbone_default})")
    p.add_argument("--weights", default="imagenet", metavar="imagenet|PATH|none",
                   help="backbone weights: ImageNet from the Keras cache (falls back to training from scratch "
                        "when absent, and the report says so), a no-top weights file, or none")
    p.add_argument("--lr", type=float, default=1e-2, help="learning rate without --grid (default 1e-2)")
    p.add_argument("--batch", type=int, default=16, help="batch size without --grid (default 16)")
    p.add_argument("--grid", action="store_true",
                   help="search learning rate × batch size (paper grid), best by validation accuracy")
    p.add_argument("--lrs", type=_floats, default=PAPER_LRS, metavar="LR,…",
                   help="grid learning rates (default " + ",".join(f"{v:g}" for v in PAPER_LRS) + ")")
    p.add_argument("--batches", type=_ints, default=PAPER_BATCHES, metavar="B,…",
                   help="grid batch sizes (default " + ",".join(map(str, PAPER_BATCHES)) + ")")
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs (default 100)")
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs (default 10)")
    p.add_argument("--hidden", type=int, default=256, help="units of the head's dense layer (default 256)")
    p.add_argument("--dropout", type=float, default=0.5, help="head dropout (default 0.5)")
    p.add_argument("--train-layers", choices=("auto", "head", "last_block", "all"), default="auto",
                   help="layers to train: head only (backbone frozen), last conv block + head (paper), all, or "
                        "auto = last_block with pretrained weights and all when training from scratch (default)")
    p.add_argument("--features", choices=("auto", "cached", "end_to_end"), default="auto",
                   help="auto (default): with a pretrained efficientnet_lite0 and --train-layers head|last_block, "
                        "compute the frozen backbone's tile features once, cache them on disk and train on them "
                        "(minutes on a CPU); cached: require that; end_to_end: run the whole network every epoch")
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="feature cache folder (default $INSPECTOR_CACHE/embeddings or ~/.cache/inspector/embeddings)")
    p.add_argument("--augment", action="store_true", help="random flips and quarter turns (not in the paper)")
    p.add_argument("--seed", type=int, default=0, help="random seed of splits and initialisation")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    t = groups["train"].add_parser(
        "identity", help="train the excipient-identity CNN (transfer learning) and export it (ONNX + manifest)",
        description="Train on every frame of DATA_DIR (per class, a fifth of the frames validate) and write "
                    "the model version folder --out (model.onnx, head.npz, manifest.json).")
    _common(t, "resnet50")
    t.add_argument("--out", required=True, metavar="MODEL_DIR", help="model version folder, e.g. models/<name>/<version>")
    t.add_argument("--name", help="model name (default: the parent folder name of --out)")
    t.add_argument("--version", help="model version (default: the folder name of --out)")
    t.add_argument("--val-fraction", type=float, default=0.2, help="fraction of each class's frames for validation")
    t.add_argument("--report", metavar="DIR", help="also write a training report (curves, grid heat map)")
    t.add_argument("--keras", metavar="FILE.keras", help="also save the Keras model (+ FILE.json with classes)")
    t.add_argument("--calibrate", metavar="DIR",
                   help="then calibrate the unknown-material check and both lot-drift views on DIR (frames of the "
                        "same classes, not the training frames; as `inspector calibrate openset`, defaults)")
    t.set_defaults(func=cmd_train)

    e = groups["evaluate"].add_parser(
        "identity", help="k-fold cross-validation of the identity CNN by source frame, with a report",
        description="Cross-validation as in the paper: per class, each fold tests on 1/k of the frames, "
                    "validates on the next 1/k and trains on the rest. Writes PNG figures, metrics.json, report.md.")
    _common(e, "resnet50")
    e.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    e.add_argument("--report", required=True, metavar="OUT_DIR", help="report folder")
    e.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM figures")
    e.set_defaults(func=cmd_evaluate)

    b = groups["evaluate"].add_parser(
        "identity-groups", help="identity CNNs on real images: grouped (product/session) vs random CV, with a report",
        description="Cross-validate pretrained EfficientNet-Lite0 (frozen / last block fine-tuned) and the tiny "
                    "CNN from scratch on DATA/<class>/<file>, grouping frames by file-name prefix "
                    "(see inspector/offline/identity/benchmark.py). Writes summary.md/json and one report per run.")
    b.add_argument("data_dir", metavar="DATA_DIR")
    b.add_argument("--report", required=True, metavar="OUT_DIR")
    b.add_argument("--models", default="lite0_frozen,lite0_finetune,tiny",
                   help="comma-separated: lite0_frozen, lite0_finetune, tiny")
    b.add_argument("--protocols", default="grouped,random", help="comma-separated: grouped, random")
    b.add_argument("--folds", type=int, default=3)
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--tiny-repeats", type=int, default=None, help="repeats for the (slow) tiny CNN (default --repeats)")
    b.add_argument("--epochs", type=int, default=30)
    b.add_argument("--patience", type=int, default=8)
    b.add_argument("--limit-per-class", type=int, default=0, help="use only the first N frames of each class (smoke runs)")
    b.add_argument("--cache", metavar="DIR", default=None)
    b.add_argument("--train-tiles-per-frame", type=int, default=0,
                   help="end-to-end models (tiny) train on at most N random tiles per training frame (CPU budget)")
    b.add_argument("--no-gradcam", action="store_true")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=cmd_groups)


def _command_line() -> str:
    return "inspector " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _config(args: argparse.Namespace) -> Any:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from inspector.offline.identity.train import TrainConfig

    weights = None if str(args.weights).lower() == "none" else args.weights
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise InspectorError(f"--weights: {weights} is neither 'imagenet', 'none' nor an existing file")
    cfg = TrainConfig(backbone=args.backbone, weights=weights, lr=args.lr, batch=args.batch, epochs=args.epochs,
                      patience=args.patience, hidden=args.hidden, dropout=args.dropout,
                      train_layers=args.train_layers, augment=args.augment, seed=args.seed, threads=args.threads,
                      features=args.features, cache_dir=args.cache)
    cfg.check()
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from inspector.offline.identity.final import train_identity

    out = train_identity(args.data_dir, args.out, cfg, name=args.name, version=args.version, grid=args.grid,
                         lrs=args.lrs, batches=args.batches, val_fraction=args.val_fraction, split_seed=args.seed,
                         report_dir=args.report, keras_path=args.keras, command=_command_line(),
                         progress=not args.no_progress)
    m = out.model_dir.manifest
    print(f"trained {cfg.backbone} ({out.config['weights']}; {out.config['train_layers']}, "
          f"{out.config['features']} features): lr {out.fit.lr:g}, batch {out.fit.batch}, "
          f"best epoch {out.fit.best_epoch}/{out.fit.epochs_run}, validation tile accuracy "
          f"{out.val_metrics['accuracy']:.3f}")
    print(f"exported {m.name}/{m.version} to {out.model_dir.path} (sha256 {m.sha256[:12]}…)")
    if out.report_files:
        print(f"report: {out.report_files['report']}")
    if args.calibrate:
        from inspector.offline.identity.openset_fit import calibrate_model

        _, block = calibrate_model(out.model_dir.path, args.calibrate, cache_dir=args.cache,
                                   progress=not args.no_progress, command=_command_line())
        print(f"calibrated the open-set check (threshold {block['threshold']:.4g} on {block['holdout_frames']} "
              f"held-out frames) and lot drift ({', '.join(['embedding'] + (['morphology'] if 'morphology' in block['drift'] else []))})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from inspector.offline.identity.data import load_dataset
    from inspector.offline.identity.evaluate import cross_validate
    from inspector.offline.identity.report import write_cv_report

    data = load_dataset(args.data_dir, tile=cfg.tile, progress=not args.no_progress)
    result = cross_validate(data, cfg, folds=args.folds, grid=args.grid, lrs=args.lrs, batches=args.batches,
                            split_seed=args.seed, progress=not args.no_progress)
    files = write_cv_report(result, data, args.report, command=_command_line(), gradcam=not args.no_gradcam)
    s = result.summary()
    print(f"{args.folds}-fold CV, {cfg.backbone} ({result.config['weights']}): tile accuracy "
          f"{s['tiles']['mean_accuracy']:.3f} ± {s['tiles']['std_accuracy']:.3f}, mean F "
          f"{s['tiles']['mean_f1']:.3f}, frame accuracy {s['frames']['mean_accuracy']:.3f}")
    print(f"report: {files['report']}")
    return 0


def cmd_groups(args: argparse.Namespace) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from inspector.offline.identity.benchmark import MODELS, run_benchmark
    from inspector.offline.identity.data import load_dataset, subset_per_class

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    bad = [m for m in models if m not in MODELS] + [p for p in protocols if p not in ("grouped", "random")]
    if bad or not models or not protocols:
        raise InspectorError(f"unknown model/protocol {bad} (models: {', '.join(MODELS)}; protocols: grouped, random)")
    data = load_dataset(args.data_dir, progress=not args.no_progress)
    if args.limit_per_class:
        data = subset_per_class(data, args.limit_per_class)
    s = run_benchmark(data, args.report, models=models, protocols=protocols, folds=args.folds, repeats=args.repeats,
                      epochs=args.epochs, patience=args.patience, cache_dir=args.cache,
                      repeats_for={"tiny": args.tiny_repeats} if args.tiny_repeats else None,
                      gradcam=not args.no_gradcam, command=_command_line(), progress=not args.no_progress,
                      train_tiles_per_frame=args.train_tiles_per_frame)
    for key, r in s["results"].items():
        f = r["frame_macro_f1"]
        print(f"{key}: frame macro-F1 {f['mean']:.3f} ± {f['sd']:.3f} over {f['n']} folds")
    print(f"report: {args.report}/summary.md")
    return 0
