"""CLI of the identity serving side: export to ONNX, int8 quantisation, and the default model.

    inspector export identity KERAS_MODEL --out MODELS/<name>/<version> [--classes a,b,…]
    inspector quantize identity MODEL_DIR --calib DATA_DIR --out MODELS/<name>/<version>
    inspector train identity-default [--out models/excipient-identity-default/2] [--report DIR]

Heavy libraries (TensorFlow, tf2onnx, onnxruntime.quantization) are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
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
    d.add_argument("--out", default=f"models/{DEFAULT_NAME}/2")
    d.add_argument("--backbone", default="efficientnet_lite0")
    d.add_argument("--weights", default="imagenet", metavar="imagenet|PATH|none")
    d.add_argument("--train-layers", choices=("auto", "head", "last_block", "all"), default="auto")
    d.add_argument("--cache", metavar="DIR", default=None, help="feature cache folder (see train identity --cache)")
    d.add_argument("--per-class", type=int, default=16, help="synthetic training frames per class")
    d.add_argument("--test-per-class", type=int, default=6, help="unseen frames per class for the test metrics")
    d.add_argument("--cv-folds", type=int, default=5, help="k-fold CV by frame on the training frames (0: skip)")
    d.add_argument("--compare", nargs="*", metavar="MODEL_DIR",
                   help="earlier versions to test on the same unseen frames (default: the other versions beside --out)")
    d.add_argument("--report", metavar="DIR", help="write comparison.json / comparison.md there")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--epochs", type=int, default=30)
    d.add_argument("--patience", type=int, default=8)
    d.add_argument("--lr", type=float, default=1e-2)
    d.add_argument("--batch", type=int, default=32)
    d.add_argument("--hidden", type=int, default=256)
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


def cmd_default(args: argparse.Namespace) -> int:
    """Synthetic SEM set -> train -> export -> test this and earlier versions through the ONNX Runtime path."""
    from inspector.offline.identity.default_model import build_default
    from inspector.offline.identity.train import TrainConfig

    out = Path(args.out)
    weights = None if str(args.weights).lower() == "none" else args.weights
    cfg = TrainConfig(backbone=args.backbone, weights=weights, lr=args.lr, batch=args.batch, epochs=args.epochs,
                      patience=args.patience, hidden=args.hidden, seed=args.seed, train_layers=args.train_layers,
                      cache_dir=args.cache)
    cfg.check()
    compare = [Path(p) for p in args.compare] if args.compare else sorted(
        (p for p in out.parent.glob("*") if p != out and (p / "manifest.json").is_file()), key=lambda p: p.name)
    r = build_default(out, cfg, per_class=args.per_class, test_per_class=args.test_per_class, seed=args.seed,
                      cv_folds=args.cv_folds, compare=compare, report_dir=Path(args.report) if args.report else None,
                      command=_command_line(), progress=not args.no_progress)
    for label, m in r["test"].items():
        print(f"{label}: frame accuracy {m['frame_accuracy']:.3f}, frame macro-F1 {m['frame_macro_f1']:.3f}, "
              f"tile accuracy {m['tile_accuracy']:.3f} on {m['frames']} unseen frames")
    if r["cv"]:
        print(f"{r['cv']['folds']}-fold CV by frame: tile mean F {r['cv']['mean_f1']:.3f} ± {r['cv']['std_f1']:.3f} "
              f"(paper {r['cv']['paper_mean_f']:.3f}), frame accuracy {r['cv']['frame_accuracy']:.3f}")
    print(f"default model {r['model_dir']}")
    return 0
