"""CLI of the open-set check and lot drift (offline; heavy imports inside the handlers).

    inspector calibrate openset MODEL_DIR --data DIR [--method mahalanobis --aggregation mean --quantile 0.99]
    inspector evaluate openset --model MODEL_DIR --known DIR [--synthetic-loco DIR] [--real-sem DIR] --report OUT
    inspector drift report --lot ID --config FILE [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy and ONNX Runtime threads fight on small machines

from inspector.identity.openset import AGGREGATIONS, METHODS  # noqa: E402
from inspector.offline.identity.cli_export import _group  # noqa: E402


def _command_line() -> str:
    return "inspector " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def add_calibration_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=METHODS, default="mahalanobis", help="serving score (default mahalanobis)")
    p.add_argument("--aggregation", choices=AGGREGATIONS, default="mean", help="tiles -> frame (default mean)")
    p.add_argument("--quantile", type=float, default=0.99,
                   help="threshold = this quantile of held-out known frame scores (default 0.99: ≤ 1 %% rejected)")
    p.add_argument("--k", type=int, default=5, help="k of the kNN score (default 5)")
    p.add_argument("--bank", type=int, default=2048, help="kNN bank size, sub-sampled tiles (default 2048)")
    p.add_argument("--drift-dims", type=int, default=16, help="PCA components of the drift space (default 16)")
    p.add_argument("--drift-quantile", type=float, default=0.999,
                   help="each drift view's threshold = this quantile of same-distribution pseudo-lots (default "
                        "0.999: the permutation null of ~100 frames per class is light-tailed; 0.995 gave 2.4 %% "
                        "false alarms on fresh lots, 0.999 none of 210 — docs/identity-openset.md)")
    p.add_argument("--holdout", type=float, default=0.3, help="fraction of frames per class held out (default 0.3)")
    p.add_argument("--seed", type=int, default=0)


def calibration_kwargs(args: argparse.Namespace) -> dict:
    for name in ("quantile", "drift_quantile"):
        if not 0.5 < getattr(args, name) < 1.0:
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} must be in (0.5, 1)")
    return {"method": args.method, "aggregation": args.aggregation, "quantile": args.quantile, "k": args.k,
            "bank_size": args.bank, "drift_dims": args.drift_dims, "holdout": args.holdout, "seed": args.seed,
            "drift_quantile": args.drift_quantile}


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    cal = _group(sub, "calibrate", "calibrate a served model's extra checks (open-set, drift)")
    c = cal.add_parser("openset", help="fit the unknown-material check and the drift reference of an identity model",
                       description="Embed every frame of --data (one sub-folder per known class) with the model, "
                                   "fit class means / covariance / kNN bank / drift reference on part of them, "
                                   "choose thresholds on the held-out known frames, and write openset.npz + the "
                                   "manifest's openset block into MODEL_DIR.")
    c.add_argument("model_dir", metavar="MODEL_DIR", help="model version folder, e.g. models/<name>/<version>")
    c.add_argument("--data", required=True, metavar="DIR", help="frames of the known classes (not the training frames)")
    c.add_argument("--cache", metavar="DIR", help="embedding cache folder (default: none)")
    c.add_argument("--no-progress", action="store_true")
    c.add_argument("--no-morphology", action="store_true",
                   help="do not measure particle morphology (no morphology view of lot drift)")
    add_calibration_args(c)
    c.set_defaults(func=cmd_calibrate)

    e = groups["evaluate"].add_parser(
        "openset", help="unknown-material detection: AUROC, FPR@95%%TPR, unknown accepted, per method",
        description="Scenarios: the model as shipped with foreign real SEM sets as unknowns; leave-one-class-out "
                    "on a synthetic set and on real SEM (frozen model embeddings, linear probe head per fold).")
    e.add_argument("--model", required=True, metavar="MODEL_DIR")
    e.add_argument("--known", metavar="DIR", help="held-out frames of the model's classes (e.g. a synth sem set)")
    e.add_argument("--foreign", action="append", default=[], metavar="DIR",
                   help="a data set none of whose frames is a known class (repeatable)")
    e.add_argument("--loco", action="append", default=[], metavar="DIR",
                   help="a class-folder data set for leave-one-class-out (repeatable)")
    e.add_argument("--group-prefix", action="store_true",
                   help="group LOCO frames by file-name prefix before the running number (real SEM sessions)")
    e.add_argument("--report", required=True, metavar="OUT_DIR")
    e.add_argument("--cache", metavar="DIR", default=None, help="embedding cache (default OUT_DIR/cache)")
    e.add_argument("--repeats", type=int, default=3, help="random fit/holdout splits per scenario (default 3)")
    e.add_argument("--no-progress", action="store_true")
    add_calibration_args(e)
    e.set_defaults(func=cmd_evaluate)

    dr = _group(sub, "drift", "lot drift of identity frames (embedding and particle morphology)")
    r = dr.add_parser("report", help="plot and table of one lot's frames against the reference (from the audit)")
    r.add_argument("--lot", required=True)
    r.add_argument("--config", required=True, metavar="FILE", help="daemon config (audit store, model repository)")
    r.add_argument("--out", default=".", metavar="DIR", help="output folder (default .)")
    r.set_defaults(func=cmd_drift_report)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from inspector.offline.identity.openset_fit import calibrate_model

    md, block = calibrate_model(args.model_dir, args.data, cache_dir=args.cache, progress=not args.no_progress,
                                command=_command_line(), morphology=not args.no_morphology,
                                **calibration_kwargs(args))
    m = md.manifest
    morph = block["drift"].get("morphology")
    print(f"calibrated {m.name}/{m.version}: {block['method']} ({block['aggregation']}) threshold "
          f"{block['threshold']:.4g} at the {block['quantile']:.0%} quantile of {block['holdout_frames']} held-out "
          f"known frames; drift thresholds: embedding {block['drift']['threshold']:.3g} ({block['drift']['dims']} "
          f"dims)" + (f", morphology {morph['threshold']:.3g} ({len(morph['features'])} features)" if morph else ""))
    print(f"wrote {Path(md.path) / block['artifact']} (sha256 {m.artifacts[block['artifact']]['sha256'][:12]}…)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from inspector.offline.identity.openset_eval import run_evaluation

    files = run_evaluation(args, calibration_kwargs(args), command=_command_line())
    print(f"report: {files['report']}")
    return 0


def cmd_drift_report(args: argparse.Namespace) -> int:
    from inspector.offline.identity.openset_drift import write_drift_report

    files = write_drift_report(args.lot, args.config, args.out)
    print(f"report: {files['report']} ({files['plot']})")
    return 0
