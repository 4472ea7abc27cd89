"""Evaluation of the unknown-material check (offline): ``inspector evaluate openset``.

Scenarios (each repeated over random splits; mean ± sd):

* **shipped** — the model as served (its own softmax and head) with its calibration fitted on
  part of ``--known`` (frames of its classes); the rest of ``--known`` are the known test frames and
  every ``--foreign`` set (e.g. real SEM of other powders) the unknowns.
* **LOCO** — on each ``--loco`` class-folder set, each class in turn is unknown. The model's
  embeddings are frozen; a linear probe (standardised logistic regression) on the known classes'
  fit tiles gives the softmax/logits for MSP and energy. For a set of the model's own training
  classes the backbone has seen the held-out class (optimistic: the report says so).
* **foreign vs LOCO set** — each ``--foreign`` set against a probe on all classes of a ``--loco`` set.

Per method and aggregation: AUROC (unknown = positive), FPR at 95 % TPR, and at the operating
threshold (chosen on held-out known frames only) the fraction of known test frames rejected and of
unknown frames accepted — accepted *as the expected excipient* in the worst case where the line
expects the class the frame looks most like. ``today`` is the current rule (``min_confidence``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from inspector.identity.openset import AGGREGATIONS, METHODS
from inspector.offline.identity.openset_fit import (
    Embeddings, calibrate, compute_embeddings, frame_scores, holdout_split,
)

log = logging.getLogger("inspector.openset")
MIN_CONFIDENCE = 0.6


def prefix_groups(emb: Embeddings) -> np.ndarray:
    """Group id per frame: the file-name prefix before the first digit (one product/session)."""
    names = [re.match(r"[^\d]*", Path(f).stem).group(0).rstrip("_- ") or Path(f).stem for f in emb.frames]
    _, ids = np.unique([f"{emb.frame_labels[i]}:{n}" for i, n in enumerate(names)], return_inverse=True)
    return ids


def keep_labels(emb: Embeddings, labels: list[int]) -> Embeddings:
    """Frames of the given label indices only, relabelled 0..len(labels)-1."""
    idx = np.flatnonzero(np.isin(emb.frame_labels, labels))
    sub = emb.subset(idx)
    remap = {old: new for new, old in enumerate(labels)}
    return replace(sub, frame_labels=np.array([remap[int(v)] for v in sub.frame_labels], np.int32),
                   labels=[emb.labels[i] for i in labels])


def frame_probs(emb: Embeddings) -> np.ndarray:
    n = len(emb.frame_labels)
    out = np.zeros((n, emb.probs.shape[1]))
    np.add.at(out, emb.tile_frame, emb.probs.astype(np.float64))
    return out / np.bincount(emb.tile_frame, minlength=n)[:, None]


def fpr_at_tpr(known: np.ndarray, unknown: np.ndarray, tpr: float = 0.95) -> float:
    """Fraction of known frames flagged at the threshold that flags ``tpr`` of the unknown frames."""
    t = np.quantile(unknown, 1.0 - tpr)
    return float(np.mean(known >= t))


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
    return float(roc_auc_score(y, np.r_[known, unknown]))


def _class_idx(emb: Embeddings, classes: list[str]) -> np.ndarray:
    from inspector.inspections.excipient_identity import match_class

    idx = np.array([match_class(lab, classes) for lab in emb.labels])
    return idx[emb.frame_labels]


def fit_probe(fit: Embeddings, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, random_state=seed))
    return clf.fit(fit.pooled, fit.frame_labels[fit.tile_frame])


def with_probe(emb: Embeddings, clf: Any) -> Embeddings:
    """Replace the model's softmax/logits by the probe's (known classes of the fold only)."""
    logits = clf.decision_function(emb.pooled)
    if logits.ndim == 1:  # binary: logits (0, d) give the same softmax as predict_proba
        logits = np.stack([np.zeros_like(logits), logits], axis=1)
    return replace(emb, probs=clf.predict_proba(emb.pooled).astype(np.float32), logits=logits.astype(np.float32))


def evaluate_once(known: Embeddings, unknowns: dict[str, Embeddings], kw: dict[str, Any], seed: int, *,
                  probe: bool, groups: np.ndarray | None = None, classes: list[str] | None = None) -> dict[str, Any]:
    """One split: calibrate on part of ``known``, score the rest and every unknown set."""
    test_frac = 0.3
    cal_idx, test_idx = holdout_split(known.frame_labels, test_frac, 1000 + seed, groups)
    cal, test = known.subset(cal_idx), known.subset(test_idx)
    cal_groups = groups[cal_idx] if groups is not None else None
    kw = {**kw, "seed": seed}
    if probe:
        fit_idx, _ = holdout_split(cal.frame_labels, kw.get("holdout", 0.3), seed, cal_groups)
        clf = fit_probe(cal.subset(fit_idx), seed)
        cal, test = with_probe(cal, clf), with_probe(test, clf)
        unknowns = {n: with_probe(u, clf) for n, u in unknowns.items()}
    classes = list(cal.labels) if probe or classes is None else classes
    arrays, block = calibrate(cal, classes, groups=cal_groups, **kw)
    k = block["k"]
    s_known = frame_scores(test, arrays, k)
    p_known = frame_probs(test)
    out: dict[str, Any] = {"known_frames": len(test.frame_labels), "block": block, "sets": {},
                           "frame_accuracy": float(np.mean(p_known.argmax(1) == _class_idx(test, classes)))}
    for name, u in unknowns.items():
        s_unk = frame_scores(u, arrays, k)
        p_unk = frame_probs(u)
        rows: dict[str, dict[str, float]] = {}
        for m in METHODS:
            for a in AGGREGATIONS:
                t = block["thresholds"][m][a]
                sk, su = s_known[m][a], s_unk[m][a]
                rows[f"{m}/{a}"] = {"auroc": auroc(sk, su), "fpr95": fpr_at_tpr(sk, su),
                                    "known_rejected": float(np.mean(sk > t)),
                                    "unknown_accepted": float(np.mean(su <= t))}
        ck, cu = p_known.max(1), p_unk.max(1)
        rows["today/min_confidence"] = {"auroc": auroc(-ck, -cu), "fpr95": fpr_at_tpr(-ck, -cu),
                                        "known_rejected": float(np.mean(ck < MIN_CONFIDENCE)),
                                        "unknown_accepted": float(np.mean(cu >= MIN_CONFIDENCE))}
        m, a = block["method"], block["aggregation"]
        out["sets"][name] = {"frames": len(u.frame_labels), "rows": rows,
                             "hist": {mm: {"known": s_known[mm][a].tolist(), "unknown": s_unk[mm][a].tolist(),
                                           "threshold": block["thresholds"][mm][a]} for mm in METHODS}}
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """mean ± sd over repeats, per unknown set and row."""
    out: dict[str, Any] = {}
    for name in runs[0]["sets"]:
        rows = {}
        for key in runs[0]["sets"][name]["rows"]:
            vals = {f: np.array([r["sets"][name]["rows"][key][f] for r in runs]) for f in runs[0]["sets"][name]["rows"][key]}
            rows[key] = {f: (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0) for f, v in vals.items()}
        out[name] = {"frames": runs[0]["sets"][name]["frames"], "rows": rows}
    return out


def run_evaluation(args: Any, kw: dict[str, Any], *, command: str = "") -> dict[str, Path]:
    from tqdm import tqdm

    from inspector.modelrepo import load_model_dir
    from inspector.offline.identity.openset_report import write_report

    md = load_model_dir(args.model)
    out_dir = Path(args.report)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else out_dir / "cache"
    prog = not args.no_progress
    kw = {k: v for k, v in kw.items() if k != "seed"}
    foreign = {Path(d).name: compute_embeddings(md, d, cache_dir=cache, progress=prog) for d in args.foreign}
    scenarios: list[dict[str, Any]] = []
    reps = range(max(1, args.repeats))
    if args.known:
        known = compute_embeddings(md, args.known, cache_dir=cache, progress=prog)
        if foreign:
            runs = [evaluate_once(known, foreign, kw, r, probe=False, classes=list(md.manifest.classes)) for r in tqdm(reps, desc="shipped", disable=not prog)]
            scenarios.append({"name": f"shipped model, known = {Path(args.known).name}", "kind": "shipped",
                              "known_frames": runs[0]["known_frames"], "summary": summarise(runs), "example": runs[0],
                              "frame_accuracy": float(np.mean([r["frame_accuracy"] for r in runs]))})
    for d in args.loco:
        emb = compute_embeddings(md, d, cache_dir=cache, progress=prog)
        groups_all = prefix_groups(emb) if args.group_prefix else None
        for u in tqdm(range(len(emb.labels)), desc=f"LOCO {Path(d).name}", disable=not prog):
            known_labels = [i for i in range(len(emb.labels)) if i != u]
            kn = keep_labels(emb, known_labels)
            g = groups_all[np.isin(emb.frame_labels, known_labels)] if groups_all is not None else None
            unk = {emb.labels[u]: keep_labels(emb, [u])}
            runs = [evaluate_once(kn, unk, kw, r, probe=True, groups=g) for r in reps]
            scenarios.append({"name": f"LOCO {Path(d).name}: unknown = {emb.labels[u]}", "kind": "loco",
                              "known_frames": runs[0]["known_frames"], "summary": summarise(runs), "example": runs[0],
                              "frame_accuracy": float(np.mean([r["frame_accuracy"] for r in runs]))})
        others = {n: f for n, f in foreign.items() if Path(n).name != Path(d).name}  # not the set against itself
        if others:
            runs = [evaluate_once(emb, others, kw, r, probe=True, groups=groups_all) for r in reps]
            scenarios.append({"name": f"all classes of {Path(d).name} known, foreign sets unknown", "kind": "foreign",
                              "known_frames": runs[0]["known_frames"], "summary": summarise(runs), "example": runs[0],
                              "frame_accuracy": float(np.mean([r["frame_accuracy"] for r in runs]))})
    if not scenarios:
        from inspector.errors import InspectorError

        raise InspectorError("nothing to evaluate: give --known with at least one --foreign, and/or --loco DIR")
    meta = {"model": f"{md.manifest.name}/{md.manifest.version}", "model_sha256": md.manifest.sha256,
            "backbone": (md.manifest.training.get("config") or {}).get("backbone", md.manifest.extra.get("backbone")),
            "command": command, "calibration": kw, "repeats": len(reps), "group_prefix": bool(args.group_prefix)}
    (out_dir / "metrics.json").write_text(json.dumps(
        {"meta": meta, "scenarios": [{k: v for k, v in s.items() if k != "example"} for s in scenarios]},
        indent=1) + "\n", encoding="utf-8")
    return write_report(scenarios, meta, out_dir)
