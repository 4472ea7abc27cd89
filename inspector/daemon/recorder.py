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
from inspector.audit.chain import AuditError
from inspector.frame import FrameMeta
from inspector.ops.metrics import Metrics
from inspector.transport.messages import Decision

log = logging.getLogger("inspector.audit")


class Recorder:
    def __init__(self, cfg: Config, run_id: str, config_sha256: str, metrics: Metrics):
        self.cfg, self.run_id, self.config_sha256, self.metrics = cfg, run_id, config_sha256, metrics
        self.store = open_store(cfg)
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._next_retention = time.monotonic() + 60.0
        #: the last write error while the store refuses writes (disk full, read-only…), else None
        self.failure: str | None = None

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
        self.flush(strict=True)  # an audit store that cannot be written is a start-up error

    def shutdown(self, counts: dict[str, int]) -> None:
        self.event("shutdown", {"counts": dict(counts)})
        self.flush()

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        self._pending.append((kind, {"run_id": self.run_id, **payload}))

    def inspected(self, meta: FrameMeta, decisions: list[Decision], worker: str | None = None) -> None:
        records = [{
            "inspection": d.inspection, "verdict": d.verdict, "reason": d.reason, "scores": d.scores,
            "model": d.model, "latency_ms": d.latency_ms, "gradcam": d.detail.get("gradcam"),
            # identity: the compact drift embedding, the particle morphology and the expected class
            # (`inspector drift report`)
            **({"embedding": d.detail["embedding"], "expected": d.detail.get("expected")}
               if "embedding" in d.detail else {}),
            **({"morphology": d.detail["morphology"]} if "morphology" in d.detail else {}),
        } for d in decisions]
        rec = self._frame(meta.to_dict(), "inspected", None, records)
        rec["worker"] = worker  # which process decided (local w<i>-<gen> or remote r-<host>-<pid>)
        self._pending.append(("frame", rec))

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
    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self, *, strict: bool = False) -> bool:
        """Write the pending records in one transaction. True when everything is on record.

        When the store refuses the write (disk full, read-only file system, I/O error) the records
        stay pending, in order, and are retried on the next flush; False is returned so that the
        caller publishes nothing they cover. ``strict``: raise the AuditError instead.
        """
        if not self._pending:
            return True
        items = self._pending
        try:
            self.store.append_many(items)
        except AuditError as e:
            self.metrics.audit_write_failures.inc()
            self.metrics.audit_pending.set(len(items))
            if self.failure is None:
                log.error("audit store refuses writes: %s — holding %d record(s); nothing they cover is "
                          "published until they are on record", e, len(items))
            self.failure = str(e)
            if strict:
                raise
            return False
        self._pending = []
        if self.failure is not None:
            log.info("audit store writable again: %d held record(s) written", len(items))
            self.failure = None
        self.metrics.audit_pending.set(0)
        for kind, _ in items:
            self.metrics.audit_records.labels(kind=kind).inc()
        return True

    def close(self) -> None:
        try:
            if not self.flush():
                log.error("closing with %d record(s) the audit store refused: %s", len(self._pending), self.failure)
        finally:
            self.store.close()
