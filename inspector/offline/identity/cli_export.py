"""CLI of the identity serving side: export to ONNX, int8 quantisation, and the default model.

    inspector export identity KERAS_MODEL --out MODELS/<name>/<version> [--classes a,b,…]
    inspector quantize identity MODEL_DIR --calib DATA_DIR --out MODELS/<name>/<version>
    inspector train identity-default [--out models/excipient-identity-default/1]

Heavy libraries (TensorFlow, tf2onnx, onnxruntime.quantization) are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from inspector.errors import InspectorError

DEFAULT_NAME = "excipient-identity-default"


def _group(sub: argparse._SubParsersAction, verb: str, help_: str) -> argparse._SubParsersAction:
    """The sub-command group of a top-level verb, created unless another plugin already made it."""
    parser = sub.choices.get(verb)
    if parser is None:
        parser = sub.add_parser(verb, help=help_)
        return parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for action in parser._actions:  # reuse the existing group (argparse has no public accessor)
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError(f"top-level command {verb!r} exists without sub-commands")


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    export = _group(sub, "export", "export a trained model for serving")
    p = export.add_parser("identity", help="Keras identity classifier -> ONNX model version with manifest")
    p.add_argument("keras_model", metavar="KERAS_MODEL", help="a .keras file saved by `inspector train identity`")
    p.add_argument("--out", required=True, help="model version folder, e.g. models/<name>/<version>")
    p.add_argument("--name", help="model name (default: the parent folder of --out)")
    p.add_argument("--version", help="model version (default: the name of --out)")
    p.add_argument("--classes", help="comma-separated class names in output order "
                                     "(default: 'classes' from a JSON beside the model)")
    p.add_argument("--backbone", help="backbone name (default: from the model name identity_<backbone>)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--metrics", help="JSON file of metrics to record in the manifest")
    p.set_defaults(func=cmd_export)

    quantize = _group(sub, "quantize", "int8 quantisation of a served model")
    q = quantize.add_parser("identity", help="int8 static quantisation, accepted only if top-1 agreement >= 99 %%")
    q.add_argument("model_dir", metavar="MODEL_DIR", help="an exported fp32 model version folder")
    q.add_argument("--calib", required=True, metavar="DATA_DIR", help="class sub-folders of full frames")
    q.add_argument("--out", required=True, help="new model version folder")
    q.add_argument("--min-agreement", type=float, default=0.99)
    q.add_argument("--heldout-fraction", type=float, default=0.5,
                   help="fraction of each class's frames held out to measure agreement (never calibrated on)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=cmd_quantize)

    d = groups["train"].add_parser("identity-default", help="rebuild the default identity model from synthetic SEM frames")
    d.add_argument("--out", default=f"models/{DEFAULT_NAME}/1")
    d.add_argument("--backbone", default="tiny")
    d.add_argument("--per-class", type=int, default=10, help="synthetic frames per class")
    d.add_argument("--test-per-class", type=int, default=3, help="extra frames per class for the test metrics")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--epochs", type=int, default=16)
    d.add_argument("--patience", type=int, default=6)
    d.add_argument("--lr", type=float, default=1e-2)
    d.add_argument("--batch", type=int, default=32)
    d.add_argument("--hidden", type=int, default=64)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_default)


def _command_line() -> str:
    return "inspector " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _classes_for(model_path: Path, given: str | None) -> list[str]:
    if given:
        return [c.strip() for c in given.split(",") if c.strip()]
    for cand in (model_path.with_suffix(".json"), model_path.parent / "classes.json",
                 model_path.parent / "training.json", model_path.parent / "metrics.json"):
        if cand.is_file():
            try:
                data = json.loads(cand.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(data, dict) and isinstance(data.get("classes"), list):
                return [str(c) for c in data["classes"]]
    raise InspectorError(f"no class names for {model_path.name}: pass --classes a,b,… "
                         f"(or put {{\"classes\": [...]}} in {model_path.with_suffix('.json').name})")


def cmd_export(args: argparse.Namespace) -> int:
    from inspector.offline.identity.backbones import get_spec

    path = Path(args.keras_model)
    if not path.is_file():
        raise InspectorError(f"model file {path} does not exist")
    classes = _classes_for(path, args.classes)
    import keras

    try:
        model = keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 — Keras raises many types; one line for the user
        raise InspectorError(f"cannot load Keras model {path}: {str(e).splitlines()[0] if str(e) else e}") from None
    backbone = args.backbone or model.name.removeprefix("identity_")
    spec = get_spec(backbone)
    metrics: dict[str, Any] = {}
    if args.metrics:
        metrics = json.loads(Path(args.metrics).read_text(encoding="utf-8"))
    out = Path(args.out)
    from inspector.offline.identity.export import export_model

    md = export_model(model, out, name=args.name or out.resolve().parent.name, version=args.version or out.name,
                      classes=classes, backbone=spec.name, preprocess_mode=spec.preprocess_mode, metrics=metrics,
                      training={"export_command": _command_line(), "keras_model": path.name}, opset=args.opset)
    print(f"exported {md.manifest.name}/{md.manifest.version} to {md.path} "
          f"(sha256 {md.manifest.sha256[:12]}…, parity {md.manifest.extra['parity']['max_rel_diff_probs']:.1e})")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from inspector.offline.identity.data import load_dataset, train_val_split
    from inspector.offline.identity.quantize import QuantizationRefused, quantize_model
    from inspector.modelrepo import load_model_dir

    md = load_model_dir(args.model_dir)
    data = load_dataset(args.calib, tile=int(md.manifest.preprocessing.get("tile", 224)), progress=not args.no_progress)
    split = train_val_split(data.frame_labels, args.heldout_fraction, seed=args.seed)
    calib, held = data.tiles[data.tile_indices(split.train)], data.tiles[data.tile_indices(split.val)]
    try:
        r = quantize_model(md, calib, held, args.out, args.min_agreement, progress=not args.no_progress,
                           command=_command_line())
    except QuantizationRefused as e:
        print(f"refused: see {Path(args.out) / 'quantization.md'}", file=sys.stderr)
        raise InspectorError(str(e)) from None
    print(f"int8 model accepted: agreement {r['agreement']:.2%} on {r['heldout_tiles']} held-out tiles -> {r['output']}")
    return 0


def _render_set(root: Path, per_class: int, seed0: int, progress: bool) -> list[str]:
    """Synthetic SEM frames, one sub-folder per class slug (every other frame carries a data bar)."""
    import cv2
    from tqdm import tqdm

    from inspector.synth.sem import SEM_CLASSES, class_slug, render_sem

    jobs = [(c, i) for c in SEM_CLASSES for i in range(per_class)]
    for cls, i in tqdm(jobs, desc=f"rendering {root.name}", unit="frame", disable=not progress):
        img, _ = render_sem(cls, seed0 + i, data_bar=bool(i % 2))
        d = root / class_slug(cls)
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{i:04d}.png"), img)
    return [class_slug(c) for c in SEM_CLASSES]


def cmd_default(args: argparse.Namespace) -> int:
    """Synthetic SEM set -> train (part 1's fit) -> export -> test through the ONNX Runtime path."""
    import numpy as np

    from inspector.offline.identity.backbones import get_spec
    from inspector.offline.identity.data import dataset_sha256, load_dataset, train_val_split
    from inspector.offline.identity.export import export_model
    from inspector.offline.identity.train import TrainConfig, config_dict, fit, predict_probs, resolve_weights
    from inspector.identity.tiling import preprocess

    out = Path(args.out)
    progress = not args.no_progress
    spec = get_spec(args.backbone)
    cfg = TrainConfig(backbone=spec.name, weights=None, lr=args.lr, batch=args.batch, epochs=args.epochs,
                      patience=args.patience, hidden=args.hidden, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="identity-default-") as tmp:
        train_dir, test_dir = Path(tmp) / "train", Path(tmp) / "test"
        _render_set(train_dir, args.per_class, args.seed * 100_000, progress)
        _render_set(test_dir, args.test_per_class, args.seed * 100_000 + 50_000, progress)
        data = load_dataset(train_dir, progress=progress)
        test = load_dataset(test_dir, progress=progress)
        data_sha, test_sha = dataset_sha256(data.frames), dataset_sha256(test.frames)
    split = train_val_split(data.frame_labels, 0.2, seed=args.seed)
    res = fit(data, data.tile_indices(split.train), data.tile_indices(split.val), cfg, progress=progress)
    weights_used, weights_desc = resolve_weights(spec.name, None)
    training = {
        "command": _command_line(),
        "data": {"generator": "inspector.synth.sem.render_sem", "frames_per_class": args.per_class,
                 "seeds": f"{args.seed * 100_000}..+{args.per_class - 1}", "sha256": data_sha,
                 "train_frames": int(len(split.train)), "val_frames": int(len(split.val))},
        "config": config_dict(cfg, weights_used, weights_desc),
        "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
        "history": {k: [round(v, 4) for v in vals] for k, vals in res.history.items()},
    }
    probs = predict_probs(res.model, test.tiles, spec.preprocess_mode)  # unseen frames (other seeds)
    tile_acc = float(np.mean(probs.argmax(1) == test.labels))
    frame_pred = np.array([probs[test.frame_ids == f].mean(0).argmax() for f in range(len(test.frames))])
    frame_acc = float(np.mean(frame_pred == test.frame_labels))
    metrics = {"val_tile_accuracy": res.val_accuracy, "test_tile_accuracy": tile_acc,
               "test_frame_accuracy": frame_acc, "test_frames": len(test.frames), "test_data_sha256": test_sha,
               "test_seeds": f"{args.seed * 100_000 + 50_000}..+{args.test_per_class - 1}"}
    md = export_model(res.model, out, name=out.resolve().parent.name, version=out.name, classes=data.classes,
                      backbone=spec.name, preprocess_mode=spec.preprocess_mode, metrics=metrics, training=training,
                      check_tiles=preprocess(test.tiles[::7][:32], spec.preprocess_mode))
    print(f"default model {md.path}: val tile accuracy {res.val_accuracy:.3f}, test tile accuracy {tile_acc:.3f}, "
          f"test frame accuracy {frame_acc:.3f} on {len(test.frames)} unseen frames")
    return 0
