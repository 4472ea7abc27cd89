"""Train and evaluate the patch novelty model (:mod:`inspector.texture.patch_model`) on tablet images.

Training uses the *good* tablets only (one-class): two thirds fit the patch and surface detectors,
one third (held out) sets ``tau_patch``/``tau_frame`` (each the ``1 − FRR/2`` quantile of its
score) and the reject threshold (the ``1 − FRR`` quantile of the combined score). Evaluation runs
the saved model, as the inspection does, on a *different* synthetic set and reports specificity on
its good tablets and sensitivity per defect class and severity (``params.csv`` of
``inspector synth tablets``), with the AUROC of the combined score.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import BadFrameError, InspectorError
from inspector.offline.texture.dataset import ImageFolder, load_gray
from inspector.offline.texture.oneclass import auroc, split_good
from inspector.texture.model import CALIBRATION, novelty_scores
from inspector.texture.patch_model import FRAME_ARTIFACT, PatchModel, combined_scores
from inspector.texture.patches import DEFAULT_TILES, FRAME_FEATURES, PATCH_FEATURES, PatchGrid, patch_grid


def grids_of(paths: list[Path], *, tiles: int, max_side: int | None, progress: bool) -> list[PatchGrid | None]:
    from tqdm import tqdm

    from inspector.texture.describe import limit_size

    out: list[PatchGrid | None] = []
    for p in tqdm(paths, desc="patch features", unit="img", disable=not progress):
        try:
            out.append(patch_grid(limit_size(load_gray(p), max_side), tiles))
        except BadFrameError:
            out.append(None)
    return out


def _detector(name: str, seed: int) -> Any:
    from sklearn.covariance import EmpiricalCovariance, MinCovDet
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    det = {"mcd": lambda: MinCovDet(random_state=seed), "gaussian": EmpiricalCovariance}.get(name)
    if det is None:
        raise InspectorError(f"the patch model supports the detectors mcd and gaussian, not {name!r}")
    return Pipeline([("scale", StandardScaler()), ("det", det())])


def fit_patch_model(folder: ImageFolder, *, tiles: int = DEFAULT_TILES, frr: float = 0.05, detector: str = "mcd",
                    seed: int = 0, max_side: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Fit on the good folder only; returns pipelines, calibration scores, thresholds and counts."""
    if not 0.0 < frr < 0.5:
        raise InspectorError("--frr must be between 0 and 0.5")
    paths = folder.classes[folder.negative]
    grids = [g for g in grids_of(paths, tiles=tiles, max_side=max_side, progress=progress) if g is not None]
    if len(grids) < 12:
        raise InspectorError(f"the patch model needs at least 12 usable good tablets, got {len(grids)}")
    fit, cal, _ = split_good(len(grids), seed, with_test=False)
    patch_pipe = _detector(detector, seed).fit(np.vstack([grids[i].X for i in fit]))
    frame_pipe = _detector(detector, seed).fit(np.vstack([grids[i].frame for i in fit]))
    worst = np.array([novelty_scores(patch_pipe, grids[i].X).max() for i in cal])
    surf = np.array([novelty_scores(frame_pipe, grids[i].frame[None, :])[0] for i in cal])
    tau_patch = float(np.quantile(worst, 1 - frr / 2, method="higher"))
    tau_frame = float(np.quantile(surf, 1 - frr / 2, method="higher"))
    scores = np.sort(combined_scores(patch_pipe, frame_pipe, [grids[i] for i in cal], tau_patch, tau_frame)[0])
    thr = float(np.quantile(scores, 1 - frr, method="higher"))
    return {"patch_pipe": patch_pipe, "frame_pipe": frame_pipe, "calibration": scores,
            "thresholds": {"novelty": thr, "tau_patch": tau_patch, "tau_frame": tau_frame, "false_reject_rate": frr,
                           "reject_probability": 1 - frr},
            "counts": {"good_images": len(paths), "usable": len(grids), "fit": len(fit), "calibration": len(cal),
                       "fit_patches": int(sum(len(grids[i].X) for i in fit))}}


def save_patch_model(out: Path, fitted: dict[str, Any], *, name: str, version: str, tiles: int, detector: str,
                     max_side: int | None, training: dict[str, Any], metrics: dict[str, Any], force: bool = False):
    import skops.io as sio

    from inspector.modelrepo import MANIFEST, Manifest, write_model_dir
    from inspector.texture.model import ARTIFACT, TASK

    if (out / MANIFEST).exists() and not force:
        raise InspectorError(f"{out} already holds a model (manifest.json); pass --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    sio.dump(fitted["patch_pipe"], out / ARTIFACT)
    sio.dump(fitted["frame_pipe"], out / FRAME_ARTIFACT)
    buf = io.BytesIO()
    np.save(buf, np.asarray(fitted["calibration"], np.float64), allow_pickle=False)
    (out / CALIBRATION).write_bytes(buf.getvalue())
    manifest = Manifest(
        name=name, version=version, task=TASK, artifacts={ARTIFACT: {}, FRAME_ARTIFACT: {}, CALIBRATION: {}},
        classes=["good", "defect"], thresholds=dict(fitted["thresholds"]),
        input={"mode": "patches", "tiles": tiles, "max_side": max_side, "roi": "auto", "detector": detector,
               "features": list(PATCH_FEATURES), "frame_features": list(FRAME_FEATURES), "families": ["patches"],
               "pixel_format": "Mono8/Mono16/RGB8 (converted to grey, ITU-R BT.601)"},
        preprocessing={"tablet": "Otsu on a ≤256 px thumbnail → largest contour → convex hull, eroded 2 % of r",
                       "patches": f"{tiles} × {tiles} grid over the tablet's bounding square, scored where ≥ 50 % on it",
                       "features": "inspector.texture.patches.patch_grid"},
        metrics=metrics, training={**training, "counts": fitted["counts"]},
    )
    return write_model_dir(out, manifest)


def _severities(root: Path) -> dict[str, int]:
    p = root / "params.csv"
    if not p.is_file():
        return {}
    with open(p, newline="", encoding="utf-8") as f:
        return {r["file"]: int(r["severity"]) for r in csv.DictReader(f) if r.get("severity", "") != ""}


def evaluate_patch_model(model: PatchModel, folder: ImageFolder, *, min_severity: int = 2,
                         progress: bool = True) -> dict[str, Any]:
    """Run the model on every image as the inspection does; Sp on good, Sn per class and severity, AUROC."""
    sev = _severities(folder.root)
    rows: list[dict[str, Any]] = []
    for cls, paths in folder.classes.items():
        for p, g in zip(paths, grids_of(paths, tiles=model.tiles, max_side=model.max_side, progress=progress)):
            rel = str(p.relative_to(folder.root))
            if g is None:
                rows.append({"path": rel, "class": cls, "severity": sev.get(rel), "error": True, "reject": True,
                             "score": float("inf")})
                continue
            pred = model.predict_grid(g)
            rows.append({"path": rel, "class": cls, "severity": sev.get(rel, 0 if cls == folder.negative else None),
                         "error": False, "reject": pred.reject, "score": float(pred.scores["novelty"]),
                         "decided_by": pred.detail["decided_by"]})
    good = [r for r in rows if r["class"] == folder.negative]
    defects = [r for r in rows if r["class"] != folder.negative]
    hard = [r for r in defects if r["severity"] is None or r["severity"] >= min_severity]
    res: dict[str, Any] = {
        "n_good": len(good), "specificity": float(np.mean([not r["reject"] for r in good])),
        "sensitivity_all": float(np.mean([r["reject"] for r in defects])) if defects else None,
        f"sensitivity_sev{min_severity}plus": float(np.mean([r["reject"] for r in hard])) if hard else None,
        "n_defects": len(defects), f"n_sev{min_severity}plus": len(hard), "errors": sum(r["error"] for r in rows),
        "per_class": {}, "rows": rows,
    }
    finite = lambda rs: np.array([min(r["score"], 1e9) for r in rs])  # noqa: E731
    if good and hard:
        res[f"auroc_sev{min_severity}plus"] = auroc(finite(good), finite(hard))
    for cls in folder.positives:
        rs = [r for r in defects if r["class"] == cls]
        by = {}
        for s in sorted({r["severity"] for r in rs if r["severity"] is not None}):
            sel = [r for r in rs if r["severity"] == s]
            by[str(s)] = {"n": len(sel), "detected": float(np.mean([r["reject"] for r in sel]))}
        hs = [r for r in rs if r["severity"] is None or r["severity"] >= min_severity]
        res["per_class"][cls] = {"n": len(rs), "detected": float(np.mean([r["reject"] for r in rs])) if rs else None,
                                 f"detected_sev{min_severity}plus": float(np.mean([r["reject"] for r in hs])) if hs else None,
                                 "by_severity": by}
    return res


def patch_report(res: dict[str, Any], out: Path, *, title: str, min_severity: int = 2) -> Path:
    """Markdown table + metrics.json (+ rows.csv) of :func:`evaluate_patch_model`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({k: v for k, v in res.items() if k != "rows"}, indent=2) + "\n")
    with open(out / "rows.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "class", "severity", "error", "reject", "score", "decided_by"])
        w.writeheader()
        w.writerows(res["rows"])
    k = f"sev{min_severity}plus"
    sevs = sorted({s for c in res["per_class"].values() for s in c["by_severity"]})
    md = [f"# {title}", "",
          f"Specificity on {res['n_good']} good tablets: **{100 * res['specificity']:.1f} %**; sensitivity on "
          f"{res[f'n_{k}']} defects of severity ≥ {min_severity}: **{100 * res[f'sensitivity_{k}']:.1f} %** "
          f"(all severities: {100 * res['sensitivity_all']:.1f} % of {res['n_defects']}); AUROC (severity ≥ "
          f"{min_severity}) {100 * res.get(f'auroc_{k}', float('nan')):.1f} %; frames the features refused: "
          f"{res['errors']} (counted as rejects).", "",
          "| class | n | detected (all) | detected (sev ≥ %d) | " % min_severity
          + " | ".join(f"sev {s}" for s in sevs) + " |",
          "|---|---:|---:|---:|" + "---:|" * len(sevs)]
    for cls, c in res["per_class"].items():
        cells = [f"{100 * c['by_severity'][s]['detected']:.0f} % ({c['by_severity'][s]['n']})"
                 if s in c["by_severity"] else "–" for s in sevs]
        md.append(f"| {cls} | {c['n']} | {100 * c['detected']:.1f} % | {100 * c[f'detected_{k}']:.1f} % | "
                  + " | ".join(cells) + " |")
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return out / "report.md"
