"""Report of a one-class evaluation: ``metrics.json``, ``report.md``, ``auroc.png``, ``roc_<detector>.png``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inspector.offline.texture.oneclass import DETECTOR_LABELS, OneClassResult
from inspector.offline.texture.report import _json_safe


def _ms(v: list[float]) -> str:
    a = np.asarray(v, float)
    return f"{100 * a.mean():.1f}" if len(a) < 2 else f"{100 * a.mean():.1f} ± {100 * a.std(ddof=1):.1f}"


def auroc_table(res: OneClassResult) -> str:
    """Rows = defect types (+ All, + good FRR); columns = detector × (AUROC, detected at the operating point)."""
    dets = res.detectors
    head = "| Defect type | n | " + " | ".join(f"{d} AUROC | {d} detected" for d in dets) + " |"
    rows = [head, "|---|---:|" + "---:|" * (2 * len(dets))]
    for t in [*res.defects, "All"]:
        n = res.class_counts.get(t, sum(res.class_counts[d] for d in res.defects))
        name = f"**{t}**" if t == "All" else t
        rows.append(f"| {name} | {n} | " + " | ".join(f"{_ms(res.auroc[d][t])} | {_ms(res.detection[d][t])}"
                                                       for d in dets) + " |")
    n_test = res.class_counts[res.good] - int(round(0.75 * res.class_counts[res.good]))
    rows.append(f"| good test part: false rejects | ≈{n_test} | "
                + " | ".join(f"– | {_ms(res.test_frr[d])}" for d in dets) + " |")
    return "\n".join(rows)


def _plots(res: OneClassResult, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    paths: dict[str, Path] = {}
    types = [*res.defects, "All"]
    x = np.arange(len(types))
    w = 0.8 / len(res.detectors)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(types) + 2), 4.0), dpi=110)
    for k, d in enumerate(res.detectors):
        a = np.array([res.auroc[d][t] for t in types]) * 100
        ax.bar(x + (k - (len(res.detectors) - 1) / 2) * w, a.mean(1), w,
               yerr=a.std(1, ddof=1) if a.shape[1] > 1 else None, capsize=2, label=DETECTOR_LABELS[d])
    ax.axhline(50, color="grey", lw=0.6, ls=":")
    ax.set_xticks(x, types, rotation=15)
    ax.set_ylim(40, 101)
    ax.set_ylabel("AUROC (%)")
    ax.set_title(f"{res.dataset}: trained on {res.good} only, {res.repeats} repeat(s)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    paths["auroc"] = out / "auroc.png"
    fig.savefig(paths["auroc"])
    plt.close(fig)
    for d, (s_good, s_def, thr) in res.roc_data.items():
        fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=110)
        for t, s in s_def.items():
            fpr, tpr, _ = roc_curve(np.r_[np.zeros(len(s_good)), np.ones(len(s))], np.r_[s_good, s])
            ax.plot(fpr, tpr, lw=1.2, label=f"{t} ({100 * np.mean(res.auroc[d][t]):.1f})")
        op_fpr = float((s_good >= thr).mean())
        ax.axvline(op_fpr, color="crimson", lw=0.8, ls="--", label=f"operating point (FRR {100 * res.frr:.0f} % target)")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls=":")
        ax.set_xlabel("false-reject rate (good)")
        ax.set_ylabel("detection rate (defect)")
        ax.set_title(f"{DETECTOR_LABELS[d]} — ROC, repeat 1", fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
        fig.tight_layout()
        paths[f"roc_{d}"] = out / f"roc_{d}.png"
        fig.savefig(paths[f"roc_{d}"])
        plt.close(fig)
    return paths


def write_oneclass_report(res: OneClassResult, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.json", **_plots(res, out)}
    paths["metrics"].write_text(json.dumps(_json_safe(res.to_dict()), indent=2) + "\n", encoding="utf-8")
    best = max(res.detectors, key=lambda d: np.mean(res.auroc[d]["All"]))
    md = [
        f"# One-class texture evaluation — {res.dataset}",
        "",
        f"- **Trained on** `{res.good}` only ({res.class_counts[res.good]} images): per repeat, "
        f"{int(100 * 0.5)} % fit the detector, 25 % set the threshold (their {100 * (1 - res.frr):.0f} % quantile: "
        f"target false-reject rate {100 * res.frr:.0f} %), 25 % are the good test images.",
        "- **Unknown defect types** (never seen in training): " + ", ".join(
            f"`{d}` ({res.class_counts[d]})" for d in res.defects) + ".",
        f"- **Features:** families {', '.join(res.families)}, standardised, PCA to {res.n_components} "
        "components fit on the good training images (unsupervised selection: no defect label is used).",
        f"- **Repeats:** {res.repeats} random splits of the good images (seeds {res.seed}…{res.seed + res.repeats - 1}); "
        f"mean ± sd. Run time {res.seconds:.0f} s.",
        "",
        "AUROC: good test images against each defect type (threshold-free). *detected*: share of the defect "
        "images at or above the operating threshold; the last row is the false-reject rate actually "
        "measured on the good test images at that threshold. All in %.",
        "",
        auroc_table(res),
        "",
        f"Best by pooled AUROC: **{DETECTOR_LABELS[best]}** ({_ms(res.auroc[best]['All'])} %).",
        "",
        "![AUROC per defect type](auroc.png)",
        "",
        *[f"![ROC {d}](roc_{d}.png)" for d in res.detectors],
        "",
    ]
    paths["report"] = out / "report.md"
    paths["report"].write_text("\n".join(md), encoding="utf-8")
    return paths
