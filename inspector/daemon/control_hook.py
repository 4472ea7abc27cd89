"""The control channel inside the supervisor: reload a model, set the lot / expected excipient,
pause and resume. Every command is validated, acknowledged, and audited (by the ControlServer)."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import zmq

from inspector.config import validate_inspections
from inspector.control.protocol import ControlRequest
from inspector.control.server import ControlServer
from inspector.control.settings import control_config
from inspector.errors import ConfigError, InspectorError
from inspector.inspections import inspection_class
from inspector.transport.security import security_config

if TYPE_CHECKING:
    from inspector.daemon.supervisor import Supervisor

log = logging.getLogger("inspector.control")


class _AuditAdapter:
    """Appends control records in order with the supervisor's buffered records."""

    def __init__(self, sup: Supervisor):
        self.sup = sup

    def append(self, kind: str, record: dict[str, Any]) -> int:
        self.sup.recorder.event(kind, record)
        self.sup.recorder.flush(strict=True)  # the control server answers "could not be audited"
        return 0


class ControlHook:
    def __init__(self, sup: Supervisor):
        self.sup = sup
        ccfg = control_config(sup.cfg)
        self.server = ControlServer(
            sup.ctx, ccfg.endpoint, self.handle, security_config(sup.cfg), audit=_AuditAdapter(sup),
            on_bad_message=lambda kind: sup.metrics.bad_input.labels(kind=kind).inc())
        self.poller = zmq.Poller()
        self.poller.register(self.server.socket, zmq.POLLIN)
        log.info("control channel on %s", self.server.endpoint)

    def tick(self, sup: Supervisor) -> None:
        while self.poller.poll(0):
            self.server.handle_one()

    def close(self) -> None:
        self.server.close()

    # ------------------------------------------------------------------ commands
    def handle(self, req: ControlRequest) -> dict[str, Any]:
        m = self.sup.metrics
        try:
            result = getattr(self, f"_cmd_{req.cmd}")(req)
        except InspectorError:
            m.control_commands.labels(command=req.cmd, outcome="refused").inc()
            raise
        m.control_commands.labels(command=req.cmd, outcome="ok").inc()
        log.info("control: %s %s by %s", req.cmd, req.args.model_dump(), req.user)
        return result

    def _cmd_status(self, req: ControlRequest) -> dict[str, Any]:
        sup = self.sup
        ok, reasons = sup.readiness()
        st = sup.state.status()
        return {"ready": ok, "reasons": reasons, "paused": st["paused"], "held_by": st["held_by"],
                "counts": dict(sup.ledger.counts), "context": st["context"], "models": st["models"],
                "run_id": sup.run_id, "workers": sup.children.alive_workers(),
                "remote_workers": sorted(sup.remote.seen) if sup.remote is not None else [],
                "acquisition_pid": sup.children.acq.process.pid if sup.children.acq else None}

    def _cmd_pause(self, req: ControlRequest) -> dict[str, Any]:
        return self._set_paused(True)

    def _cmd_resume(self, req: ControlRequest) -> dict[str, Any]:
        return self._set_paused(False)

    def _set_paused(self, paused: bool) -> dict[str, Any]:
        self.sup.state.set_paused(paused)
        self.sup.metrics.paused.set(1 if paused else 0)
        self.sup.broadcast_state()
        return {"paused": paused}

    def _cmd_set_lot(self, req: ControlRequest) -> dict[str, Any]:
        a = req.args
        self.sup.state.set_lot(a.lot, a.recipe)  # a lot without --recipe has no recipe, not the last one's
        return self._context_changed(req)

    def _cmd_set_expected(self, req: ControlRequest) -> dict[str, Any]:
        name = req.args.excipient
        self._check_params("excipient_identity", {"expected": name}, required=False)
        self.sup.state.set_expected(name)
        return self._context_changed(req)

    def _context_changed(self, req: ControlRequest) -> dict[str, Any]:
        sup = self.sup
        ctx = sup.state.context.to_dict()
        sup.broadcast_state()
        sup.recorder.event("lot_change", {**ctx, "by": req.user})
        return {"context": ctx}

    def _cmd_reload_model(self, req: ControlRequest) -> dict[str, Any]:
        name, version = req.args.inspection, req.args.version
        # verify (sha256, classes) here first: a bad model is refused before any worker drops its own
        self._check_params(name, {"version": version}, required=True)
        request_id = uuid.uuid4().hex[:12]
        self.sup.state.model_versions[name] = version  # respawned workers load this version too
        self.sup.broadcast_state()
        self.sup.command("reload", inspection=name, request_id=request_id,
                         **({"version": version} if version else {}))
        return {"inspection": name, "version": version or "latest", "request_id": request_id,
                "workers": len(self.sup.children.workers),
                "note": "workers swap after verifying; see model_reload records"}

    def _check_params(self, inspection: str, update: dict[str, Any], *, required: bool) -> None:
        specs = [s for s in self.sup.cfg.enabled_inspections() if s.name == inspection]
        if not specs:
            if required:
                raise ConfigError(f"inspection {inspection!r} is not running")
            return
        cls = inspection_class(inspection)
        if "version" in update and "version" not in cls.Params.model_fields:
            raise ConfigError(f"inspection {inspection!r} has no model to reload")
        params = validate_inspections(self.sup.cfg)[inspection].model_copy(update=update)
        cls.validate_static(params, self.sup.cfg)
