"""Supervisor hook for the reject channel: issues a command per published frame with an actionable
decision, and turns the channel's outcomes into audit records, metrics, log lines and the HMI alarm
topic (``alarm.reject_deadline.`` on the line PUB socket).

Audit records (kind: payload):

* ``reject_ack``: seq, frame_id, controller (whose ack settled it), controllers, latency_ms, attempts
* ``alarm``: alarm=reject_deadline, reason (deadline | channel failed), seq, frame_id, attempts,
  require, controllers_connected, acked_by, missing, decisions, late_ms
* ``line_controller``: controller, state (connected | gone), reason
"""

from __future__ import annotations

import json
import logging
import queue
from typing import TYPE_CHECKING, Any

from inspector.line.reject import RejectChannel
from inspector.line.settings import line_config
from inspector.transport import topics
from inspector.transport.security import security_config

if TYPE_CHECKING:
    from inspector.daemon.supervisor import Supervisor

log = logging.getLogger("inspector.line")

ALARM_TOPIC = topics.topic("alarm", "reject_deadline")


class RejectHook:
    def __init__(self, sup: Supervisor):
        self.sup = sup
        self.cfg = line_config(sup.cfg)
        self.actionable = set(self.cfg.actionable)
        self.channel = RejectChannel(sup.ctx, self.cfg, security_config(sup.cfg), sup.run_id)
        log.info("reject channel on %s: deadline %g ms, resend every %g ms, actionable %s, require %s",
                 self.channel.endpoint, self.cfg.deadline_ms, self.cfg.resend_ms, ",".join(self.cfg.actionable),
                 self.cfg.require)

    def on_published(self, sup: Supervisor, headers: list[dict[str, Any]], attachments: list[Any]) -> None:
        acts = [h for h in headers if h["verdict"] in self.actionable]
        if not acts:
            return
        h0 = acts[0]
        decisions = [{"inspection": h["inspection"], "verdict": h["verdict"], "reason": _reason(h)} for h in acts]
        self.channel.issue({"frame_id": h0["frame_id"], "camera": h0.get("camera"),
                            "acquired_at": h0.get("acquired_at")}, decisions)
        sup.metrics.reject_commands.inc()

    def tick(self, sup: Supervisor) -> None:
        self._drain()

    def close(self) -> None:
        self.channel.close()  # pending commands run to their ack or deadline first
        self._drain()

    def _drain(self) -> None:
        sup, m = self.sup, self.sup.metrics
        wrote = False
        while True:
            try:
                kind, rec = self.channel.outcomes.get_nowait()
            except queue.Empty:
                break
            if kind == "resend":
                m.reject_resends.inc()
                continue
            if kind == "bad_input":
                m.bad_input.labels(kind="line_malformed").inc()
                log.warning("reject channel: bad message from %s: %s", rec["controller"], rec["reason"])
                continue
            if kind == "ack":
                m.reject_acks.inc()
                m.reject_ack_latency.observe(rec["latency_ms"] / 1000.0)
                sup.recorder.event("reject_ack", rec)
            elif kind == "alarm":
                m.reject_deadline_missed.inc()
                log.error("ALARM reject not acknowledged: frame %d (seq %d) missed its %g ms deadline after %d "
                          "attempt(s); %d controller(s) connected, missing %s", rec["frame_id"], rec["seq"],
                          self.cfg.deadline_ms, rec["attempts"], rec["controllers_connected"],
                          ", ".join(rec["missing"]) or "-")
                sup.recorder.event("alarm", rec)
                self._publish_alarm(rec)
            elif kind == "controller":
                (log.info if rec["state"] == "connected" else log.warning)(
                    "line controller %s %s%s", rec["controller"], rec["state"],
                    f" ({rec['reason']})" if rec.get("reason") else "")
                sup.recorder.event("line_controller", rec)
            wrote = True
        if wrote:
            sup.recorder.flush()
        m.reject_pending.set(self.channel.pending())
        m.line_controllers.set(len(self.channel.controllers()))

    def _publish_alarm(self, rec: dict[str, Any]) -> None:
        body = {"schema": 1, "run_id": self.sup.run_id, **rec}
        try:
            self.sup.publisher.sock.send_multipart([ALARM_TOPIC, json.dumps(body, default=str).encode()])
        except Exception as e:  # the alarm is on record; the HMI copy is best effort
            log.error("could not publish the alarm on the PUB socket: %s", e)


def _reason(h: dict[str, Any]) -> Any:
    return h.get("reason")  # the decision's reason code (out_of_focus, wrong_material, defect…)
