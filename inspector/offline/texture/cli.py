"""CLI plugin: ``inspector evaluate texture``, ``inspector train texture`` (and ``inspector features``).

::

    inspector evaluate texture DATA_DIR --protocol loo|split|cv --report OUT_DIR
    inspector train texture DATA_DIR --out models/tablet-defect-default/1

``DATA_DIR`` has one sub-folder per class; see :mod:`inspector.offline.texture.dataset` for how the negative
(good) and positive (defect) classes are found. Heavy libraries are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path
from typing import Any

from inspector.errors import ConfigError, InspectorError

log = logging.getLogger("inspector.texture")


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


def _data_args(p: argparse.ArgumentParser, *, roi_default: str) -> None:
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="image folder: one sub-folder per class")
    p.add_argument("--negative", default=None, metavar="CLASS",
                   help="the good class folder (default: the one named normal/good/free/ok…)")
    p.add_argument("--positive", default=None, metavar="CLASS[,CLASS…]",
                   help="defect class folder(s) (default: every folder but the negative one)")
    p.add_argument("--levels", type=int, default=64, help="grey levels for the texture features (default 64)")
    p.add_argument("--roi", choices=("auto", "none"), default=roi_default,
                   help=f"'auto': bright tablet on a dark background; 'none': whole image (default {roi_default})")
    p.add_argument("--max-side", type=int, default=None, metavar="PX",
                   help="downscale images so the longer side is at most PX before the features (default: full size)")
    p.add_argument("--max-images-per-class", type=int, default=None, metavar="N",
                   help="use a seeded random sample of N images per class (quick runs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the sampling and the ANN (default 0)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    p.add_argument("--task", choices=("binary", "multiclass", "oneclass", "patches"), default="binary",
                   help="binary: defect folders vs the good folder (default); multiclass: defect typing, every "
                        "folder a class; oneclass: learn the good folder only, defects are novelties; patches: "
                        "one-class novelty of the worst tablet-surface patch (the default tablet model)")
    p.add_argument("--features", default="mazda", metavar="mazda,lbp,clbp",
                   help="feature families: mazda (the 281 seed features), lbp (rotation-invariant uniform LBP "
                        "histograms, 3 radii), clbp (completed LBP sign x magnitude joint histograms, 3 radii, "
                        "1100) (default mazda)")


def register(sub: Any, groups: dict[str, Any]) -> None:
    """Register ``evaluate texture``, ``train texture`` and part 1's ``features`` command."""
    ev = groups["evaluate"].add_parser(
        "texture", help="the paper's texture experiments on an image-folder dataset, with a report",
        description="Extract the 281 texture features once per image (cached in REPORT/features.csv), "
        "then evaluate all 281 / CS-15 / GR-15 / RF-15 / best-pair features with SVM, KNN, NB and ANN on "
        "each defect class against the good class and on all defect classes together.",
    )
    _data_args(ev, roi_default="none")
    ev.add_argument("--protocol", choices=("loo", "split", "cv"), default="loo",
                    help="loo: leave-one-out (paper's Exp. I); split: stratified 50/50 (Exp. II); cv: k-fold")
    ev.add_argument("--folds", type=int, default=10, help="k for --protocol cv (default 10)")
    ev.add_argument("--report", type=Path, required=True, metavar="OUT_DIR",
                    help="where metrics.json, results.csv, report.md and the PNG charts go")
    ev.add_argument("--classifiers", default="all", metavar="svm,knn,nb,ann", help="classifiers (default all)")
    ev.add_argument("--feature-sets", default=None, metavar="all,cs15,gr15,rf15,pair",
                    help="feature sets; cs<k>/gr<k>/rf<k> keep the top k (default: all,cs15,gr15,rf15,pair; "
                         "multiclass: all,cs15,gr15,rf15; oneclass: all)")
    ev.add_argument("--repeats", type=int, default=1, metavar="N",
                    help="multiclass/oneclass: repeat the protocol on N random splits (seeds SEED…SEED+N-1) and "
                         "report mean ± sd (default 1)")
    ev.add_argument("--detectors", default="mcd,gaussian,ocsvm,iforest", metavar="mcd,gaussian,ocsvm,iforest",
                    help="oneclass: novelty detectors to compare (default all four)")
    ev.add_argument("--frr", type=float, default=0.05, help="oneclass: false-reject rate of the operating point "
                    "on held-out good images (default 0.05)")
    ev.add_argument("--model", type=Path, default=None, metavar="MODEL_DIR",
                    help="patches: the trained patch model to evaluate on DATA_DIR (a synthetic tablet set)")
    ev.add_argument("--cache", type=Path, default=None, metavar="CSV",
                    help="feature cache file (default REPORT/features.csv)")
    ev.set_defaults(func=run_evaluate)

    tr = groups["train"].add_parser(
        "texture", help="train a tablet_defect texture model into the model repository",
        description="Fit feature selection + StandardScaler + classifier on DATA_DIR (defect folders vs the "
        "good folder) and write pipeline.skops + manifest.json into OUT (a version folder).",
    )
    _data_args(tr, roi_default="auto")
    tr.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR",
                    help="model version folder, e.g. models/tablet-defect-default/1")
    tr.add_argument("--name", default=None, help="model name (default: the parent folder of --out)")
    tr.add_argument("--version", default=None, help="model version (default: the name of --out)")
    tr.add_argument("--feature-set", default="cs15", metavar="all|cs15|gr15|rf15|pair|cs<k>|gr<k>|rf<k>",
                    help="features the model uses (default cs15; oneclass: all, reduced by PCA)")
    tr.add_argument("--classifier", default="svm", choices=("svm", "knn", "nb", "ann", "svmt", "rbf"),
                    help="svmt/rbf: linear/RBF SVM tuned by inner CV (default svm)")
    tr.add_argument("--detector", default="mcd", choices=("mcd", "gaussian", "ocsvm", "iforest"),
                    help="oneclass/patches: novelty detector (default mcd, robust Mahalanobis; patches: mcd or gaussian)")
    tr.add_argument("--tiles", type=int, default=8, help="patches: grid cells across the tablet (default 8)")
    tr.add_argument("--frr", type=float, default=0.05,
                    help="oneclass: false-reject rate on held-out good images that sets the threshold (default 0.05)")
    tr.add_argument("--threshold", type=float, default=0.5, help="reject when P(defect) >= this (default 0.5)")
    tr.add_argument("--cache", type=Path, default=None, metavar="CSV", help="feature cache file (optional)")
    tr.add_argument("--force", action="store_true", help="replace a model already in --out")
    tr.set_defaults(func=run_train)

    if "features" in getattr(sub, "choices", {}):  # already registered as a plugin of its own
        return
    try:  # `inspector features` (inspector/offline/texture/cli_features.py) is registered through this plugin
        from inspector.offline.texture import cli_features
    except ModuleNotFoundError:
        return
    cli_features.register(sub, groups)


def _scan(args: argparse.Namespace, *, require_negative: bool = True):
    from inspector.offline.texture.dataset import scan_image_folder

    if args.max_images_per_class is not None and args.max_images_per_class < 1:
        raise ConfigError("--max-images-per-class must be at least 1")
    if args.max_side is not None and args.max_side < 16:
        raise ConfigError("--max-side must be at least 16 pixels")
    if not 2 <= args.levels <= 256:
        raise ConfigError("--levels must be between 2 and 256")
    return scan_image_folder(args.data_dir, negative=args.negative, positives=_csv(args.positive),
                             max_per_class=args.max_images_per_class, seed=args.seed,
                             require_negative=require_negative,
                             min_classes=1 if getattr(args, "task", "binary") in ("oneclass", "patches") else 2)


def _families(args: argparse.Namespace) -> tuple[str, ...]:
    from inspector.texture.describe import parse_families

    try:
        return parse_families(args.features)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def run_evaluate(args: argparse.Namespace) -> int:
    if args.task != "binary":
        from inspector.offline.texture.cli_tasks import evaluate_task

        return evaluate_task(args)
    from inspector.offline.texture.classifiers import parse_classifiers
    from inspector.offline.texture.dataset import extract_table
    from inspector.offline.texture.experiment import run_experiment
    from inspector.offline.texture.report import write_report
    from inspector.offline.texture.selection import FEATURE_SETS

    try:
        classifiers = parse_classifiers(args.classifiers)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    feature_sets = parse_feature_sets(args.feature_sets, list(FEATURE_SETS))
    if args.protocol == "cv" and args.folds < 2:
        raise ConfigError("--folds must be at least 2")
    folder = _scan(args)
    args.report.mkdir(parents=True, exist_ok=True)
    table = extract_table(folder, levels=args.levels, roi=args.roi, max_side=args.max_side,
                          cache=args.cache or args.report / "features.csv", progress=args.progress,
                          families=_families(args))
    if table.skipped:
        log.warning("%d image(s) skipped (listed in the report)", len(table.skipped))
    if args.protocol == "loo" and len(table.labels) > 400:
        log.warning("leave-one-out on %d images refits selection and %d pipelines per image and subset: "
                    "this takes hours on a CPU; --protocol cv or split is the practical choice here",
                    len(table.labels), len(feature_sets) * len(classifiers))
    result = run_experiment(table, negative=folder.negative, positives=folder.positives, protocol=args.protocol,
                            feature_sets=feature_sets, classifiers=classifiers, seed=args.seed, folds=args.folds,
                            dataset=args.data_dir.resolve().name, progress=args.progress)
    paths = write_report(result, args.report)
    whole = result.subsets[-1]
    best = max((c for c in result.cells if c.subset == whole), key=lambda c: c.accuracy)
    print(f"{len(table.labels)} images ({len(table.skipped)} skipped), protocol {args.protocol}: best on {whole}: "
          f"{best.feature_set}/{best.classifier} accuracy {100 * best.accuracy:.1f}% "
          f"(Sn {100 * best.sensitivity:.1f}%, Sp {100 * best.specificity:.1f}%)")
    print(f"report: {paths['report']}")
    return 0


def parse_feature_sets(spec: str | None, default: list[str]) -> list[str]:
    from inspector.offline.texture.selection import parse_feature_set

    sets = _csv(spec) or list(default)
    for f in sets:
        try:
            parse_feature_set(f)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return sets


def run_train(args: argparse.Namespace) -> int:
    if args.task != "binary":
        from inspector.offline.texture.cli_tasks import train_task

        return train_task(args)
    from inspector.offline.texture.dataset import extract_table
    from inspector.offline.texture.train import fit_model, save_model

    if not 0.0 < args.threshold < 1.0:
        raise ConfigError("--threshold must be between 0 and 1")
    out = args.out
    if (out / "manifest.json").exists() and not args.force:  # fail before the (long) feature extraction
        raise InspectorError(f"{out} already holds a model (manifest.json); pass --force to replace it")
    name = args.name or out.resolve().parent.name
    version = args.version or out.name
    folder = _scan(args)
    table = extract_table(folder, levels=args.levels, roi=args.roi, max_side=args.max_side, cache=args.cache,
                          progress=args.progress, families=_families(args))
    model = fit_model(table, negative=folder.negative, positives=folder.positives, feature_set=args.feature_set,
                      classifier=args.classifier, seed=args.seed)
    md = save_model(
        out, model, name=name, version=version, force=args.force, threshold=args.threshold,
        input_params={"levels": args.levels, "roi": args.roi, "max_side": args.max_side},
        training={
            "command": shlex.join(["inspector", *_argv_of(args)]),
            "data_dir": str(args.data_dir),
            "data_sha256": table.data_sha256(),
            "negative": folder.negative,
            "positives": folder.positives,
            "skipped": len(table.skipped),
            "seed": args.seed,
        },
    )
    m = md.manifest
    print(f"model {m.name}/{m.version} written to {md.path}: {len(model.features)} features "
          f"({model.feature_set}), {model.classifier}; CV accuracy {100 * model.metrics['accuracy']:.1f}% "
          f"(Sn {100 * model.metrics['sensitivity']:.1f}%, Sp {100 * model.metrics['specificity']:.1f}%); "
          f"sha256 {m.sha256[:12]}…")
    return 0


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The train command rebuilt from the parsed arguments (every option spelled out)."""
    out = ["train", "texture", str(args.data_dir), "--out", str(args.out)]
    for flag, val in (("--name", args.name), ("--version", args.version), ("--negative", args.negative),
                      ("--positive", args.positive), ("--feature-set", args.feature_set),
                      ("--classifier", args.classifier), ("--levels", args.levels), ("--roi", args.roi),
                      ("--max-side", args.max_side), ("--max-images-per-class", args.max_images_per_class),
                      ("--seed", args.seed), ("--threshold", args.threshold), ("--task", args.task),
                      ("--features", args.features)):
        if val is not None:
            out += [flag, str(val)]
    return out
