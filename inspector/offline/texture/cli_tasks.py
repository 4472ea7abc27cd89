"""``evaluate texture`` / ``train texture`` with ``--task multiclass`` or ``--task oneclass``.

::

    inspector evaluate texture DATA --task multiclass --protocol split --repeats 10 --features mazda,lbp \\
        --feature-sets all,rf60 --classifiers svm,svmt,rbf --report OUT
    inspector evaluate texture DATA --task oneclass --repeats 5 --frr 0.05 --report OUT
    inspector train texture DATA --task multiclass --feature-set all --classifier svmt --out models/X/1
    inspector train texture DATA --task oneclass --detector mcd --frr 0.05 --out models/X/1
"""

from __future__ import annotations

import argparse
import logging
import shlex

from inspector.errors import ConfigError, InspectorError
from inspector.offline.texture.cli import _argv_of, _csv, _families, _scan, parse_feature_sets

log = logging.getLogger("inspector.texture")

#: the published figure beside ours when the data set is NEU (Song & Yan 2013, AECLBP + SVM)
NEU_ANCHOR = {"label": "AECLBP + SVM (Song & Yan 2013)", "accuracy": 0.9893, "sd": 0.0063,
              "source": "K. Song, Y. Yan, Applied Surface Science 285 (2013) 858-864"}
NEU_CLASSES = {"crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"}


def _table(args: argparse.Namespace, folder, cache):
    from inspector.offline.texture.dataset import extract_table

    return extract_table(folder, levels=args.levels, roi=args.roi, max_side=args.max_side, cache=cache,
                         progress=args.progress, families=_families(args))


def _scan_task(args: argparse.Namespace):
    """Multi-class: every folder is a class, a good folder is optional; one-class: the good folder is required."""
    return _scan(args, require_negative=args.task == "oneclass")


def evaluate_task(args: argparse.Namespace) -> int:
    if args.task == "patches":
        return _evaluate_patches(args)
    if args.repeats < 1:
        raise ConfigError("--repeats must be at least 1")
    folder = _scan_task(args)
    args.report.mkdir(parents=True, exist_ok=True)
    table = _table(args, folder, args.cache or args.report / "features.csv")
    if table.skipped:
        log.warning("%d image(s) skipped", len(table.skipped))
    name = args.data_dir.resolve().name
    if args.task == "multiclass":
        from inspector.offline.texture.classifiers import parse_classifiers
        from inspector.offline.texture.multiclass import MULTICLASS_FEATURE_SETS, run_multiclass
        from inspector.offline.texture.report_multiclass import write_multiclass_report

        try:
            classifiers = parse_classifiers(args.classifiers)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        feature_sets = parse_feature_sets(args.feature_sets, list(MULTICLASS_FEATURE_SETS))
        classes = list(folder.classes)
        anchor = NEU_ANCHOR if set(classes) == NEU_CLASSES else None
        try:
            res = run_multiclass(table, classes=classes, protocol=args.protocol, feature_sets=feature_sets,
                                 classifiers=classifiers, seed=args.seed, folds=args.folds, repeats=args.repeats,
                                 dataset=name, progress=args.progress, anchor=anchor)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        paths = write_multiclass_report(res, args.report)
        best = res.best()
        m, s = best.stat("accuracy")
        print(f"{len(table.labels)} images, {len(classes)} classes, {res.repeats} × {args.protocol}: best "
              f"{best.feature_set}/{best.classifier} accuracy {100 * m:.2f} % ± {100 * s:.2f}, macro-F1 "
              f"{100 * best.stat('macro_f1')[0]:.2f} %")
        print(f"report: {paths['report']}")
        return 0
    from inspector.offline.texture.oneclass import DETECTORS, evaluate_oneclass
    from inspector.offline.texture.report_oneclass import write_oneclass_report

    detectors = _csv(args.detectors) or list(DETECTORS)
    bad = [d for d in detectors if d not in DETECTORS]
    if bad:
        raise ConfigError(f"unknown detector(s) {', '.join(bad)} (known: {', '.join(DETECTORS)})")
    if not 0.0 < args.frr < 0.5:
        raise ConfigError("--frr must be between 0 and 0.5")
    res = evaluate_oneclass(table, good=folder.negative, defects=folder.positives, detectors=detectors, frr=args.frr,
                            repeats=args.repeats, seed=args.seed, dataset=name, progress=args.progress)
    paths = write_oneclass_report(res, args.report)
    for d in detectors:
        import numpy as np

        print(f"{d}: pooled AUROC {100 * np.mean(res.auroc[d]['All']):.1f} %, detected "
              f"{100 * np.mean(res.detection[d]['All']):.1f} % at a measured false-reject rate of "
              f"{100 * np.mean(res.test_frr[d]):.1f} %")
    print(f"report: {paths['report']}")
    return 0


def _evaluate_patches(args: argparse.Namespace) -> int:
    from inspector.offline.texture.patches import evaluate_patch_model, patch_report
    from inspector.texture.model import load_model

    if args.model is None:
        raise ConfigError("--task patches needs --model MODEL_DIR (a patch model to evaluate)")
    model = load_model(args.model)
    if getattr(model, "mode", None) != "patches":
        raise ConfigError(f"{args.model} is not a patch model")
    folder = _scan(args)
    res = evaluate_patch_model(model, folder, progress=args.progress)
    m = model.manifest
    path = patch_report(res, args.report, title=f"Patch model {m.name}/{m.version} on {args.data_dir.resolve().name}")
    print(f"specificity {100 * res['specificity']:.1f} % on {res['n_good']} good; sensitivity "
          f"{100 * res['sensitivity_sev2plus']:.1f} % on {res['n_sev2plus']} defects of severity >= 2 "
          f"({100 * res['sensitivity_all']:.1f} % on all {res['n_defects']})")
    print(f"report: {path}")
    return 0


def _train_patches(args: argparse.Namespace) -> int:
    from inspector.offline.texture.patches import fit_patch_model, save_patch_model

    if not 2 <= args.tiles <= 32:
        raise ConfigError("--tiles must be between 2 and 32")
    if args.detector not in ("mcd", "gaussian"):
        raise ConfigError("--task patches supports --detector mcd or gaussian")
    folder = _scan(args)
    fitted = fit_patch_model(folder, tiles=args.tiles, frr=args.frr, detector=args.detector, seed=args.seed,
                             max_side=args.max_side, progress=args.progress)
    argv = ["train", "texture", str(args.data_dir), "--task", "patches", "--out", str(args.out), "--tiles",
            str(args.tiles), "--detector", args.detector, "--frr", str(args.frr), "--seed", str(args.seed)]
    for flag, val in (("--name", args.name), ("--version", args.version), ("--max-side", args.max_side)):
        if val is not None:
            argv += [flag, str(val)]
    from inspector.offline.texture.dataset import data_sha256, _sha256

    md = save_patch_model(
        args.out, fitted, name=args.name or args.out.resolve().parent.name, version=args.version or args.out.name,
        tiles=args.tiles, detector=args.detector, max_side=args.max_side, force=args.force,
        training={"command": shlex.join(["inspector", *argv]), "data_dir": str(args.data_dir),
                  "data_sha256": data_sha256([_sha256(p) for p in folder.classes[folder.negative]]),
                  "good_class": folder.negative, "seed": args.seed},
        metrics={"protocol": "one-class: fit on 2/3 of the good tablets, thresholds on the other 1/3",
                 "calibration_false_reject_rate": float((fitted["calibration"] >= fitted["thresholds"]["novelty"]).mean())},
    )
    m = md.manifest
    print(f"patch model {m.name}/{m.version} written to {md.path}: {fitted['counts']['fit']} good tablets "
          f"({fitted['counts']['fit_patches']} patches) fit, {fitted['counts']['calibration']} calibrate; novelty "
          f"threshold {fitted['thresholds']['novelty']:.3f}; sha256 {m.sha256[:12]}…")
    return 0


def train_task(args: argparse.Namespace) -> int:
    from inspector.offline.texture.train import save_model

    out = args.out
    if (out / "manifest.json").exists() and not args.force:
        raise InspectorError(f"{out} already holds a model (manifest.json); pass --force to replace it")
    if args.task == "patches":
        return _train_patches(args)
    folder = _scan_task(args)
    table = _table(args, folder, args.cache)
    if args.task == "multiclass":
        from inspector.offline.texture.train import fit_multiclass

        if not 0.0 < args.threshold < 1.0:
            raise ConfigError("--threshold must be between 0 and 1")
        model = fit_multiclass(table, classes=list(folder.classes), good_class=folder.negative,
                               feature_set=parse_feature_sets(args.feature_set, ["all"])[0],
                               classifier=args.classifier, seed=args.seed)
        threshold = args.threshold
    else:
        from inspector.offline.texture.oneclass import fit_oneclass

        model = fit_oneclass(table, good=folder.negative, detector=args.detector, frr=args.frr, seed=args.seed)
        threshold = 1.0 - args.frr
    argv = _argv_of(args) + (["--detector", args.detector, "--frr", str(args.frr)] if args.task == "oneclass" else [])
    md = save_model(
        out, model, name=args.name or out.resolve().parent.name, version=args.version or out.name, force=args.force,
        threshold=threshold, input_params={"levels": args.levels, "roi": args.roi, "max_side": args.max_side},
        training={"command": shlex.join(["inspector", *argv]), "data_dir": str(args.data_dir),
                  "data_sha256": table.data_sha256(), "classes": list(folder.classes), "skipped": len(table.skipped),
                  "seed": args.seed},
    )
    m = md.manifest
    figures = ", ".join(f"{k} {100 * v:.1f} %" for k, v in model.metrics.items()
                        if isinstance(v, float) and k not in ("balanced",))
    print(f"model {m.name}/{m.version} ({args.task}) written to {md.path}: {len(model.features)} features, "
          f"{model.classifier}; {figures}; sha256 {m.sha256[:12]}…")
    return 0
