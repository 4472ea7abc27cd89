"""Connects the supervisor to operations: the HTTP health/metrics listener and systemd notifications."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from inspector.ops.http import HealthServer
from inspector.ops.sdnotify import Notifier

if TYPE_CHECKING:
    from inspector.daemon.supervisor import Supervisor

log = logging.getLogger("inspector.ops")


class OpsHook:
    """READY=1 once camera, workers and models are ready; STATUS= every few seconds; WATCHDOG=1 only
    while ready — frames acquired are inspected — (the watchdog proves the pipeline, not just the
    process, is alive)."""

    def __init__(self, sup: Supervisor, notifier: Notifier | None = None):
        self.notifier = notifier or Notifier()
        self.server: HealthServer | None = None
        if sup.cfg.metrics.enabled:
            self.server = HealthServer(sup.cfg.metrics.listen, sup.metrics.registry, sup.readiness)
            self.server.start()
            log.info("metrics and health on http://%s/metrics, /healthz, /readyz", sup.cfg.metrics.listen)
        self._ready_sent = False
        self._last_status = 0.0
        self._stopping_sent = False

    def tick(self, sup: Supervisor) -> None:
        now = time.monotonic()
        ok, reasons = sup.readiness()
        if ok and not self._ready_sent:
            self.notifier.ready(status="inspecting")
            self._ready_sent = True
            log.info("ready: camera open, %d worker(s) with models loaded", sup.cfg.workers)
        if sup.stopping and not self._stopping_sent:
            self.notifier.stopping()
            self._stopping_sent = True
        if now - self._last_status >= 2.0:
            c = sup.ledger.counts
            text = (f"{'paused; ' if sup.paused else ''}acquired {c['acquired']}, inspected {c['inspected']}, "
                    f"dropped {c['dropped']}, lost {c['lost']}" + ("" if ok else f"; not ready: {', '.join(reasons)}"))
            self.notifier.status(text)
            self._last_status = now
        # the watchdog proves the daemon is inspecting: withheld whenever it is not ready (stall,
        # camera down, workers or models missing, audit refusing writes), so systemd restarts a
        # service that stays wedged; an operator's pause is not a fault
        if self.notifier.watchdog_interval_s is not None and self._ready_sent and ok:
            self.notifier.watchdog_if_due()

    def close(self) -> None:
        if not self._stopping_sent:
            self.notifier.stopping()
        if self.server is not None:
            self.server.stop()
        self.notifier.close()
