"""Inline excipient identity check (seed 000): is the powder under the SEM the excipient the lot expects?

Each frame is cut into its fixed grid of 224×224 tiles (20 for a 1280×960 frame, data bar removed),
the tiles go through the exported CNN in one ONNX Runtime batch, tile probabilities are aggregated
into a frame identity with a confidence, and the frame is rejected when the identity differs from
the expected excipient (``wrong_material``) or the confidence is below ``min_confidence``. A model
calibrated by ``inspector calibrate openset`` also scores how far the frame is from every known
class (``ood`` vs ``ood_threshold``, ``inspector.identity.openset``): beyond it the frame is rejected
as ``unknown_material``; ``detail`` names the nearest class and carries the compact drift embedding (and,
when the calibration measured them, the frame's particle-morphology vector for the second drift view).

The expected excipient comes from the frame's context (``expected_excipient``, stamped at
acquisition from the lot / control channel) and falls back to ``params.expected``. Names match a
model class exactly or by slug (``"CEOLUS KG-802"`` == ``"ceolus-kg-802"``).

Grad-CAM snapshots (numpy closed form, no TensorFlow) of the predicted class go out as ``gradcam``
attachments — PNG bytes of a whole-frame overlay plus a JSON header — for every reject and for one
in ``gradcam_every_n_passes`` passes, and are saved under the Grad-CAM directory
(``audit.gradcam_dir`` / ``publish.gradcam_dir``, default ``<state_dir>/gradcam``) in ``<date>/``.
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from inspector.errors import ConfigError, ModelIntegrityError, ModelNotFoundError
from inspector.frame import Frame
from inspector.identity.gradcam import HEAD_ARTIFACT, DenseHead, encode_png, frame_overlay, gradcam, normalise
from inspector.identity.openset import ARTIFACT as OPENSET_ARTIFACT, OpenSet
from inspector.identity.runtime import ARTIFACTS, DEFAULT_PROVIDERS, OrtModel, check_provider_names
from inspector.identity.morphology import measure as measure_morphology
from inspector.identity.tiling import crop_data_bar, grid_tiles, preprocess, to_gray_u8
from inspector.identity.triton_runtime import RemoteIdentityModel, RemoteInferenceError, TritonSettings
from inspector.inspections.base import (
    Attachment, Inspection, InspectionContext, InspectionParams, InspectionResult, ModelInfo,
)
from inspector.modelrepo import ModelDir, resolve

TASK = "excipient_identity"
TOP_K = 3


def class_key(name: str) -> str:
    """Normalised class name for matching: lower case, runs of non-alphanumerics -> '-'."""
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")


def match_class(name: str | None, classes: list[str]) -> int | None:
    """Index of ``name`` among ``classes`` (exact, then by :func:`class_key`); None if unknown/empty."""
    if not name:
        return None
    if name in classes:
        return classes.index(name)
    keys = [class_key(c) for c in classes]
    k = class_key(name)
    return keys.index(k) if k in keys else None


def aggregate(probs: np.ndarray, how: str) -> np.ndarray:
    """Frame class scores from tile probabilities (n, C): mean probability, or vote fractions."""
    if how == "mean":
        return probs.mean(axis=0)
    if how == "vote":
        votes = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]).astype(np.float64)
        # ties between vote counts are broken by the mean probability (a tiny, bounded nudge)
        return votes / len(probs) + 1e-9 * probs.mean(axis=0)
    raise ValueError(f"unknown aggregate {how!r}")


@dataclass(slots=True)
class _ServedModelInfo(ModelInfo):
    """ModelInfo plus who serves it (a Triton server's url/model/version/sha256, or the local fallback)."""

    served_by: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**ModelInfo.to_dict(self), "served_by": self.served_by}


@dataclass
class _Loaded:
    """One verified model version with its session (in-process or Triton) and Grad-CAM head."""

    model_dir: ModelDir
    ort: OrtModel | RemoteIdentityModel
    head: DenseHead
    openset: OpenSet | None = None  # unknown-material check + drift projection, when calibrated

    @property
    def classes(self) -> list[str]:
        return self.ort.classes


def _check_manifest(md: ModelDir, precision: str) -> None:
    m = md.manifest
    if m.task != TASK:
        raise ConfigError(f"model {m.name}/{m.version} is for task {m.task!r}, not {TASK!r}")
    for art in (ARTIFACTS[precision], HEAD_ARTIFACT):
        if art not in m.artifacts:
            raise ConfigError(f"model {m.name}/{m.version} has no {art} artifact (precision {precision})")
    if len(m.classes) < 2:
        raise ConfigError(f"model {m.name}/{m.version} lists fewer than two classes")


class ExcipientIdentity(Inspection):
    name = "excipient_identity"

    class Params(InspectionParams):
        model: str = "excipient-identity-default"
        version: str | None = None
        expected: str | None = Field(None, description="default expected excipient; the frame context's "
                                                        "'expected_excipient' overrides it")
        min_confidence: float = Field(0.6, ge=0.0, le=1.0)
        aggregate: Literal["mean", "vote"] = "mean"
        gradcam_every_n_passes: int = Field(20, ge=0, description="Grad-CAM for 1 in N passes (0: rejects only)")
        save_gradcam: bool = Field(True, description="also save snapshots under <gradcam_dir>/<date>/")
        providers: list[str] = Field(default_factory=lambda: list(DEFAULT_PROVIDERS))
        precision: Literal["fp32", "int8"] = "fp32"
        intra_op_threads: int = Field(1, ge=1, le=64)
        runtime: Literal["onnxruntime", "triton"] = Field("onnxruntime", description="in-process ONNX Runtime, "
                                                          "or a Triton Inference Server (the `triton` block)")
        triton: TritonSettings | None = None

        @model_validator(mode="after")
        def _triton_block(self):
            if self.runtime == "triton" and self.triton is None:
                raise ValueError("runtime: triton needs a triton: {url: HOST:PORT, ...} block")
            return self

        @field_validator("providers")
        @classmethod
        def _providers(cls, v: list[str]) -> list[str]:
            return check_provider_names(v)

    @classmethod
    def validate_static(cls, params: InspectionParams, config: Any) -> None:
        """The model must exist, verify, be an identity model, and know every configured excipient."""
        try:
            md = resolve(config.models_path(), params.model, params.version)
        except (ModelNotFoundError, ModelIntegrityError) as e:
            raise ConfigError(f"inspection {cls.name}: {e}") from None
        _check_manifest(md, params.precision)
        lot = getattr(config, "lot", None)
        for key, value in (("params.expected", params.expected),
                           ("lot.expected_excipient", getattr(lot, "expected_excipient", None))):
            if value and match_class(value, md.manifest.classes) is None:
                raise ConfigError(f"inspection {cls.name}: {key} {value!r} is not a class of model "
                                  f"{md.manifest.name}/{md.manifest.version} (known: {', '.join(md.manifest.classes)})")

    def __init__(self, params: InspectionParams, ctx: InspectionContext):
        super().__init__(params, ctx)
        self.params: ExcipientIdentity.Params
        self._passes = 0
        self._warned_expected: set[str] = set()
        self._current = self._load(self.params.version)

    # ---- model management -------------------------------------------------
    def _load(self, version: str | None) -> _Loaded:
        """Resolve, verify (sha256), open and sanity-check a model version; raises, never half-loads."""
        p = self.params
        md = resolve(self.ctx.models_dir, p.model, version)  # ModelIntegrityError on a tampered file
        _check_manifest(md, p.precision)
        if p.expected and match_class(p.expected, md.manifest.classes) is None:
            raise ConfigError(f"expected excipient {p.expected!r} is not a class of model "
                              f"{md.manifest.name}/{md.manifest.version}")
        head = DenseHead.load(md.artifact(HEAD_ARTIFACT))
        def local() -> OrtModel:
            return OrtModel(md, p.providers, cache_dir=Path(self.ctx.state_dir) / "trt-cache",
                            intra_op_threads=p.intra_op_threads, precision=p.precision)

        # Triton: sha256 of the served model checked against the manifest (refused on mismatch)
        ort_model = RemoteIdentityModel(md, p.triton, precision=p.precision, local=local) \
            if p.runtime == "triton" else local()
        if head.num_classes != len(md.manifest.classes):
            raise ModelIntegrityError(f"model {md.manifest.name}/{md.manifest.version}: head has "
                                      f"{head.num_classes} classes, manifest {len(md.manifest.classes)}")
        block = md.manifest.extra.get("openset")
        openset = (OpenSet.load(md.artifact(OPENSET_ARTIFACT), block, head.num_classes)
                   if block and OPENSET_ARTIFACT in md.manifest.artifacts else None)
        self.ctx.log.info("excipient_identity: model %s/%s (%s) on %s, classes %s, open-set check %s, lot-drift views %s",
                          md.manifest.name, md.manifest.version, p.precision, ort_model.provider, md.manifest.classes,
                          f"{openset.method}/{openset.aggregation} > {openset.threshold:.4g}" if openset else "off",
                          ("embedding+morphology" if openset.measures_morphology else "embedding") if openset else "none")
        return _Loaded(md, ort_model, head, openset)

    def model_info(self) -> ModelInfo:
        m = self._current.model_dir.manifest
        if isinstance(self._current.ort, RemoteIdentityModel):
            return _ServedModelInfo(m.name, m.version, self._current.ort.sha256, self._current.ort.served_by())
        return ModelInfo(name=m.name, version=m.version, sha256=self._current.ort.sha256)

    def reload(self, version: str | None = None) -> ModelInfo:
        """Load and verify ``version`` (latest when None) completely, then swap; on error the old one stays."""
        new = self._load(version)
        old, self._current = self._current, new
        if isinstance(old.ort, RemoteIdentityModel):
            old.ort.close()  # its gRPC channel
        return self.model_info()

    def close(self) -> None:
        if self._current is not None and isinstance(self._current.ort, RemoteIdentityModel):
            self._current.ort.close()
        self._current = None  # type: ignore[assignment]

    # ---- inspection -------------------------------------------------------
    def _expected(self, frame: Frame, classes: list[str]) -> tuple[str | None, int | None]:
        raw = frame.meta.context.get("expected_excipient") or self.params.expected
        if not raw:
            return None, None
        raw = str(raw)
        return raw, match_class(raw, classes)

    def inspect(self, frame: Frame) -> InspectionResult:
        cur = self._current
        classes = cur.classes
        t0 = time.perf_counter()
        grey = to_gray_u8(frame.gray())  # BadFrameError: pixel format
        body = crop_data_bar(grey)  # the frame without its data bar (same coordinates: the bar is at the bottom)
        tiles, origins = grid_tiles(body, cur.ort.tile)  # BadFrameError: too small
        x = preprocess(tiles, cur.ort.preprocess_mode)
        t1 = time.perf_counter()
        remote = isinstance(cur.ort, RemoteIdentityModel)
        try:
            out = cur.ort.run(x)
        except RemoteInferenceError as e:  # server down/slow/refused and no local fallback: this frame only
            return InspectionResult(verdict="error", stages={"preprocess": t1 - t0}, detail={
                "reason": f"remote_{e.reason}", "error": str(e), "remote": cur.ort.frame_detail()})
        t2 = time.perf_counter()
        probs = out["probs"]
        scores_c = aggregate(probs, self.params.aggregate)
        idx = int(np.argmax(scores_c))
        conf = float(min(1.0, scores_c[idx]))
        identity = classes[idx]
        expected_raw, exp_idx = self._expected(frame, classes)
        stages = {"preprocess": t1 - t0, "infer": t2 - t1}
        detail: dict[str, Any] = {"identity": identity, "expected": classes[exp_idx] if exp_idx is not None else None,
                                  "tiles": len(tiles), "provider": cur.ort.provider,
                                  "aggregate": self.params.aggregate,
                                  "tile_agreement": float(np.mean(probs.argmax(axis=1) == idx))}
        if remote:
            detail["remote"] = cur.ort.frame_detail()
        scores: dict[str, float] = {"confidence": conf}
        for j in np.argsort(-scores_c)[:TOP_K]:
            scores[f"p.{classes[j]}"] = float(min(1.0, scores_c[j]))
        if expected_raw is not None and exp_idx is None:
            if expected_raw not in self._warned_expected:
                self._warned_expected.add(expected_raw)
                self.ctx.log.warning("excipient_identity: expected excipient %r is not a class of model %s/%s",
                                     expected_raw, cur.model_dir.manifest.name, cur.model_dir.manifest.version)
            detail.update(expected=expected_raw, error=f"expected excipient {expected_raw!r} is unknown to the model")
            return InspectionResult(verdict="error", scores=scores, stages=stages, detail=detail,
                                    reason="expected_not_in_model")
        if exp_idx is not None:
            scores["p_expected"] = float(min(1.0, scores_c[exp_idx]))
        unknown = self._openset(cur, probs, out["pooled"], scores, detail)
        if cur.openset is not None and cur.openset.measures_morphology:  # the lot-drift morphology view
            t3 = time.perf_counter()
            detail["morphology"] = [round(float(v), 5) for v in measure_morphology(body)]
            stages["morphology"] = time.perf_counter() - t3
        mismatch = exp_idx is not None and exp_idx != idx
        low = conf < self.params.min_confidence
        verdict = "reject" if (unknown or mismatch or low) else "pass"
        reason = (("unknown_material" if unknown else "wrong_material" if mismatch else "low_confidence")
                  if verdict == "reject" else None)
        attachments: list[Attachment] = []
        if self._want_gradcam(verdict):
            t3 = time.perf_counter()
            attachments.append(self._gradcam(frame, grey, out, origins, idx, verdict, detail, cur))
            stages["gradcam"] = time.perf_counter() - t3
        return InspectionResult(verdict=verdict, scores=scores, stages=stages, detail=detail, attachments=attachments,
                                reason=reason)

    @staticmethod
    def _openset(cur: _Loaded, probs: np.ndarray, pooled: np.ndarray, scores: dict[str, float],
                 detail: dict[str, Any]) -> bool:
        """Unknown-material score (``ood`` vs ``ood_threshold``), nearest known class and the compact
        drift embedding; True when the frame is beyond the threshold. Uncalibrated models: no check."""
        os_ = cur.openset
        if os_ is None:
            detail["openset"] = "off: model not calibrated (inspector calibrate openset), no unknown-material check"
            return False
        ood, nearest = os_.check(probs, cur.head.logits(pooled), pooled)
        scores.update(ood=ood, ood_threshold=os_.threshold)
        detail.update(openset=f"{os_.method}/{os_.aggregation}", nearest_class=cur.classes[nearest],
                      embedding=[round(float(v), 4) for v in os_.embed(pooled)])
        return ood > os_.threshold

    def _want_gradcam(self, verdict: str) -> bool:
        if verdict == "reject":
            return True
        self._passes += 1
        n = self.params.gradcam_every_n_passes
        return n > 0 and (self._passes - 1) % n == 0

    def _gradcam(self, frame: Frame, grey: np.ndarray, out: dict[str, np.ndarray], origins: list[tuple[int, int]],
                 idx: int, verdict: str, detail: dict[str, Any], cur: _Loaded) -> Attachment:
        tile = cur.ort.tile
        cams = normalise(gradcam(out["conv_map"], out["pooled"], cur.head, idx), joint=True)
        png = encode_png(frame_overlay(grey, cams, origins, tile))
        meta = frame.meta
        rows = sorted({y for y, _ in origins})
        header: dict[str, Any] = {
            "frame_id": meta.frame_id, "camera": meta.camera, "run_id": meta.run_id,
            "identity": detail["identity"], "expected": detail["expected"], "verdict": verdict,
            "class": cur.classes[idx], "format": "png", "width": int(grey.shape[1]), "height": int(grey.shape[0]),
            "tile_grid": {"tile": tile, "rows": len(rows), "cols": len(origins) // max(1, len(rows)),
                          "origins": [list(o) for o in origins]},
            "model": self.model_info().to_dict(),
        }
        if self.params.save_gradcam:
            rel = self._save(meta.acquired_at, meta.run_id, meta.frame_id, png)
            if rel is not None:
                detail["gradcam"] = header["path"] = rel
        return Attachment(kind="gradcam", header=header, payload=png)

    def _save(self, acquired_at: float, run_id: str, frame_id: int, png: bytes) -> str | None:
        """Write the PNG under <gradcam_dir>/<UTC date>/; returns the path relative to gradcam_dir
        (the audit trail references snapshots relative to that directory)."""
        day = _dt.datetime.fromtimestamp(acquired_at or time.time(), _dt.timezone.utc).strftime("%Y-%m-%d")
        run = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id or "run")[:64] or "run"
        rel = Path(day) / f"{run}_{int(frame_id)}.png"
        base = self.ctx.gradcam_dir or Path(self.ctx.state_dir) / "gradcam"
        path = Path(base) / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".png.tmp")
            tmp.write_bytes(png)
            tmp.replace(path)
        except OSError as e:  # a full disk must not stop the inspection; the attachment still goes out
            self.ctx.log.warning("excipient_identity: cannot save Grad-CAM %s: %s", path, e)
            return None
        return rel.as_posix()
