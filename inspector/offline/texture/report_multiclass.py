"""Report of a multi-class experiment: ``metrics.json``, ``results.csv``, ``report.md`` and PNG charts.

``report.md`` has, shaped like the seed's tables (rows = data, columns = classifier × metric):

* a summary table (rows = feature sets, columns = classifier accuracy mean ± sd over the repeats,
  macro-F1 beside it), with the published anchor, when given, beside our best figure;
* per feature set, a per-class table: rows = classes then macro and micro, columns = classifier ×
  (P, R, F1) in percent (mean ± sd over repeats).

``confusion_<fs>_<clf>.png`` is the confusion matrix of the best cell (summed over repeats; row
normalised, counts printed) and ``accuracy_multiclass.png`` the mean ± sd accuracy of every cell.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from inspector.offline.texture.classifiers import CLASSIFIER_LABELS
from inspector.offline.texture.multiclass import MultiCell, MulticlassResult
from inspector.offline.texture.report import _json_safe
from inspector.offline.texture.selection import feature_set_label

_PROTOCOL_TEXT = {
    "loo": "leave-one-out cross-validation",
    "split": "random stratified 50/50 train/test split",
    "cv": "stratified k-fold cross-validation",
}


def _ms(m: float, s: float, repeats: int) -> str:
    return f"{100 * m:.2f}" if repeats < 2 else f"{100 * m:.2f} ± {100 * s:.2f}"


def summary_table(result: MulticlassResult) -> str:
    """Rows = feature sets; columns = classifier × (accuracy, macro F1), mean ± sd in %."""
    clfs = result.classifiers
    head = "| Features | " + " | ".join(f"{CLASSIFIER_LABELS[c]} Acc | {CLASSIFIER_LABELS[c]} macro-F1"
                                        for c in clfs) + " |"
    rows = [head, "|---|" + "---:|" * (2 * len(clfs))]
    for fs in result.feature_sets:
        vals = []
        for c in clfs:
            cell = result.cell(fs, c)
            vals += [_ms(*cell.stat("accuracy"), result.repeats), _ms(*cell.stat("macro_f1"), result.repeats)]
        rows.append(f"| {feature_set_label(fs)} | " + " | ".join(vals) + " |")
    return "\n".join(rows)


def class_table(result: MulticlassResult, feature_set: str) -> str:
    """Rows = classes, macro, micro; columns = classifier × (P, R, F1) in %, mean ± sd over repeats."""
    clfs = result.classifiers
    head = "| Class | n | " + " | ".join(f"{CLASSIFIER_LABELS[c]} {m}" for c in clfs for m in ("P", "R", "F1")) + " |"
    rows = [head, "|---|---:|" + "---:|" * (3 * len(clfs))]
    r = result.repeats
    stats = {c: {k: result.cell(feature_set, c).class_stat(k) for k in ("precision", "recall", "f1")} for c in clfs}
    for i, cls in enumerate(result.classes):
        vals = [_ms(stats[c][k][0][i], stats[c][k][1][i], r) for c in clfs for k in ("precision", "recall", "f1")]
        rows.append(f"| {cls} | {result.class_counts[cls]} | " + " | ".join(vals) + " |")
    macro = [_ms(*result.cell(feature_set, c).stat(k), r) for c in clfs
             for k in ("macro_precision", "macro_recall", "macro_f1")]
    rows.append(f"| **macro** | {sum(result.class_counts.values())} | " + " | ".join(macro) + " |")
    micro = [_ms(*result.cell(feature_set, c).stat("micro_f1"), r) for c in clfs for _ in range(3)]
    rows.append("| **micro** (= accuracy) | | " + " | ".join(micro) + " |")
    return "\n".join(rows)


def confusion_png(result: MulticlassResult, cell: MultiCell, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = cell.total
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(result.classes)
    fig, ax = plt.subplots(figsize=(1.0 * k + 2.5, 0.9 * k + 2.0), dpi=110)
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), result.classes, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(k), result.classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    m, s = cell.stat("accuracy")
    ax.set_title(f"{result.dataset}: {cell.feature_set} / {CLASSIFIER_LABELS[cell.classifier]}\n"
                 f"{result.repeats} × {result.protocol}, accuracy {_ms(m, s, result.repeats)} %", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.03)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def accuracy_png(result: MulticlassResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fss, clfs = result.feature_sets, result.classifiers
    x = np.arange(len(fss))
    w = 0.8 / len(clfs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(fss) + 2), 4.2), dpi=110)
    lo = 100.0
    for k, c in enumerate(clfs):
        ms = np.array([result.cell(f, c).stat("accuracy") for f in fss]) * 100
        lo = min(lo, float(ms[:, 0].min()))
        ax.bar(x + (k - (len(clfs) - 1) / 2) * w, ms[:, 0], w, yerr=ms[:, 1], capsize=2, label=CLASSIFIER_LABELS[c])
    if result.anchor:
        ax.axhline(100 * result.anchor["accuracy"], color="crimson", lw=1, ls="--", label=result.anchor["label"])
    ax.set_xticks(x, fss)
    ax.set_ylim(max(0.0, lo - 5), 100.5)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{result.dataset}: {result.repeats} × {result.protocol}, mean ± sd", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_multiclass_report(result: MulticlassResult, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"metrics": out / "metrics.json", "csv": out / "results.csv"}
    paths["metrics"].write_text(json.dumps(_json_safe(result.to_dict()), indent=2) + "\n", encoding="utf-8")
    with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["feature_set", "classifier", "repeat", "accuracy", "macro_precision", "macro_recall", "macro_f1",
                    *[f"f1_{c}" for c in result.classes]])
        from inspector.offline.texture.multiclass import per_class, summary

        for cell in result.cells:
            for r, cm in enumerate(cell.confusions):
                s, pc = summary(cm), per_class(cm)
                w.writerow([cell.feature_set, cell.classifier, r, *(f"{s[k]:.4f}" for k in
                            ("accuracy", "macro_precision", "macro_recall", "macro_f1")),
                            *(f"{v:.4f}" for v in pc["f1"])])
    best = result.best()
    paths["confusion"] = out / f"confusion_{best.feature_set}_{best.classifier}.png"
    confusion_png(result, best, paths["confusion"])
    paths["accuracy"] = out / "accuracy_multiclass.png"
    accuracy_png(result, paths["accuracy"])
    paths["report"] = out / "report.md"
    paths["report"].write_text(_markdown(result, best, paths), encoding="utf-8")
    return paths


def _markdown(result: MulticlassResult, best: MultiCell, paths: dict[str, Path]) -> str:
    ex = result.extraction
    protocol = _PROTOCOL_TEXT[result.protocol] + (f", k = {result.folds}" if result.folds else "")
    reps = f"{result.repeats} repeat(s)" + (" (seeds " f"{result.seed}…{result.seed + result.repeats - 1})"
                                            if result.repeats > 1 else f" (seed {result.seed})")
    m, s = best.stat("accuracy")
    md = [
        f"# Multi-class texture experiment — {result.dataset}",
        "",
        f"- **Protocol:** {protocol}, {reps}; {result.n_folds} fits per cell in all; figures are mean ± sd "
        "over the repeats (sample sd).",
        f"- **Classes:** " + ", ".join(f"`{c}` ({n})" for c, n in result.class_counts.items())
        + f"; **skipped images:** {len(result.skipped)}.",
        f"- **Features:** families {', '.join(result.families) or 'mazda'}; {ex.get('levels', '?')} grey levels, "
        f"ROI {ex.get('roi', '?')}, max side {ex.get('max_side') or 'full size'}.",
        "- Selection and scaling are refit on every training part; the tuned SVMs search their grid by an "
        "inner 5-fold CV of the training part only.",
        f"- **Run time:** {result.seconds:.0f} s; {result.convergence_warnings} convergence warnings.",
        "",
        f"**Best:** {feature_set_label(best.feature_set)} + {CLASSIFIER_LABELS[best.classifier]}: accuracy "
        f"{_ms(m, s, result.repeats)} %, macro-F1 {_ms(*best.stat('macro_f1'), result.repeats)} %.",
    ]
    if result.anchor:
        a = result.anchor
        md.append(f"**Published anchor:** {a['label']}: {100 * a['accuracy']:.2f} ± {100 * a.get('sd', 0):.2f} % "
                  f"({a.get('source', '')}).")
    md += ["", "## Accuracy and macro-F1 (%)", "", summary_table(result), "", f"![accuracy]({paths['accuracy'].name})",
           "", f"![confusion matrix of the best cell]({paths['confusion'].name})", ""]
    for k, fs in enumerate(result.feature_sets):
        md += [f"## Table {k + 1}. {feature_set_label(fs)}: per-class precision / recall / F1 (%)", "",
               class_table(result, fs), ""]
    for fs, counts in result.selection_counts.items():
        top = list(counts.items())[:10]
        md += [f"### Most often selected by {fs} ({result.n_folds} fits)", "",
               ", ".join(f"`{n}` ({c})" for n, c in top), ""]
    return "\n".join(md)
