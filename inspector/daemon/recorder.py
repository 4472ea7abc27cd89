"""The supervisor's side of the audit trail: builds the records and appends them in batches.

Every acquired frame gets exactly one ``frame`` record (inspected, dropped or lost, with the reason);
decisions carry the model name/version/sha256, the config sha256 and the lot/recipe at acquisition.
The supervisor flushes before it publishes, so nothing reaches the line that is not on record.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from inspector.audit.settings import apply_retention, open_store
from inspector.config import Config
from inspector.daemon.ledger import FrameState
from inspector.frame import FrameMeta
from inspector.ops.metrics import Metrics

log = logging.getLogger("inspector.audit")


class Recorder:
    def __init__(self, cfg: Config, run_id: str, config_sha256: str, metrics: Metrics):
        self.cfg, self.run_id, self.config_sha256, self.metrics = cfg, run_id, config_sha256, metrics
        self.store = open_store(cfg)
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._next_retention = time.monotonic() + 60.0

    def maybe_apply_retention(self, every_s: float = 3600.0) -> None:
        """Prune by age/size now and then (the store records what it pruned)."""
        now = time.monotonic()
        if now < self._next_retention:
            return
        self._next_retention = now + every_s
        self.flush()
        report = apply_retention(self.store, self.cfg)
        if report is not None:
            log.info("audit retention: %s", report)

    # ------------------------------------------------------------------ records
    def startup(self) -> None:
        unclosed = [r for r in self.store.unclosed_runs() if r != self.run_id]
        self.event("startup", {"config_sha256": self.config_sha256, "unclosed_runs": unclosed})
        self.event("config", {"config_sha256": self.config_sha256, "config": self.cfg.model_dump(mode="json")})
        if self.cfg.lot.id or self.cfg.lot.recipe:
            self.event("lot_change", {"lot": self.cfg.lot.id, "recipe": self.cfg.lot.recipe,
                                      "expected_excipient": self.cfg.lot.expected_excipient, "by": "config"})
        self.flush()

    def shutdown(self, counts: dict[str, int]) -> None:
        self.event("shutdown", {"counts": dict(counts)})
        self.flush()

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        self._pending.append((kind, {"run_id": self.run_id, **payload}))

    def inspected(self, meta: FrameMeta, results: list[dict[str, Any]]) -> None:
        decisions = [{
            "inspection": r["inspection"], "verdict": r["verdict"], "scores": r.get("scores", {}),
            "model": r.get("model"), "latency_ms": r.get("latency_ms"),
            "reason": (r.get("detail") or {}).get("reason"),
            "gradcam": (r.get("detail") or {}).get("gradcam"),
        } for r in results]
        self._pending.append(("frame", self._frame(meta.to_dict(), "inspected", None, decisions)))

    def not_inspected(self, st: FrameState, outcome: str, reason: str) -> None:
        meta = st.meta or {"frame_id": st.frame_id}
        self._pending.append(("frame", self._frame({**meta, "frame_id": st.frame_id}, outcome, reason, [])))

    def _frame(self, meta: dict[str, Any], outcome: str, reason: str | None,
               decisions: list[dict[str, Any]]) -> dict[str, Any]:
        ctx = meta.get("context") or {}
        return {
            "run_id": self.run_id, "frame_id": int(meta["frame_id"]),
            "camera": str(meta.get("camera") or self.cfg.camera_id()),
            "acquired_at": float(meta.get("acquired_at") or 0.0),
            "outcome": outcome, "reason": reason, "decisions": decisions,
            "config_sha256": self.config_sha256, "lot": ctx.get("lot"), "recipe": ctx.get("recipe"),
            "source": meta.get("source"),
        }

    # ------------------------------------------------------------------ I/O
    def flush(self) -> None:
        if not self._pending:
            return
        items, self._pending = self._pending, []
        self.store.append_many(items)
        for kind, _ in items:
            self.metrics.audit_records.labels(kind=kind).inc()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.store.close()
