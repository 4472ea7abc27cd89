"""Lot-drift false-alarm and detection rates on synthetic lots (embeddings computed once, cached).

    inspector synth sem LOTS/<class>/lot0 --per-class 160 --seed 2000 --classes <class>     # same-distribution frames
    inspector synth sem LOTS/<class>/lot<N> --per-class 8 --seed 3000 --lot N --classes <class>   # shifted lots
    python bench/bench_drift_lots.py MODEL_DIR LOTS --lot-size 8 --out OUT_DIR

MODEL_DIR must be calibrated (``inspector calibrate openset``) on lot-0 frames. ``lot0`` is cut into
consecutive same-distribution lots of ``--lot-size`` frames; every ``lot<N>`` folder (N > 0) is one
shifted lot (size/aspect factors from its params.csv). Each lot's drift statistic is computed with the
daemon's own functions (``inspector.daemon.drift``) and compared with the calibrated threshold.
Writes OUT_DIR/drift-lots.md and .csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("lots_root")
    ap.add_argument("--lot-size", type=int, default=8)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--out", default=".")
    args = ap.parse_args(argv)

    from inspector.daemon.drift import Reference, drift_value
    from inspector.identity.openset import ARTIFACT, embed
    from inspector.inspections.excipient_identity import match_class
    from inspector.modelrepo import load_model_dir
    from inspector.offline.identity.openset_fit import compute_embeddings

    md = load_model_dir(args.model_dir)
    ref = Reference.load(md.path.parent.parent, md.manifest.name, md.manifest.version)
    if ref is None:
        sys.exit(f"{args.model_dir} is not calibrated: run inspector calibrate openset first")
    with np.load(md.artifact(ARTIFACT), allow_pickle=False) as z:
        pca_mean, pca_proj = z["pca_mean"], z["pca_proj"]
    rows = []
    for cdir in sorted(p for p in Path(args.lots_root).iterdir() if p.is_dir()):
        ci = match_class(cdir.name, ref.classes)
        for ldir in sorted((p for p in cdir.iterdir() if p.is_dir()), key=lambda p: int(p.name[3:])):
            emb = compute_embeddings(md, ldir / cdir.name, cache_dir=args.cache, progress=False)
            z = np.stack([embed(emb.pooled[emb.tile_frame == i], pca_mean, pca_proj)
                          for i in range(len(emb.frame_labels))])
            with open(ldir / "params.csv", newline="") as f:
                p0 = next(csv.DictReader(f))
            lot = int(ldir.name[3:])
            chunks = ([z[i:i + args.lot_size] for i in range(0, len(z) - args.lot_size + 1, args.lot_size)]
                      if lot == 0 else [z])
            for j, zz in enumerate(chunks):
                d = drift_value(zz.sum(0), len(zz), ref.means[ci], ref.precision, ref.counts[ci])
                shift = float(np.hypot(np.log(float(p0["lot_size_factor"])), np.log(float(p0["lot_aspect_factor"]))))
                rows.append({"class": cdir.name, "lot": f"{lot}" + (f".{j}" if lot == 0 else ""),
                             "same_distribution": lot == 0, "size_factor": float(p0["lot_size_factor"]),
                             "aspect_factor": float(p0["lot_aspect_factor"]), "shift": round(shift, 4),
                             "frames": len(zz), "drift": round(d, 2), "threshold": round(ref.threshold, 2),
                             "alarm": bool(d > ref.threshold and len(zz) >= ref.min_frames)})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "drift-lots.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    same = [r for r in rows if r["same_distribution"]]
    shifted = [r for r in rows if not r["same_distribution"]]
    lines = [f"# Lot drift on synthetic lots — model {md.manifest.name}/{md.manifest.version}", "",
             f"Threshold {ref.threshold:.3g} (99 % of same-class permutation pseudo-lots at calibration), lots of "
             f"{args.lot_size} frames.", "",
             f"- same-distribution lots (lot 0, fresh seeds): **{sum(r['alarm'] for r in same)}/{len(same)} false alarms**",
             f"- shifted lots: {sum(r['alarm'] for r in shifted)}/{len(shifted)} alarms"]
    for lo, hi in ((0.0, 0.05), (0.05, 0.10), (0.10, 1.0)):
        sel = [r for r in shifted if lo <= r["shift"] < hi]
        if sel:
            lines.append(f"  - shift |log size, log aspect| in [{lo:.2f}, {hi:.2f}): {sum(r['alarm'] for r in sel)}/{len(sel)}")
    lines += ["", "| class | lot | size × | aspect × | frames | drift | alarm |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['class']} | {r['lot']} | {r['size_factor']:.3f} | {r['aspect_factor']:.3f} | {r['frames']} | "
              f"{r['drift']:.1f} | {'**yes**' if r['alarm'] else 'no'} |" for r in rows]
    (out / "drift-lots.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[:10]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
