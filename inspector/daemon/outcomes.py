"""How frames end in the supervisor: ledger → audit record → publication, in frame order.

Every acquired frame ends exactly once (inspected, dropped, lost). Its audit record is written
first; only frames whose records are durable are released, and they are published in frame order
(a result waits until every earlier frame has ended), so the line controller sees strictly
increasing frame ids and never a decision that is not on record. When the audit store refuses
writes, nothing is released until it accepts them again.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from inspector.daemon.ledger import Ledger
from inspector.daemon.publisher import Publisher, result_header
from inspector.daemon.recorder import Recorder
from inspector.ops.metrics import Metrics
from inspector.transport.messages import Result

log = logging.getLogger("inspector.supervisor")
results_log = logging.getLogger("inspector.results")

#: published-result listeners: (headers of the frame's results, attachments as
#: (kind, inspection, header, payload)) — the line-integration hooks
Listener = Callable[[list[dict[str, Any]], list[tuple[str, str, dict[str, Any], bytes]]], None]


class Outcomes:
    def __init__(self, ledger: Ledger, recorder: Recorder, publisher: Publisher, metrics: Metrics, *,
                 log_results: bool = True):
        self.ledger, self.recorder, self.publisher, self.metrics = ledger, recorder, publisher, metrics
        self.log_results = log_results
        self.listeners: list[Listener] = []
        self._finished_out: dict[int, Result | None] = {}  # ended, waiting for earlier ids
        self._unreleased: list[tuple[int, Result | None]] = []  # ended, audit record not yet durable
        self.next_out = 0
        #: inspection -> can it infer (its inference server answers, or a local fallback is configured)
        self.remote_health: dict[str, bool] = {}

    # ------------------------------------------------------------------ endings
    def inspected(self, res: Result) -> bool:
        meta = res.meta
        st = self.ledger.finish(meta.frame_id, "inspected", meta.to_dict())
        if st is None:
            log.warning("duplicate result for frame %d ignored", meta.frame_id)
            return False
        self.recorder.inspected(meta, res.decisions, res.worker)
        self._unreleased.append((meta.frame_id, res))
        return True

    def dropped(self, frame_id: int, reason: str) -> None:
        st = self.ledger.finish(frame_id, "dropped")
        if st is None:
            return
        self.metrics.frames_dropped.labels(reason=reason).inc()
        self.recorder.not_inspected(st, "dropped", reason)
        self._unreleased.append((frame_id, None))

    def lost(self, frame_id: int, reason: str) -> None:
        st = self.ledger.finish(frame_id, "lost")
        if st is None:
            return
        self.metrics.frames_lost.labels(reason=reason).inc()
        self.recorder.not_inspected(st, "lost", reason)
        self._unreleased.append((frame_id, None))
        log.warning("frame %d lost (%s)", frame_id, reason)

    # ------------------------------------------------------------------ audit, then publish
    def commit(self) -> bool:
        """Write pending audit records in one transaction, then release what they cover: nothing
        is published that is not on record, at one fsync per batch. False while the store refuses."""
        if not self.recorder.flush():
            return False
        pending, self._unreleased = self._unreleased, []
        for frame_id, item in pending:
            self._release(frame_id, item)
        return True

    @property
    def held(self) -> int:
        """Frames ended but not yet released because their audit records are not durable."""
        return len(self._unreleased)

    def _release(self, frame_id: int, item: Result | None) -> None:
        if frame_id < self.next_out:  # cannot happen with consecutive ids; never hold it back
            if item is not None:
                self._publish(item)
            return
        self._finished_out[frame_id] = item
        self._advance()

    def _advance(self) -> None:
        while self.next_out in self._finished_out:
            it = self._finished_out.pop(self.next_out)
            if it is not None:
                self._publish(it)
            self.next_out += 1

    def _publish(self, res: Result) -> None:
        meta = res.meta
        m = self.metrics
        t0 = time.perf_counter()
        headers, attachments = [], []
        for d in res.decisions:
            header = result_header(meta, d)
            self.publisher.result(header)
            headers.append(header)
            for a in d.attachments:
                self.publisher.attachment(a.kind, d.inspection, a.header, res.payloads[a.index])
                attachments.append((a.kind, d.inspection, a.header, res.payloads[a.index]))
        if res.thumbnail is not None:  # for the hooks (operator page) only
            attachments.append(("thumbnail", None, res.thumbnail.header, res.payloads[res.thumbnail.index]))
        publish_s = time.perf_counter() - t0
        m.frames_processed.inc()
        m.stage_seconds.labels(stage="publish").observe(publish_s)
        m.stage_seconds.labels(stage="queue").observe(res.queue_s)
        for d in res.decisions:
            m.results.labels(inspection=d.inspection, verdict=d.verdict).inc()
            for stage, secs in d.stages.items():
                if stage in ("preprocess", "infer", "gradcam"):
                    m.stage_seconds.labels(stage=stage).observe(float(secs))
            if isinstance(remote := d.detail.get("remote"), dict):  # Triton round trip / failure
                m.observe_remote(d.inspection, remote)
                self.remote_health[d.inspection] = bool(remote.get("healthy") or remote.get("fallback") == "local")
        m.frame_latency.observe(max(0.0, time.time() - meta.acquired_at))
        for listener in self.listeners:
            try:
                listener(headers, attachments)
            except Exception:  # a line-integration hook must not stop publication
                log.exception("result listener failed on frame %d", meta.frame_id)
        if self.log_results:
            results_log.info("frame %d %s %s (%.1f ms)", meta.frame_id, f"[{meta.source}]" if meta.source else "",
                             " ".join(_summary(h) for h in headers), (time.time() - meta.acquired_at) * 1000)


def _summary(h: dict[str, Any]) -> str:
    scores = h.get("scores") or {}
    shown = ",".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(scores.items())[:3])
    extra = (h.get("detail") or {}).get("identity")
    reason = f"<{h['reason']}>" if h.get("reason") else ""
    return f"{h['inspection']}={h['verdict']}{reason}" + (f"[{extra}]" if extra else "") + (f"({shown})" if shown else "")
