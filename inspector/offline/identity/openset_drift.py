"""``inspector drift report --lot ID --config FILE``: one lot's identity frames against the reference.

Reads the lot's frame records from the audit store (each identity decision carries its compact
embedding and expected class, written by ``inspector.daemon.recorder``) and the ``lot_summary``
records, loads the drift reference of the model that served the lot (sha256-verified), and writes
``drift-<lot>.png`` (the reference frames of the expected excipient, the other classes and the lot's
frames on the first two whitened principal components) and ``drift-<lot>.md`` (drift statistic,
threshold, alarm, verdict counts, per-component mean shift; for the particle-morphology view its
statistic and the shift of each measured feature in reference standard deviations).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from inspector.daemon.drift import INSPECTION, Reference, drift_value
from inspector.errors import InspectorError
from inspector.identity.morphology import FEATURES
from inspector.identity.openset import ARTIFACT


def lot_embeddings(store: Any, lot: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """{(expected, model name, version): {"z": [...], "verdicts": Counter, "frames": [...]}} of one lot."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for rec in store.records(kind="frame"):
        p = rec.payload
        if str(p.get("lot")) != lot:
            continue
        for d in p.get("decisions") or []:
            if d.get("inspection") != INSPECTION or "embedding" not in d or not d.get("expected"):
                continue
            model = d.get("model") or {}
            key = (str(d["expected"]), str(model.get("name")), str(model.get("version")))
            e = out.setdefault(key, {"z": [], "morphology": [], "verdicts": Counter(), "frames": []})
            e["z"].append(d["embedding"])
            if d.get("morphology") is not None:
                e["morphology"].append(d["morphology"])
            e["verdicts"][d.get("reason") or d.get("verdict")] += 1
            e["frames"].append(p.get("frame_id"))
    return out


def write_drift_report(lot: str, config_file: str | Path, out_dir: str | Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from inspector.audit.settings import open_store
    from inspector.config import load_config
    from inspector.inspections.excipient_identity import match_class
    from inspector.modelrepo import resolve

    cfg = load_config(config_file, check_inspections=False)
    store = open_store(cfg, create=False)
    try:
        groups = lot_embeddings(store, lot)
        summaries = [r.payload for r in store.records(kind="lot_summary") if str(r.payload.get("lot")) == lot]
    finally:
        store.close()
    if not groups:
        raise InspectorError(f"the audit store holds no identity frame with an embedding for lot {lot!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", lot)[:64]
    lines = [f"# Lot drift report: lot `{lot}`", "",
             "| excipient | model | frames | drift | threshold | alarm | verdicts |", "|---|---|---|---|---|---|---|"]
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 5), squeeze=False)
    shifts = []
    morph_lines: list[str] = []
    for ax, ((exc, name, version), g) in zip(axes[0], groups.items()):
        ref = Reference.load(cfg.models_path(), name, version)
        if ref is None:
            raise InspectorError(f"model {name}/{version} has no calibrated drift reference")
        ci = match_class(exc, ref.classes)
        md = resolve(cfg.models_path(), name, version)
        with np.load(md.artifact(ARTIFACT), allow_pickle=False) as npz:
            rp, rl = np.asarray(npz["ref_proj"]), np.asarray(npz["ref_labels"])
        z = np.asarray(g["z"], np.float64)
        n = len(z)
        drift = drift_value(z.sum(0), n, ref.means[ci], ref.precision, ref.counts[ci])
        alarm = n >= ref.min_frames and drift > ref.threshold
        verdicts = ", ".join(f"{k}: {v}" for k, v in sorted(g["verdicts"].items()))
        lines.append(f"| {exc} | {name}/{version} | {n} | {drift:.3g} | {ref.threshold:.3g} | "
                     f"{'**yes**' if alarm else 'no'} | {verdicts} |")
        shifts.append((exc, z.mean(0) - ref.means[ci]))
        mv, mz = ref.morphology, np.asarray(g["morphology"], np.float64)
        if mv is not None and len(mz) and mz.shape[1] == mv.means.shape[1]:
            md_ = mv.statistic(mz.sum(0), len(mz), ci)
            sd = np.sqrt(np.diag(np.linalg.inv(mv.precision[ci])))
            morph_lines.append(
                f"| {exc} | morphology | {len(mz)} | {md_:.3g} | {mv.threshold:.3g} | "
                f"{'**yes**' if len(mz) >= ref.min_frames and md_ > mv.threshold else 'no'} | "
                + ", ".join(f"{name} {v:+.2f}" for name, v in zip(FEATURES, (mz.mean(0) - mv.means[ci]) / sd)) + " |")
        other = rl != ci
        ax.scatter(rp[other, 0], rp[other, 1], s=6, c="0.8", label="other classes (reference)")
        ax.scatter(rp[~other, 0], rp[~other, 1], s=10, c="tab:blue", label=f"{exc} (reference)")
        ax.scatter(z[:, 0], z[:, 1], s=14, c="tab:red", label=f"lot {lot} ({n} frames)")
        ax.scatter(*ref.means[ci][:2], marker="x", s=80, c="k", label="reference mean")
        ax.scatter(*z.mean(0)[:2], marker="*", s=160, c="darkred", label="lot mean")
        ax.set_xlabel("whitened PC 1")
        ax.set_ylabel("whitened PC 2")
        ax.set_title(f"{exc}: drift {drift:.3g} (threshold {ref.threshold:.3g})", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    png = out / f"drift-{slug}.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    if morph_lines:
        lines += ["", "Particle-morphology view (lot mean − reference mean per feature, in reference standard deviations):",
                  "", "| excipient | view | frames | drift | threshold | alarm | shift per feature |",
                  "|---|---|---|---|---|---|---|", *morph_lines]
    lines += ["", "Drift = (z̄ − m)ᵀ S⁻¹ (z̄ − m) / (1/n + 1/n_ref) in the whitened PCA space of frame-mean embeddings "
              "(docs/identity-openset.md); alarm needs at least the calibrated minimum of frames.", "",
              "Mean shift per component (lot mean − reference mean, in reference standard deviations):", ""]
    for exc, dz in shifts:
        lines.append(f"- {exc}: " + ", ".join(f"PC{i + 1} {v:+.2f}" for i, v in enumerate(dz)))
    if summaries:
        lines += ["", "`lot_summary` audit records:", ""]
        for s in summaries:
            lines.append(f"- {s.get('excipient')}: {s.get('frames')} frames, drift {s.get('drift')}, threshold "
                         f"{s.get('threshold')}, alarm {s.get('alarm')}, verdicts {s.get('verdicts')}, "
                         f"closed by {s.get('closed_by')}")
    lines.append(f"\n![lot vs reference]({png.name})\n")
    md_path = out / f"drift-{slug}.md"
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return {"report": md_path, "plot": png}
