"""Reports of identity training and cross-validation: PNG figures, metrics.json and report.md.

Figures follow the paper: confusion matrix (Fig. 4), per-class precision / recall / F-measure
(Fig. 5), the lr × batch validation-accuracy heat map with the chosen cell marked (Fig. 3),
training curves, and Grad-CAM overlays on test tiles and on a whole test frame (Fig. 6).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from inspector.offline.identity.data import TileDataset
    from inspector.offline.identity.evaluate import CVResult
    from inspector.offline.identity.train import FitResult, GridResult


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    """Counts in each cell, colour = row-normalised rate (recall on the diagonal)."""
    plt = _plt()
    cm = np.asarray(cm)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    size = max(4.5, 0.6 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_grid(acc: np.ndarray, lrs: list[float], batches: list[int], path: Path, title: str) -> Path:
    """Validation accuracy per learning rate (rows) × batch size (columns); best cell outlined."""
    plt = _plt()
    acc = np.asarray(acc, float)
    fig, ax = plt.subplots(figsize=(1.2 * len(batches) + 2.5, 0.7 * len(lrs) + 1.8))
    masked = np.ma.masked_invalid(acc)
    im = ax.imshow(masked, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(len(lrs)):
        for j in range(len(batches)):
            v = acc[i, j]
            ax.text(j, i, "diverged" if math.isnan(v) else f"{v:.3f}", ha="center", va="center", fontsize=9,
                    color="black" if (not math.isnan(v) and v > 0.6) else "white")
    if np.isfinite(acc).any():
        bi, bj = np.unravel_index(np.nanargmax(acc), acc.shape)
        ax.add_patch(plt.Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    ax.set_xticks(range(len(batches)), [str(b) for b in batches])
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_xlabel("batch size")
    ax.set_ylabel("learning rate")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="validation accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(histories: list[dict[str, list[float]]], labels: list[str], path: Path) -> Path:
    """Accuracy and loss per epoch, training (solid) vs validation (dashed), one colour per run."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (h, label) in enumerate(zip(histories, labels, strict=True)):
        c = colours[k % len(colours)]
        for ax, key in zip(axes, ("accuracy", "loss"), strict=True):
            ep = np.arange(1, len(h.get(key, [])) + 1)
            ax.plot(ep, h.get(key, []), color=c, label=f"{label} train")
            ax.plot(ep, h.get(f"val_{key}", []), color=c, linestyle="--", label=f"{label} val")
    axes[0].set_ylim(-0.02, 1.02)
    for ax, key in zip(axes, ("accuracy", "loss"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(f"{key}: training (solid) vs validation (dashed)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_class_metrics(per_class: dict[str, dict[str, float]], path: Path, title: str) -> Path:
    """Grouped bars of precision, recall and F-measure per class (paper Fig. 5)."""
    plt = _plt()
    names = list(per_class)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) + 2), 4))
    for k, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, [per_class[n][key] for n in names], width=0.27,
               label="F-measure" if key == "f1" else key)
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.18)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper center", ncol=3, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def gradcam_figures(model: Any, data: TileDataset, test_tiles: np.ndarray, out_dir: Path,
                    preprocess_mode: str) -> dict[str, Path]:
    """Grad-CAM of one test tile per class (grid PNG) and of every tile of one test frame."""
    import cv2

    from inspector.identity.gradcam import frame_overlay
    from inspector.offline.identity.gradcam_tf import grad_cam, grad_cam_raw, overlay
    from inspector.offline.identity.data import read_frame
    from inspector.identity.tiling import crop_data_bar, preprocess, to_gray_u8

    plt = _plt()
    out: dict[str, Path] = {}
    picks = []  # per class, its test tile with the most structure (highest grey-level spread)
    for c in range(data.num_classes):
        cand = test_tiles[data.labels[test_tiles] == c]
        if len(cand):
            picks.append(int(cand[np.argmax(data.tiles[cand].reshape(len(cand), -1).std(axis=1))]))
    if picks:
        x = preprocess(data.tiles[picks], preprocess_mode)
        cams = grad_cam(model, x)
        pred = np.asarray(model(x, training=False)).argmax(axis=1)
        cols = min(5, len(picks))
        rows = math.ceil(len(picks) / cols)
        fig, axes = plt.subplots(2 * rows, cols, figsize=(2.6 * cols, 5.4 * rows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for k, t in enumerate(picks):
            r, c = 2 * (k // cols), k % cols
            axes[r, c].imshow(data.tiles[t], cmap="gray", vmin=0, vmax=255)
            axes[r, c].set_title(f"true {data.classes[data.labels[t]]}", fontsize=8)
            axes[r + 1, c].imshow(overlay(data.tiles[t], cams[k]))
            ok = "✓" if pred[k] == data.labels[t] else "✗"
            axes[r + 1, c].set_title(f"pred {data.classes[pred[k]]} {ok}", fontsize=8)
        fig.suptitle("Grad-CAM on test tiles (last conv layer, predicted class)", fontsize=10)
        fig.tight_layout()
        out["gradcam_tiles"] = out_dir / "gradcam_tiles.png"
        fig.savefig(out["gradcam_tiles"], dpi=110)
        plt.close(fig)
    frame_id = int(data.frame_ids[test_tiles[0]])
    idx = np.flatnonzero(data.frame_ids == frame_id)
    raw, _ = grad_cam_raw(model, preprocess(data.tiles[idx], preprocess_mode))
    peak = float(raw.max(initial=0.0))
    cams = raw / peak if peak > 1e-12 else np.zeros_like(raw)  # one scale for the whole frame
    grey = crop_data_bar(to_gray_u8(read_frame(data.frames[frame_id])))
    rgb = frame_overlay(grey, cams, data.origins[frame_id], data.tile)
    out["gradcam_frame_overlay"] = out_dir / "gradcam_frame_overlay.png"  # full resolution
    cv2.imwrite(str(out["gradcam_frame_overlay"]), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    probs = np.asarray(model(preprocess(data.tiles[idx], preprocess_mode), training=False)).mean(axis=0)
    true = data.classes[data.frame_labels[frame_id]]
    pred = data.classes[int(probs.argmax())]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    axes[0].imshow(grey, cmap="gray", vmin=0, vmax=255)
    axes[0].set_title(f"{data.frames[frame_id].parent.name}/{data.frames[frame_id].name} (data bar cropped)",
                      fontsize=9)
    axes[1].imshow(rgb)
    axes[1].set_title(f"Grad-CAM per tile (one colour scale for the frame)\n"
                      f"true {true} — predicted {pred} (mean tile probability {probs.max():.0%})", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    out["gradcam_frame"] = out_dir / "gradcam_frame.png"
    fig.savefig(out["gradcam_frame"], dpi=110)
    plt.close(fig)
    return out


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _class_table(m: dict[str, Any]) -> str:
    rows = [[c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
            for c, v in m["per_class"].items()]
    rows.append(["**mean**", f"{m['mean_precision']:.3f}", f"{m['mean_recall']:.3f}", f"**{m['mean_f1']:.3f}**",
                 m["support"]])
    return _md_table(["class", "precision", "recall", "F-measure", "tiles"], rows)


def _grid_table(acc: np.ndarray, lrs: list[float], batches: list[int]) -> str:
    rows = [[f"{lr:g}"] + ["—" if math.isnan(v) else f"{v:.3f}" for v in acc[i]] for i, lr in enumerate(lrs)]
    return _md_table(["lr \\ batch"] + [str(b) for b in batches], rows)


def _config_lines(cfg: dict[str, Any]) -> list[str]:
    return [
        f"- backbone: **{cfg['backbone']}** (preprocessing `{cfg['preprocess_mode']}`), tile {cfg['tile']}²",
        f"- weights: **{cfg['weights']}**",
        f"- trained layers: {'last convolutional block + head (paper)' if cfg['train_layers'] == 'last_block' else 'all layers + head'}",
        f"- SGD momentum 0.9; head dense {cfg['hidden']} ReLU, dropout {cfg['dropout']}, softmax; "
        f"up to {cfg['epochs']} epochs, early stopping on validation accuracy (patience {cfg['patience']}); "
        f"augmentation {'flips/quarter turns' if cfg['augment'] else 'none'}; seed {cfg['seed']}",
    ]


def write_cv_report(result: CVResult, data: TileDataset, out_dir: str | Path, *,
                    command: str = "", gradcam: bool = True, protocol: str | None = None) -> dict[str, Path]:
    """Write the cross-validation report folder; returns the written files by role.

    ``protocol``: how the folds were made, for the report (default: the paper's k-fold by frame)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    summary["command"] = command
    summary["data"] = {"summary": data.summary(), "frames": [str(p) for p in data.frames]}
    files: dict[str, Path] = {}
    k = len(result.folds)
    tiles, frames = summary["tiles"], summary["frames"]
    files["confusion"] = plot_confusion(result.confusion, result.classes, out / "confusion_matrix.png",
                                        f"test tiles, {k}-fold CV (accuracy {tiles['pooled']['accuracy']:.3f})")
    files["confusion_frames"] = plot_confusion(
        result.frame_confusion, result.classes, out / "confusion_matrix_frames.png",
        f"test frames (mean tile probability), accuracy {frames['pooled']['accuracy']:.3f}")
    files["class_metrics"] = plot_class_metrics(tiles["pooled"]["per_class"], out / "class_metrics.png",
                                                "precision, recall, F-measure per class (test tiles, pooled)")
    files["curves"] = plot_curves([f.history for f in result.folds],
                                  [f"fold {f.fold + 1} (lr {f.lr:g}, batch {f.batch})" for f in result.folds],
                                  out / "training_curves.png")
    grid_mean = result.grid_mean()
    if grid_mean is not None:
        g = result.folds[0].grid
        files["grid"] = plot_grid(grid_mean, g.lrs, g.batches, out / "grid_lr_batch.png",
                                  f"validation accuracy, mean over {k} folds")
    if gradcam and result.model is not None:
        files.update(gradcam_figures(result.model, data, result.folds[0].test_tiles, out,
                                     result.config["preprocess_mode"]))
    files["metrics"] = out / "metrics.json"
    files["metrics"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    protocol = protocol or (f"Per fold and class: test = 1/{k} of the frames, validation = the next 1/{k}, "
                            "training = the rest")
    md = [f"# Excipient identity — {k}-fold cross-validation", "",
          f"Data: {data.summary()}. {protocol} Tiles of a frame never leave its set.", "", "## Configuration", "",
          *_config_lines(result.config),
          f"- hyper-parameters: {'grid lr × batch per fold, best by validation accuracy' if result.grid_used else 'fixed lr/batch'}",
          "", "## Results", "",
          _md_table(["level", "accuracy (mean ± sd over folds)", "mean F-measure (mean ± sd over folds)",
                     "accuracy pooled over folds"], [
              ["tile", f"{tiles['mean_accuracy']:.3f} ± {tiles['std_accuracy']:.3f}",
               f"{tiles['mean_f1']:.3f} ± {tiles['std_f1']:.3f}", f"{tiles['pooled']['accuracy']:.3f}"],
              ["frame", f"{frames['mean_accuracy']:.3f} ± {frames['std_accuracy']:.3f}",
               f"{frames['pooled']['mean_f1']:.3f} (pooled over folds)", f"{frames['pooled']['accuracy']:.3f}"]]),
          "", "### Per class (test tiles pooled over folds)", "", _class_table(tiles["pooled"]), "",
          "![confusion matrix](confusion_matrix.png)", "", "![per-class metrics](class_metrics.png)", "",
          "![frame-level confusion matrix](confusion_matrix_frames.png)", "",
          "### Per fold", "",
          _md_table(["fold", "lr", "batch", "best epoch / run", "val acc", "test acc", "test mean F", "frame acc"],
                    [[f.fold + 1, f"{f.lr:g}", f.batch, f"{f.best_epoch}/{f.epochs_run}", f"{f.val_accuracy:.3f}",
                      f"{f.metrics['accuracy']:.3f}", f"{f.metrics['mean_f1']:.3f}",
                      f"{f.frame_metrics['accuracy']:.3f}"] for f in result.folds]),
          "", "![training curves](training_curves.png)", ""]
    if grid_mean is not None:
        g = result.folds[0].grid
        md += ["### Learning rate × batch size (validation accuracy, mean over folds)", "",
               _grid_table(grid_mean, g.lrs, g.batches), "", "![grid](grid_lr_batch.png)", ""]
    if "gradcam_tiles" in files or "gradcam_frame" in files:
        md += ["## Grad-CAM (fold 1 model, test data)", "",
               "Last convolutional layer, predicted class; red = most important for the decision.", ""]
        if "gradcam_tiles" in files:
            md += ["![Grad-CAM tiles](gradcam_tiles.png)", ""]
        md += ["![Grad-CAM frame](gradcam_frame.png)", ""]
    if command:
        md += ["## Reproduce", "", f"```\n{command}\n```", ""]
    files["report"] = out / "report.md"
    files["report"].write_text("\n".join(md), encoding="utf-8")
    return files


def write_training_report(fit: FitResult, grid: GridResult | None, config: dict[str, Any],
                          val_metrics: dict[str, Any], out_dir: str | Path, *, command: str = "") -> dict[str, Path]:
    """Report of a final training run: curves, grid heat map, validation metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"curves": plot_curves([fit.history], [f"lr {fit.lr:g}, batch {fit.batch}"], out / "training_curves.png")}
    if grid is not None:
        files["grid"] = plot_grid(grid.val_accuracy, grid.lrs, grid.batches, out / "grid_lr_batch.png",
                                  "validation accuracy per learning rate × batch size")
    md = ["# Excipient identity — training", "", *_config_lines(config),
          f"- chosen: lr {fit.lr:g}, batch {fit.batch}; best epoch {fit.best_epoch} of {fit.epochs_run}; "
          f"validation accuracy {fit.val_accuracy:.3f}", "",
          "## Validation tiles", "", _class_table(val_metrics), "", "![training curves](training_curves.png)", ""]
    if grid is not None:
        md += ["## Learning rate × batch size", "", _grid_table(grid.val_accuracy, grid.lrs, grid.batches), "",
               "![grid](grid_lr_batch.png)", ""]
    if command:
        md += ["## Reproduce", "", f"```\n{command}\n```", ""]
    files["report"] = out / "report.md"
    files["report"].write_text("\n".join(md), encoding="utf-8")
    return files
