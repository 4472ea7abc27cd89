"""Lot-drift false alarms and detection on synthetic lots, per view and lot size (the daemon's own statistics).

    # same-distribution frames (lot 0, fresh seeds), cut into consecutive lots:
    inspector synth sem LOTS/same --per-class 320 --seed 2000 --classes pharmatose_200m,ceolus_ph-101,mannit_q
    # lots drawn like production (--lot N: size and aspect factors drawn around 1, σ 5 %):
    inspector synth sem LOTS/lot01 --per-class 32 --seed 3001 --lot 1 --classes ...
    # controlled shifts (power at a known shift):
    inspector synth sem LOTS/size110-1 --per-class 32 --seed 7001 --size-factor 1.10 --classes ...
    python bench/bench_drift_lots.py MODEL_DIR LOTS/* --lot-sizes 8,16,32 [--embedding] --cache C --out OUT

MODEL_DIR must be calibrated (``inspector calibrate openset``, which measures the morphology view
too) on other lot-0 frames. Each LOTS folder is one ``synth sem`` output: where its params say
size and aspect factors 1, its frames per class are a same-distribution pool, cut into
consecutive lots of each size; otherwise each class folder is one shifted lot, of which the first
``n`` frames make the lot of size ``n``. For each lot the statistic of each view is computed with
the supervisor's functions (``inspector.daemon.drift``) and compared with the calibrated threshold;
a lot alarms when any view does (as in the daemon). ``--embedding`` also runs every frame through
the CNN (slow on CPU: ~1 frame/s; cached); without it only the morphology view is measured.
Writes OUT/drift-lots.md, .csv and drift-lots.png (statistic / threshold against the shift).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

STRATA = ((0.0, 0.05), (0.05, 0.075), (0.075, 0.125), (0.125, 1.0))


def lot_factors(ds: Path, cls: str) -> tuple[float, float]:
    with open(ds / "params.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["slug"] == cls:
                return float(r["lot_size_factor"]), float(r["lot_aspect_factor"])
    raise SystemExit(f"{ds}/params.csv has no row of class {cls}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("lot_dirs", nargs="+")
    ap.add_argument("--lot-sizes", default="8,16,32")
    ap.add_argument("--embedding", action="store_true", help="also the CNN embedding view (slow)")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--out", default=".")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    from tqdm import tqdm

    from inspector.daemon.drift import Reference
    from inspector.identity.openset import ARTIFACT, embed
    from inspector.inspections.excipient_identity import match_class
    from inspector.modelrepo import load_model_dir
    from inspector.offline.identity.openset_fit import compute_embeddings, list_class_frames
    from inspector.offline.identity.openset_morph import compute_morphology

    sizes = [int(s) for s in args.lot_sizes.split(",")]
    md = load_model_dir(args.model_dir)
    ref = Reference.load(md.path.parent.parent, md.manifest.name, md.manifest.version)
    if ref is None or ref.morphology is None:
        sys.exit(f"{args.model_dir} has no calibrated morphology view: run inspector calibrate openset first")
    views = ref.views if args.embedding else {"morphology": ref.morphology}
    with np.load(md.artifact(ARTIFACT), allow_pickle=False) as z:
        pca_mean, pca_proj = z["pca_mean"], z["pca_proj"]
    rows = []
    for ds in tqdm([Path(d) for d in args.lot_dirs], desc="lot folders", unit="folder"):
        labels, frames = list_class_frames(ds)
        vecs = {"morphology": compute_morphology([p for p, _ in frames], cache_dir=args.cache, progress=False)}
        if args.embedding:
            emb = compute_embeddings(md, ds, cache_dir=args.cache, progress=False)
            vecs["embedding"] = np.stack([embed(emb.pooled[emb.tile_frame == i], pca_mean, pca_proj)
                                          for i in range(len(emb.frame_labels))])
        lab = np.array([li for _, li in frames])
        for li, cls in enumerate(labels):
            ci = match_class(cls, ref.classes)
            sf, af = lot_factors(ds, cls)
            same = sf == 1.0 and af == 1.0
            idx = np.flatnonzero(lab == li)
            shift = float(max(abs(np.log(sf)), abs(np.log(af))))
            for n in sizes:
                chunks = [idx[i:i + n] for i in range(0, len(idx) - n + 1, n)] if same else [idx[:n]] * (len(idx) >= n)
                for j, ch in enumerate(chunks):
                    row = {"folder": ds.name, "class": cls, "lot": f"{ds.name}.{j}" if same else ds.name,
                           "same_distribution": same, "size_factor": sf, "aspect_factor": af,
                           "shift": round(shift, 4), "frames": n}
                    for name, view in views.items():
                        v = vecs[name][ch]
                        d = view.statistic(v.sum(0), len(v), ci)
                        row[f"{name}_drift"] = round(d, 2)
                        row[f"{name}_threshold"] = round(view.threshold, 2)
                        row[f"{name}_alarm"] = bool(d > view.threshold and n >= ref.min_frames)
                    row["alarm"] = any(row[f"{name}_alarm"] for name in views)
                    rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "drift-lots.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    names = list(views) + ["alarm"]
    head = " | ".join(("any view" if v == "alarm" else f"{v} view") for v in names)

    def rate(sel: list[dict], key: str) -> str:
        k = key if key == "alarm" else f"{key}_alarm"
        return f"{sum(r[k] for r in sel)}/{len(sel)}" if sel else "–"

    lines = [f"# Lot drift on synthetic lots — model {md.manifest.name}/{md.manifest.version}", "",
             "Thresholds (quantile of same-class permutation pseudo-lots at calibration): "
             + ", ".join(f"{n} {v.threshold:.3g}" for n, v in views.items()) + "; a lot alarms when any view exceeds "
             f"its threshold (at least {ref.min_frames} frames). Shift = max(|log size factor|, |log aspect factor|).",
             "", f"| lots | frames per lot | {head} |", "|---|---|" + "---|" * len(names)]
    for n in sizes:
        same = [r for r in rows if r["same_distribution"] and r["frames"] == n]
        lines.append(f"| same distribution (false alarms) | {n} | " + " | ".join(rate(same, k) for k in names) + " |")
        kinds = sorted({r["folder"].rsplit("-", 1)[0] for r in rows if not r["same_distribution"] and "-" in r["folder"]})
        for folder_kind in kinds:  # controlled shifts: folders named <kind>-<i>
            sel = [r for r in rows if r["frames"] == n and r["folder"].rsplit("-", 1)[0] == folder_kind
                   and "-" in r["folder"]]
            fac = f"size × {sel[0]['size_factor']:.2f}, aspect × {sel[0]['aspect_factor']:.2f}" if sel else ""
            lines.append(f"| controlled: {fac} ({len(sel)} lots) | {n} | " + " | ".join(rate(sel, k) for k in names) + " |")
        for lo, hi in STRATA:
            sel = [r for r in rows if not r["same_distribution"] and "-" not in r["folder"]
                   and r["frames"] == n and lo <= r["shift"] < hi]
            if sel:
                lines.append(f"| drawn lots, shift {lo:.1%}–{hi:.1%} | {n} | "
                             + " | ".join(rate(sel, k) for k in names) + " |")
    lines += ["", "Controlled shifts per excipient (alarms / lots, any view):", "",
              "| excipient | shift | " + " | ".join(f"{n} frames" for n in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for cls in sorted({r["class"] for r in rows}):
        for kind in sorted({r["folder"].rsplit("-", 1)[0] for r in rows if "-" in r["folder"]}):
            sel = [r for r in rows if r["class"] == cls and "-" in r["folder"] and r["folder"].rsplit("-", 1)[0] == kind]
            if sel:
                fac = f"size × {sel[0]['size_factor']:.2f}, aspect × {sel[0]['aspect_factor']:.2f}"
                lines.append(f"| {cls} | {fac} | " + " | ".join(rate([r for r in sel if r["frames"] == n], "alarm")
                                                                 for n in sizes) + " |")
    lines += ["", f"Per-lot rows: [drift-lots.csv](drift-lots.csv). ![statistic / threshold vs shift](drift-lots.png)", ""]
    (out / "drift-lots.md").write_text("\n".join(lines), encoding="utf-8")
    plot(rows, views, sizes, out / "drift-lots.png")
    print("\n".join(lines[:-2]))
    return 0


def plot(rows: list[dict], views: dict, sizes: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(views), figsize=(6 * len(views), 4.5), squeeze=False)
    for ax, name in zip(axes[0], views):
        for n, colour in zip(sizes, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
            sel = [r for r in rows if r["frames"] == n]
            x = [100 * r["shift"] for r in sel]
            y = [r[f"{name}_drift"] / r[f"{name}_threshold"] for r in sel]
            ax.scatter(x, y, s=12, c=colour, alpha=0.7, label=f"{n} frames per lot")
        ax.axhline(1.0, c="k", lw=1, ls="--", label="threshold")
        ax.set_yscale("log")
        ax.set_xlabel("lot shift: max |log factor| (%) — 0 = same distribution")
        ax.set_ylabel("drift statistic / threshold")
        ax.set_title(f"{name} view")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
