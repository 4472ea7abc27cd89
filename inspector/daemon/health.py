"""Readiness that tells the truth, and stall detection.

Ready means the daemon is *inspecting*: the acquisition process runs and the camera is open, every
configured worker is up with its models loaded, frames that come in come out inspected, and the
audit store accepts records. A stall — frames acquired but none inspected for
``supervisor.stall_timeout_s`` — makes it not ready (and withholds the systemd watchdog) until
inspection resumes, whatever the cause (a wedged broker, workers without credit, a hung model).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inspector.ops.metrics import Metrics

if TYPE_CHECKING:
    from inspector.daemon.supervisor import Supervisor

log = logging.getLogger("inspector.health")


@dataclass
class Health:
    stall_timeout_s: float
    metrics: Metrics
    #: monotonic time of the first frame acquired since the last inspected one (None: nothing waiting)
    waiting_since: float | None = None
    stalled: bool = False
    #: until the first frame of the run is inspected (first inferences are slow), allow this long
    first_grace_s: float = 10.0
    _inspected_once: bool = False

    def on_acquired(self, now: float | None = None) -> None:
        if self.waiting_since is None:
            self.waiting_since = time.monotonic() if now is None else now

    def on_inspected(self) -> None:
        self._inspected_once = True
        self.on_idle()

    def on_idle(self) -> None:
        """Nothing can be in flight (paused, source finished, acquisition restarted): not a stall."""
        self.waiting_since = None
        if self.stalled:
            self._set(False)

    def check(self, armed: bool = True, now: float | None = None) -> bool:
        """Update the stall state. ``armed``: the pipeline should be flowing (camera up, workers
        ready, not paused); while it is not, there is nothing to call a stall."""
        if not armed:
            self.on_idle()
            return False
        now = time.monotonic() if now is None else now
        limit = self.stall_timeout_s if self._inspected_once else max(self.stall_timeout_s, self.first_grace_s)
        stalled = self.waiting_since is not None and now - self.waiting_since > limit
        if stalled != self.stalled:
            self._set(stalled)
        return stalled

    def _set(self, stalled: bool) -> None:
        self.stalled = stalled
        self.metrics.stalled.set(1 if stalled else 0)
        if stalled:
            self.metrics.stalls.inc()
            log.error("stall: frames acquired but none inspected for %.1f s", self.stall_timeout_s)
        else:
            log.info("inspection resumed after a stall")

    def stall_reason(self) -> str | None:
        if not self.stalled or self.waiting_since is None:
            return None
        return f"stalled: frames acquired but none inspected for {time.monotonic() - self.waiting_since:.1f} s"


ACQ_SILENCE_S = 1.5  # the acquisition process sends stats every 0.5 s: silence beyond this is a wedge


def readiness_reasons(sup: Supervisor) -> list[str]:
    """Why the daemon is not inspecting right now (empty: ready)."""
    reasons = []
    now = time.monotonic()
    if not sup.children.acquisition_running():
        reasons.append("acquisition process not running")
    elif sup._acq_ready_gen != sup.children.acq_generation:
        reasons.append("acquisition process starting")
    elif now - sup._acq_heard > ACQ_SILENCE_S:
        reasons.append(f"acquisition process not responding for {now - sup._acq_heard:.1f} s")
    if not sup.camera_up:
        reasons.append("camera not open")
    alive = sup._workers_ready()
    if alive < sup.cfg.workers:
        reasons.append(f"{alive}/{sup.cfg.workers} workers ready (models loaded)")
    missing = [n for n in sup._model_inspections if n not in sup.state.models]
    if missing:
        reasons.append(f"no model loaded for {', '.join(missing)}")
    if sup.outcomes is not None:
        down = [i for i, ok in sup.outcomes.remote_health.items() if not ok]
        if down:
            reasons.append(f"inference server unavailable for {', '.join(sorted(down))} (no local fallback)")
    stall = sup.health.stall_reason()
    if stall:
        reasons.append(stall)
    if sup.recorder.failure is not None:
        held = sup.outcomes.held if sup.outcomes is not None else 0
        reasons.append(f"audit store refuses writes ({sup.recorder.failure}); {held} decision(s) held back, "
                       "unpublished")
    if sup.stopping:
        reasons.append("shutting down")
    return reasons
