"""Rebuild the default identity model (``models/excipient-identity-default/<version>``) from synthetic SEM frames.

Renders a training set and an unseen test set (other seeds) with :func:`inspector.synth.sem.render_sem`,
trains (cached frozen-backbone features when the backbone is pretrained), exports the version folder,
then measures the *served* models — the exported ONNX through :class:`inspector.identity.runtime.OrtModel`,
exactly what the daemon runs — on the same unseen frames: this version, and optionally earlier versions
(``compare``) for a like-for-like table. Optionally a 5-fold cross-validation by source frame on the
training frames (the paper's protocol, next to its F = 0.970). Writes ``comparison.json`` and
``comparison.md`` into ``report_dir``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from inspector.offline.identity.data import TileDataset

log = logging.getLogger("inspector.offline.identity.default_model")

PAPER_MEAN_F = 0.970  # Iwata et al. 2022, ResNet50, 5-fold CV, mean F-measure over 10 excipients


def render_set(root: Path, per_class: int, seed0: int, progress: bool) -> list[str]:
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


def served_probs(model_dir: Path, data: TileDataset, batch: int = 32, threads: int = 2) -> np.ndarray:
    """Tile probabilities of a model version through the serving path (sha256-verified, ONNX Runtime)."""
    from inspector.identity.runtime import OrtModel
    from inspector.identity.tiling import preprocess
    from inspector.modelrepo import load_model_dir

    ort = OrtModel(load_model_dir(model_dir), ["CPUExecutionProvider"], intra_op_threads=threads)
    if [c for c in ort.classes] != list(data.classes):
        raise ValueError(f"{model_dir}: classes {ort.classes} differ from the test set's {data.classes}")
    out = [ort.run(preprocess(data.tiles[i:i + batch], ort.preprocess_mode))["probs"]
           for i in range(0, len(data.tiles), batch)]
    return np.concatenate(out)


def frame_report(probs: np.ndarray, data: TileDataset) -> dict[str, Any]:
    """Tile accuracy, frame accuracy (mean tile probability), frame macro-F1 and per-class frame F1."""
    from inspector.offline.identity.metrics import classification_metrics, confusion_matrix, frame_probabilities

    fids, fprobs = frame_probabilities(probs, data.frame_ids)
    y, p = data.frame_labels[fids], fprobs.argmax(1)
    m = classification_metrics(confusion_matrix(y, p, data.num_classes), data.classes)
    return {"tile_accuracy": float(np.mean(probs.argmax(1) == data.labels)), "frame_accuracy": m["accuracy"],
            "frame_macro_f1": m["mean_f1"], "frames": int(len(fids)), "tiles": int(len(probs)),
            "per_class_f1": {c: v["f1"] for c, v in m["per_class"].items()}}


def _markdown(r: dict[str, Any]) -> str:
    versions = list(r["test"])
    lines = [f"# Default identity model: {', '.join(versions)} on the same unseen synthetic frames", "",
             f"Test set: {r['test_set']['frames']} frames ({r['test_set']['per_class']} per class, seeds "
             f"{r['test_set']['seeds']}), never used in training; each model runs through the serving path "
             "(ONNX Runtime, sha256-verified model version).", "",
             "| metric | " + " | ".join(versions) + " |", "|---|" + "---|" * len(versions)]
    for key, label in (("frame_accuracy", "frame accuracy"), ("frame_macro_f1", "frame macro-F1"),
                       ("tile_accuracy", "tile accuracy")):
        lines.append(f"| {label} | " + " | ".join(f"{r['test'][v][key]:.3f}" for v in versions) + " |")
    lines += ["", "Per-class frame F1:", "", "| class | " + " | ".join(versions) + " |",
              "|---|" + "---|" * len(versions)]
    for c in r["classes"]:
        lines.append(f"| {c} | " + " | ".join(f"{r['test'][v]['per_class_f1'][c]:.2f}" for v in versions) + " |")
    cv = r.get("cv")
    if cv:
        lines += ["", f"## {cv['folds']}-fold cross-validation by source frame (training frames)", "",
                  "| | tile mean F (± sd over folds) | tile accuracy | frame accuracy |", "|---|---|---|---|",
                  f"| this model's recipe | {cv['mean_f1']:.3f} ± {cv['std_f1']:.3f} | {cv['tile_accuracy']:.3f} ± "
                  f"{cv['std_tile_accuracy']:.3f} | {cv['frame_accuracy']:.3f} ± {cv['std_frame_accuracy']:.3f} |",
                  f"| Iwata et al. 2022 (ResNet50, real SEM of 10 excipients) | {PAPER_MEAN_F:.3f} | | |", "",
                  "Synthetic frames are not the paper's real micrographs: the comparison is of protocol, "
                  "not of difficulty."]
    return "\n".join(lines) + "\n"


def build_default(out: Path, cfg: Any, *, per_class: int, test_per_class: int, seed: int, cv_folds: int,
                  compare: list[Path], report_dir: Path | None, command: str, progress: bool) -> dict[str, Any]:
    """Render, train, export ``out``; evaluate it and ``compare`` on the same unseen frames. Returns the report."""
    from inspector.offline.identity import fast
    from inspector.offline.identity.data import dataset_sha256, load_dataset, train_val_split
    from inspector.offline.identity.export import export_model
    from inspector.offline.identity.backbones import get_spec
    from inspector.offline.identity.train import (
        config_dict, effective_train_layers, fit, predict_probs, resolve_weights, uses_cached_features,
    )
    from inspector.identity.tiling import preprocess

    spec = get_spec(cfg.backbone)
    weights, wdesc = resolve_weights(spec.name, cfg.weights)
    seed_train, seed_test = seed * 100_000, seed * 100_000 + 50_000
    with tempfile.TemporaryDirectory(prefix="identity-default-") as tmp:
        train_dir, test_dir = Path(tmp) / "train", Path(tmp) / "test"
        render_set(train_dir, per_class, seed_train, progress)
        render_set(test_dir, test_per_class, seed_test, progress)
        data = load_dataset(train_dir, progress=progress)
        test = load_dataset(test_dir, progress=progress)
        data_sha, test_sha = dataset_sha256(data.frames), dataset_sha256(test.frames)
        split = train_val_split(data.frame_labels, 0.2, seed=seed)
        tr, va = data.tile_indices(split.train), data.tile_indices(split.val)
        cached = uses_cached_features(cfg, weights)
        cv = None
        if cached:
            from inspector.offline.identity.embeddings import compute_features

            feats = compute_features(data, spec.name, weights, cache_dir=cfg.cache_dir, progress=progress)
            res, _ = fast.fit_cached(feats, data.labels, data.frame_ids, tr, va, cfg, data.num_classes,
                                     mode=effective_train_layers(cfg, weights), progress=progress)
        else:
            res = fit(data, tr, va, cfg, progress=progress)
        if cv_folds:
            from inspector.offline.identity.evaluate import cross_validate

            s = cross_validate(data, cfg, folds=cv_folds, split_seed=seed, progress=progress).summary()
            fs = [f["test_mean_f1"] for f in s["per_fold"]]
            accs = [f["test_accuracy"] for f in s["per_fold"]]
            faccs = [f["test_frame_accuracy"] for f in s["per_fold"]]
            cv = {"folds": cv_folds, "protocol": "stratified k-fold by source frame (tiles of a frame never split)",
                  "mean_f1": float(np.mean(fs)), "std_f1": float(np.std(fs)),
                  "tile_accuracy": float(np.mean(accs)), "std_tile_accuracy": float(np.std(accs)),
                  "frame_accuracy": float(np.mean(faccs)), "std_frame_accuracy": float(np.std(faccs)),
                  "paper_mean_f": PAPER_MEAN_F}
    keras_probs = predict_probs(res.model, test.tiles, spec.preprocess_mode)
    keras_report = frame_report(keras_probs, test)
    training = {
        "command": command,
        "data": {"generator": "inspector.synth.sem.render_sem", "frames_per_class": per_class,
                 "seeds": f"{seed_train}..+{per_class - 1}", "sha256": data_sha,
                 "train_frames": int(len(split.train)), "val_frames": int(len(split.val))},
        "config": config_dict(cfg, weights, wdesc),
        "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
        "history": {k: [round(v, 4) for v in vals] for k, vals in res.history.items()},
    }
    metrics = {"val_tile_accuracy": res.val_accuracy, "test_tile_accuracy": keras_report["tile_accuracy"],
               "test_frame_accuracy": keras_report["frame_accuracy"],
               "test_frame_macro_f1": keras_report["frame_macro_f1"], "test_per_class_f1": keras_report["per_class_f1"],
               "test_frames": len(test.frames), "test_data_sha256": test_sha,
               "test_seeds": f"{seed_test}..+{test_per_class - 1}", "cv": cv}
    md = export_model(res.model, out, name=out.resolve().parent.name, version=out.name, classes=data.classes,
                      backbone=spec.name, preprocess_mode=spec.preprocess_mode, metrics=metrics, training=training,
                      check_tiles=preprocess(test.tiles[::7][:32], spec.preprocess_mode))
    report: dict[str, Any] = {"classes": list(test.classes), "cv": cv, "test": {},
                              "test_set": {"frames": len(test.frames), "per_class": test_per_class,
                                           "seeds": f"{seed_test}..{seed_test + test_per_class - 1}",
                                           "sha256": test_sha}, "command": command}
    for path in [*compare, md.path]:
        label = f"v{Path(path).name} ({json.loads((Path(path) / 'manifest.json').read_text())['extra']['backbone']})"
        report["test"][label] = frame_report(served_probs(Path(path), test), test)
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "comparison.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (report_dir / "comparison.md").write_text(_markdown(report), encoding="utf-8")
    report["model_dir"] = str(md.path)
    report["val_accuracy"] = res.val_accuracy
    return report
