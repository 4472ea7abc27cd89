"""Lot drift in the supervisor: is this lot's powder still distributed like the reference excipient?

An ``Outcomes`` listener. Two views of each identity frame, both per-frame vectors in the decision's
``detail``, written by the identity worker:

* ``embedding`` — the frame-mean pooled CNN embedding, projected on the whitened top principal
  components of the calibration embeddings (``inspector.identity.openset``): what the powder *is*;
* ``morphology`` — measured particle size, width, elongation, coverage and count
  (``inspector.identity.morphology``): how the lot's particles are *shaped*, which the embedding
  hardly sees (a 5–10 % size change). Present when the calibration measured it.

Per lot (frame context ``lot``) and expected excipient this module keeps each view's running sum
and, after every frame, the Hotelling-style mean shift

    D = (z̄ - m_c)ᵀ S⁻¹ (z̄ - m_c) / (1/n + 1/n_c)      (two-sample Hotelling form)

against the expected excipient's reference mean ``m_c`` (from ``n_c`` reference frames; ``S`` the
shared within-class covariance for the embedding, the class's own covariance for morphology),
compared with the view's threshold calibrated by permutation of reference pseudo-lots (model's
``openset.npz`` / manifest block ``extra.openset.drift``). A lot alarms when any view exceeds its
threshold with at least ``min_frames`` frames. Metrics ``inspector_lot_drift{lot,excipient,view}``,
``inspector_lot_drift_threshold{…,view}`` and ``inspector_lot_frames{lot,excipient}`` exist for the
current and the previous lot only (bounded label sets). When the lot changes, a ``lot_summary``
audit record closes each (lot, excipient) with every view's statistic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InspectorError
from inspector.identity.openset import ARTIFACT
from inspector.modelrepo import resolve

log = logging.getLogger("inspector.drift")

INSPECTION = "excipient_identity"


@dataclass
class View:
    """One view of a lot (``embedding`` or ``morphology``): per-class reference means, the precision
    (shared ``(k, k)`` or per class ``(C, k, k)``), reference frame counts and the calibrated threshold."""

    name: str
    means: np.ndarray  # (C, k)
    precision: np.ndarray  # (k, k) or (C, k, k)
    counts: np.ndarray  # (C,)
    threshold: float

    def statistic(self, total: np.ndarray, n: int, ci: int) -> float:
        prec = self.precision[ci] if self.precision.ndim == 3 else self.precision
        return drift_value(total, n, self.means[ci], prec, self.counts[ci])


@dataclass
class Reference:
    """The drift reference of one model version: the embedding view, and the morphology view when
    the calibration measured particle morphology."""

    classes: list[str]
    means: np.ndarray  # (C, k)
    precision: np.ndarray  # (k, k)
    counts: np.ndarray  # (C,) reference frames per class
    threshold: float
    min_frames: int
    morphology: View | None = None
    views: dict[str, View] = field(init=False)  # name -> view; each view's per-frame vector is detail[name]

    def __post_init__(self) -> None:
        self.views = {"embedding": View("embedding", self.means, self.precision, self.counts, self.threshold)}
        if self.morphology is not None:
            self.views["morphology"] = self.morphology

    @classmethod
    def load(cls, models_path: Path, name: str, version: str) -> Reference | None:
        """None when the model has no calibrated open-set artifact (no drift check for it)."""
        md = resolve(models_path, name, version)  # sha256-verified
        block = (md.manifest.extra.get("openset") or {}).get("drift")
        if not block or ARTIFACT not in md.manifest.artifacts:
            return None
        morph = None
        with np.load(md.artifact(ARTIFACT), allow_pickle=False) as z:
            means = np.asarray(z["drift_means"], np.float64)
            prec = np.asarray(z["drift_precision"], np.float64)
            counts = np.asarray(z["drift_counts"], np.float64)
            mblock = block.get("morphology")
            if mblock and "morph_means" in z.files:
                morph = View("morphology", np.asarray(z["morph_means"], np.float64),
                             np.asarray(z["morph_precision"], np.float64), np.asarray(z["morph_counts"], np.float64),
                             float(mblock["threshold"]))
        return cls(list(md.manifest.classes), means, prec, counts, float(block["threshold"]),
                   int(block.get("min_frames", 8)), morph)


@dataclass
class Running:
    """Running sum of one view's per-frame vectors in a lot, and its current statistic."""

    total: np.ndarray | None = None
    n: int = 0
    drift: float | None = None

    def add(self, v: np.ndarray) -> None:
        self.total = v if self.total is None else self.total + v
        self.n += 1


@dataclass
class LotStats:
    lot: str
    excipient: str
    model: tuple[str, str] | None = None
    frames: int = 0
    views: dict[str, Running] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    first_frame: int | None = None
    last_frame: int | None = None

    @property
    def embedded(self) -> int:
        return self.views["embedding"].n if "embedding" in self.views else 0

    @property
    def drift(self) -> float | None:
        """The embedding view's statistic (the first view; kept for the records written before morphology)."""
        return self.views["embedding"].drift if "embedding" in self.views else None


def drift_value(total: np.ndarray, n: int, mean: np.ndarray, precision: np.ndarray, n_ref: float = np.inf) -> float:
    """Drift statistic from the running sum ``total`` of ``n`` frame embeddings."""
    dz = total / n - mean
    return float(dz @ precision @ dz / (1.0 / n + 1.0 / n_ref))


class LotDrift:
    """Outcomes listener: ``listener(headers, attachments)`` for every published frame."""

    def __init__(self, models_path: str | Path, recorder: Any, metrics: Any, *, inspection: str = INSPECTION):
        self.models_path = Path(models_path)
        self.recorder, self.metrics, self.inspection = recorder, metrics, inspection
        self._refs: dict[tuple[str, str], Reference | None] = {}
        self.lot: str | None = None
        self.stats: dict[str, LotStats] = {}  # excipient -> stats of the current lot
        self._shown: list[tuple[str, str]] = []  # label sets exported: current and previous lot

    def __call__(self, headers: list[dict[str, Any]], attachments: list[Any]) -> None:
        for h in headers:
            if h.get("inspection") == self.inspection:
                self.observe(h)

    # ------------------------------------------------------------------ per frame
    def observe(self, h: dict[str, Any]) -> LotStats | None:
        lot = (h.get("context") or {}).get("lot")
        if not lot:
            return None  # frames outside a lot are not tracked
        lot = str(lot)
        if lot != self.lot:
            self.close("lot_change")
            self.lot = lot
        detail = h.get("detail") or {}
        exc = detail.get("expected") or (h.get("context") or {}).get("expected_excipient")
        if not exc:
            return None
        st = self.stats.setdefault(str(exc), LotStats(lot, str(exc)))
        st.frames += 1
        st.verdicts[h.get("verdict", "?")] = st.verdicts.get(h.get("verdict", "?"), 0) + 1
        if h.get("reason"):
            st.reasons[h["reason"]] = st.reasons.get(h["reason"], 0) + 1
        fid = int(h.get("frame_id", -1))
        st.first_frame = fid if st.first_frame is None else st.first_frame
        st.last_frame = fid
        ref, ci = self._reference(h.get("model") or {}, st)
        if ref is not None and ci is not None:
            for name, view in ref.views.items():
                raw = detail.get(name)
                v = self._vector(raw, view.means.shape[1], name) if raw is not None else None
                if v is not None:
                    run = st.views.setdefault(name, Running())
                    run.add(v)
                    run.drift = view.statistic(run.total, run.n, ci)
        self._export(st, ref)
        return st

    def _vector(self, raw: Any, dims: int, view: str) -> np.ndarray | None:
        try:
            z = np.asarray(raw, np.float64)
        except (TypeError, ValueError):
            z = None
        if z is None or z.shape != (dims,) or not np.all(np.isfinite(z)):
            self.metrics.bad_input.labels(kind=f"drift_{view}").inc()
            log.warning("lot drift: %s of %s values does not fit the reference (%d dims); not counted for this view",
                        view, getattr(z, "shape", "?"), dims)
            return None
        return z

    def _reference(self, model: dict[str, Any], st: LotStats) -> tuple[Reference | None, int | None]:
        key = (str(model.get("name", "")), str(model.get("version", "")))
        if not key[0]:
            return None, None
        if key not in self._refs:
            try:
                self._refs[key] = Reference.load(self.models_path, *key)
            except (InspectorError, OSError, KeyError, ValueError) as e:
                log.error("lot drift: no reference for model %s/%s: %s", *key, e)
                self._refs[key] = None
        ref = self._refs[key]
        if st.model != key:  # a new model version is another reference space: restart the running means
            st.model, st.views = key, {}
        if ref is None:
            return None, None
        from inspector.inspections.excipient_identity import match_class

        return ref, match_class(st.excipient, ref.classes)

    # ------------------------------------------------------------------ metrics and audit
    def _export(self, st: LotStats, ref: Reference | None) -> None:
        labels = (st.lot, st.excipient)
        m = self.metrics
        m.lot_frames.labels(*labels).set(st.frames)
        views = ref.views if ref is not None else {"embedding": None}
        for name, view in views.items():
            run = st.views.get(name)
            m.lot_drift.labels(*labels, name).set(run.drift if run and run.drift is not None else float("nan"))
            m.lot_drift_threshold.labels(*labels, name).set(view.threshold if view is not None else float("nan"))
        if labels not in self._shown:
            self._shown.append(labels)
            lots = list(dict.fromkeys(lot for lot, _ in self._shown))
            if len(lots) > 2:  # keep only the current and the previous lot
                old = set(lots[:-2])
                for lab in [x for x in self._shown if x[0] in old]:
                    m.remove_lot(*lab)
                    self._shown.remove(lab)

    def summary(self, st: LotStats, closed_by: str) -> dict[str, Any]:
        ref = self._refs.get(st.model) if st.model else None
        min_frames = ref.min_frames if ref else None
        views: dict[str, Any] = {}
        for name, view in (ref.views.items() if ref is not None else ()):
            run = st.views.get(name) or Running()
            views[name] = {"frames": run.n, "drift": run.drift, "threshold": view.threshold,
                           "alarm": bool(run.drift is not None and run.n >= ref.min_frames
                                         and run.drift > view.threshold)}
        emb = views.get("embedding") or {}
        return {"lot": st.lot, "excipient": st.excipient,
                "model": {"name": st.model[0], "version": st.model[1]} if st.model else None,
                "frames": st.frames, "frames_embedded": st.embedded, "drift": st.drift,
                "threshold": emb.get("threshold"), "min_frames": min_frames,
                "alarm": any(v["alarm"] for v in views.values()),
                "alarm_views": [n for n, v in views.items() if v["alarm"]], "views": views,
                "verdicts": dict(st.verdicts), "reasons": dict(st.reasons),
                "first_frame_id": st.first_frame, "last_frame_id": st.last_frame, "closed_by": closed_by}

    def close(self, closed_by: str) -> list[dict[str, Any]]:
        """Write a ``lot_summary`` record for each excipient of the current lot; start afresh."""
        out = []
        for st in self.stats.values():
            rec = self.summary(st, closed_by)
            self.recorder.event("lot_summary", rec)
            out.append(rec)
            views = ", ".join(f"{n} {v['drift']:.3g}/{v['threshold']:.3g}" if v["drift"] is not None else f"{n} n/a"
                              for n, v in rec["views"].items()) or "no drift reference"
            log.info("lot %s (%s): %d frames, drift/threshold: %s%s", st.lot, st.excipient, st.frames, views,
                     f" — DRIFT ALARM ({', '.join(rec['alarm_views'])})" if rec["alarm"] else "")
        self.stats = {}
        return out
