"""Reports of a texture experiment: files a person opens.

``OUT_DIR/metrics.json`` (everything, machine-readable), ``results.csv`` (one row per subset ×
feature set × classifier), ``report.md`` (tables shaped like the paper's Tables 2–8: one table per
feature set, rows = data subsets, columns = classifier × Acc/Sn/Sp, in percent) and PNG bar charts
(``accuracy_<feature set>.png`` like the paper's Figures 4–9, plus ``accuracy_overview.png``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from inspector.offline.texture.classifiers import CLASSIFIER_LABELS
from inspector.offline.texture.experiment import ExperimentResult
from inspector.offline.texture.selection import feature_set_label

_PROTOCOL_TEXT = {
    "loo": "leave-one-out cross-validation (paper's Experiment I)",
    "split": "stratified 50/50 train/test split (paper's Experiment II)",
    "cv": "stratified k-fold cross-validation",
}


def _pct(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def _json_safe(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {str(k): _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, np.generic):
        return _json_safe(o.item())
    return o


def metrics_table(result: ExperimentResult, feature_set: str) -> str:
    """One Markdown table: rows = subsets, columns = classifier × (Acc, Sn, Sp) in percent."""
    clfs = result.classifiers
    head = "| Dataset | n (neg/pos) | Majority | " + " | ".join(
        f"{CLASSIFIER_LABELS[c]} {m}" for c in clfs for m in ("Acc", "Sn", "Sp")) + " |"
    sep = "|---|---|---:|" + "---:|" * (3 * len(clfs))
    rows = [head, sep]
    for s in result.subsets:
        cells = [result.cell(s, feature_set, c) for c in clfs]
        n_pos = cells[0].tp + cells[0].fn
        n_neg = cells[0].tn + cells[0].fp
        vals = " | ".join(f"{_pct(x.accuracy)} | {_pct(x.sensitivity)} | {_pct(x.specificity)}" for x in cells)
        name = f"**{s}**" if s == "All" else s
        majority = max(n_neg, n_pos) / max(1, n_neg + n_pos)
        rows.append(f"| {name} | {n_neg}/{n_pos} | {_pct(majority)} | {vals} |")
    return "\n".join(rows)


def _selected_table(result: ExperimentResult) -> str:
    fss = [f for f in result.feature_sets if f != "all"]
    if not fss:
        return ""
    depth = max(len(result.selected_on_all.get(f, [])) for f in fss)
    rows = ["| Rank | " + " | ".join(f.upper() for f in fss) + " |", "|---:|" + "---|" * len(fss)]
    for r in range(depth):
        vals = [result.selected_on_all[f][r] if r < len(result.selected_on_all.get(f, [])) else "" for f in fss]
        rows.append(f"| {r + 1} | " + " | ".join(f"`{v}`" if v else "" for v in vals) + " |")
    return "\n".join(rows)


def _stability(result: ExperimentResult, subset: str, top: int = 10) -> str:
    lines = []
    n = result.n_folds.get(subset, 0)
    for fs, counts in result.selection_counts.get(subset, {}).items():
        items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        shown = ", ".join(f"`{k}` {100 * v / n:.0f}%" for k, v in items) if n else ""
        lines.append(f"- **{fs.upper()}** ({n} folds): {shown}")
    return "\n".join(lines)


def bar_chart(result: ExperimentResult, feature_set: str, path: Path) -> None:
    """Grouped bars: accuracy (%) per subset, one bar per classifier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subsets, clfs = result.subsets, result.classifiers
    x = np.arange(len(subsets))
    w = 0.8 / len(clfs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(subsets) + 2), 4.2), dpi=110)
    for k, c in enumerate(clfs):
        acc = [100 * result.cell(s, feature_set, c).accuracy for s in subsets]
        bars = ax.bar(x + (k - (len(clfs) - 1) / 2) * w, acc, w, label=CLASSIFIER_LABELS[c])
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    ax.set_xticks(x, subsets, rotation=20 if len(subsets) > 5 else 0)
    ax.set_ylim(0, 122)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{result.dataset}: {feature_set_label(feature_set)} — {result.protocol.upper()}", fontsize=10)
    ax.axhline(50, color="grey", lw=0.6, ls=":")
    ax.legend(ncol=len(clfs), fontsize=8, loc="upper center", frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def overview_chart(result: ExperimentResult, path: Path) -> None:
    """Heat map of accuracy: rows = subsets, columns = feature set × classifier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subsets = result.subsets
    cols = [(f, c) for f in result.feature_sets for c in result.classifiers]
    acc = np.array([[100 * result.cell(s, f, c).accuracy for f, c in cols] for s in subsets])
    fig, ax = plt.subplots(figsize=(max(7.0, 0.45 * len(cols) + 2.5), 0.5 * len(subsets) + 2.2), dpi=110)
    im = ax.imshow(acc, vmin=50, vmax=100, cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(acc):
        ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 80 else "black")
    ax.set_xticks(range(len(cols)), [f"{f.upper()}\n{CLASSIFIER_LABELS[c]}" for f, c in cols], fontsize=7)
    ax.set_yticks(range(len(subsets)), subsets, fontsize=8)
    ax.set_title(f"{result.dataset}: accuracy (%), {result.protocol.upper()}", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(result: ExperimentResult, out_dir: str | Path) -> dict[str, Path]:
    """Write metrics.json, results.csv, report.md and the PNG charts; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    paths["metrics"] = out / "metrics.json"
    paths["metrics"].write_text(json.dumps(_json_safe(result.to_dict()), indent=2) + "\n", encoding="utf-8")

    paths["csv"] = out / "results.csv"
    with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["subset", "feature_set", "classifier", "n", "tp", "fn", "tn", "fp", "accuracy", "sensitivity",
                    "specificity"])
        for c in result.cells:
            w.writerow([c.subset, c.feature_set, c.classifier, c.n, c.tp, c.fn, c.tn, c.fp,
                        f"{c.accuracy:.4f}", f"{c.sensitivity:.4f}", f"{c.specificity:.4f}"])

    for fs in result.feature_sets:
        paths[f"png_{fs}"] = out / f"accuracy_{fs}.png"
        bar_chart(result, fs, paths[f"png_{fs}"])
    paths["png_overview"] = out / "accuracy_overview.png"
    overview_chart(result, paths["png_overview"])

    paths["report"] = out / "report.md"
    paths["report"].write_text(_markdown(result), encoding="utf-8")
    return paths


def _markdown(result: ExperimentResult) -> str:
    counts = ", ".join(f"{c}: {n}" for c, n in result.class_counts.items())
    protocol = _PROTOCOL_TEXT[result.protocol] + (f", k = {result.folds}" if result.folds else "")
    ex = result.extraction
    md = [
        f"# Texture experiment — {result.dataset}",
        "",
        f"- **Protocol:** {protocol}; seed {result.seed}.",
        f"- **Negative class:** `{result.negative}`; **positive (defect) classes:** "
        + ", ".join(f"`{p}`" for p in result.positives) + ".",
        f"- **Images used:** {sum(result.class_counts.values())} ({counts}); "
        f"**skipped:** {len(result.skipped)} (listed at the end).",
        f"- **Features:** 281 texture features, {ex.get('levels', '?')} grey levels, ROI {ex.get('roi', '?')}, "
        f"max side {ex.get('max_side') or 'full size'}; {ex.get('cached', 0)} images read from the feature cache.",
        f"- **Run time:** {result.seconds:.1f} s for selection + classification; "
        f"{result.convergence_warnings} convergence warnings (SVM/ANN iteration caps).",
        "",
        "Acc = accuracy, Sn = sensitivity (recall of the defect class), Sp = specificity, all in %; "
        "Majority = the accuracy of always answering the larger class (read Acc against it, and read Sn). "
        "Each subset is one defect class against the negative class; **All** pools every defect class. "
        "Feature selection is refit inside every training fold (no test-fold leakage), including the "
        "best-pair search.",
        "",
        "![accuracy overview](accuracy_overview.png)",
        "",
    ]
    for k, fs in enumerate(result.feature_sets):
        md += [f"## Table {k + 1}. {feature_set_label(fs)}", "", metrics_table(result, fs), "",
               f"![{fs}](accuracy_{fs}.png)", ""]
    sel = _selected_table(result)
    if sel:
        whole = result.subsets[-1]
        md += [
            f"## Selected features on the whole `{whole}` subset (descriptive, like the paper's Table 2)",
            "",
            "These are what each selector picks when fit on every image of the subset — the paper's "
            "procedure. They are *not* what the evaluation used (selection there is refit per fold).",
            "",
            sel,
            "",
            f"### Selection stability across folds (`{whole}`)",
            "",
            _stability(result, whole),
            "",
        ]
    if result.skipped:
        md += ["## Skipped images", "", f"{len(result.skipped)} image(s) could not be described:", "",
               "| image | class | reason |", "|---|---|---|"]
        md += [f"| `{s['path']}` | {s['class']} | {s['reason']} |" for s in result.skipped[:200]]
        if len(result.skipped) > 200:
            md.append(f"| … | | {len(result.skipped) - 200} more in metrics.json |")
        md.append("")
    return "\n".join(md)
