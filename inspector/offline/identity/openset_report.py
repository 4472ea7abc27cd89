"""Report of ``inspector evaluate openset``: report.md, summary.csv and one score-histogram PNG per scenario."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from inspector.identity.openset import METHODS

FIELDS = ("auroc", "fpr95", "known_rejected", "unknown_accepted")
GOAL = "unknown accepted ≤ 5 % while known falsely rejected ≤ 1 %"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]


def histograms(scenario: dict[str, Any], path: Path) -> Path:
    """Known-test vs unknown frame scores per method (first repeat), threshold as a dashed line."""
    plt = _plt()
    ex = scenario["example"]
    sets = list(ex["sets"])
    fig, axes = plt.subplots(len(sets), len(METHODS), figsize=(4 * len(METHODS), 2.8 * len(sets)), squeeze=False)
    agg = ex["block"]["aggregation"]
    for i, name in enumerate(sets):
        for j, m in enumerate(METHODS):
            h = ex["sets"][name]["hist"][m]
            ax = axes[i][j]
            k, u = np.asarray(h["known"]), np.asarray(h["unknown"])
            lo, hi = np.percentile(np.r_[k, u], [0.5, 99.5])
            bins = np.linspace(lo, hi if hi > lo else lo + 1e-9, 40)
            ax.hist(np.clip(k, lo, hi), bins=bins, alpha=0.6, density=True, label=f"known test ({len(k)})")
            ax.hist(np.clip(u, lo, hi), bins=bins, alpha=0.6, density=True, label=f"{name} ({len(u)})")
            ax.axvline(h["threshold"], color="k", ls="--", lw=1, label="threshold (99 % known)")
            ax.set_title(f"{m} ({agg})", fontsize=9)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.legend(fontsize=6)
    fig.suptitle(scenario["name"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(v: tuple[float, float], pct: bool) -> str:
    m, s = v
    return f"{100 * m:.1f} ± {100 * s:.1f} %" if pct else f"{m:.3f} ± {s:.3f}"


def write_report(scenarios: list[dict[str, Any]], meta: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    files: dict[str, Path] = {}
    lines = [
        "# Unknown-material detection (open-set) — evaluation", "",
        f"Model `{meta['model']}` (backbone `{meta.get('backbone')}`, sha256 `{meta['model_sha256'][:12]}…`), "
        f"{meta['repeats']} random split(s) per scenario, mean ± sd. Command:", "", f"    {meta['command']}", "",
        f"Calibration: {meta['calibration']}. Thresholds are chosen on held-out **known** frames only "
        f"(the {meta['calibration'].get('quantile', 0.99):.0%} quantile); *known rejected* and *unknown accepted* "
        "are measured on other frames at that threshold. *Unknown accepted* = accepted as the expected "
        "excipient when the line expects the class the frame looks most like (worst case). "
        f"`today/min_confidence` is the rule before this work (softmax confidence ≥ 0.6). Goal: {GOAL}.", "",
    ]
    rows_csv = []
    for sc in scenarios:
        lines += [f"## {sc['name']}", "",
                  f"{sc['known_frames']} known test frames per split; classifier frame accuracy on them "
                  f"{100 * sc['frame_accuracy']:.1f} %.", ""]
        if sc["kind"] == "loco":
            lines += ["Frozen model embeddings + linear probe on the known classes (MSP/energy from the probe).", ""]
        for name, res in sc["summary"].items():
            lines += [f"Unknown: **{name}** ({res['frames']} frames)", "",
                      "| method / aggregation | AUROC | FPR @ 95 % TPR | known rejected | unknown accepted |",
                      "|---|---|---|---|---|"]
            # the row meeting the known-rejection budget (≤ 2 % on average) that accepts the fewest unknowns
            ok = [r for r in res["rows"] if res["rows"][r]["known_rejected"][0] <= 0.02] or list(res["rows"])
            best = min(ok, key=lambda r: (res["rows"][r]["unknown_accepted"][0], -res["rows"][r]["auroc"][0]))
            for key, r in res["rows"].items():
                mark = " **(fewest accepted, known rejected ≤ 2 %)**" if key == best else ""
                lines.append(f"| {key}{mark} | {_fmt(r['auroc'], False)} | {_fmt(r['fpr95'], True)} | "
                             f"{_fmt(r['known_rejected'], True)} | {_fmt(r['unknown_accepted'], True)} |")
                rows_csv.append({"scenario": sc["name"], "unknown": name, "method": key,
                                 **{f: round(r[f][0], 4) for f in FIELDS}, **{f"{f}_sd": round(r[f][1], 4) for f in FIELDS}})
            lines.append("")
        png = histograms(sc, out_dir / f"hist-{_slug(sc['name'])}.png")
        files[f"hist:{sc['name']}"] = png
        lines += [f"![score histograms]({png.name})", ""]
    lines += ["## What this can and cannot say", "",
              "- Known-frame rejection at the threshold is bounded by construction only in expectation; with "
              "tens of held-out frames the 99th percentile is itself uncertain (see the sd).",
              "- LOCO on a set of the model's own training classes is optimistic: the backbone was trained "
              "with the held-out class among its classes.",
              "- A small model trained on synthetic SEM sees real SEM of other powders through features it "
              "never learnt for them; the figures measure exactly that transfer.", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    with open(out_dir / "summary.csv", "w", newline="", encoding="utf-8") as f:
        if rows_csv:
            w = csv.DictWriter(f, fieldnames=list(rows_csv[0]))
            w.writeheader()
            w.writerows(rows_csv)
    files["report"] = report
    files["csv"] = out_dir / "summary.csv"
    return files
