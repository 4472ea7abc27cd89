"""The supervisor (main process): owns the run state, starts and restarts the children, accounts
for every frame, writes the audit trail *before* publishing, exports metrics, drains on SIGTERM.

Processes and who owns what::

    supervisor  run state (lot context, pause, next frame id, served models), ledger, audit, PUB,
                metrics, health, control channel
    acquisition camera thread + bounded queue + ROUTER (one generation per incarnation)
    worker × N  inspections; one frame at a time (credit 1)

A child gets a snapshot of the run state when it is spawned and every change as a ``state``
command (re-sent every second, so a child that subscribed late catches up). Any single process can
die — the acquisition process, a worker, several at once — and inspection resumes: frames the dead
process held end ``lost`` with the reason, never silently.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import zmq

from inspector.acquisition import make_camera
from inspector.config import Config, validate_inspections
from inspector.daemon.children import Children
from inspector.daemon.endpoints import Endpoints
from inspector.daemon.health import Health, readiness_reasons
from inspector.daemon.ledger import Ledger
from inspector.daemon.drift import LotDrift
from inspector.daemon.outcomes import Outcomes
from inspector.daemon.proc import set_title
from inspector.daemon.publisher import Publisher
from inspector.daemon.recorder import Recorder
from inspector.daemon.remote import RemoteWorkers
from inspector.daemon.runstate import RunState
from inspector.errors import WireError
from inspector.ops.metrics import Metrics
from inspector.transport import wire
from inspector.transport.messages import Command, Event, Result
from inspector.transport.security import (require_secure_for_tcp, secure_server, security_config,
                                          stop_authenticator)

log = logging.getLogger("inspector.supervisor")

STATE_RESEND_S = 1.0


class Supervisor:
    def __init__(self, cfg: Config, *, metrics: Metrics | None = None):
        self.cfg = cfg
        self.config_sha256 = cfg.sha256()
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.metrics = metrics or Metrics()
        self.state = RunState.from_config(cfg, self.run_id)
        self.ledger = Ledger()
        self.health = Health(cfg.supervisor.stall_timeout_s, self.metrics)
        # numpy's BLAS and ONNX Runtime threads fight on small line PCs: one BLAS thread per process,
        # set before the children are spawned (they import numpy before any of our code runs)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        self._own_runtime = cfg.runtime_dir is None
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="inspector-")) if self._own_runtime else Path(cfg.runtime_dir)
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.ep = Endpoints.in_dir(self.runtime_dir, cfg.transport.frames_endpoint, cfg.transport.remote_listen)
        self.cfg_data = cfg.model_dump(mode="json")
        self.children = Children(cfg.workers, self.cfg_data, self.ep.to_dict(), self.state.snapshot)
        self.ready_workers: set[str] = set()
        self.camera_up = False
        self.stop_requested = False
        self.source_finished = False  # a finite source (replay, loop: false) ended: drain everything
        self.stopping = False
        self.recorder = Recorder(cfg, self.run_id, self.config_sha256, self.metrics)
        self.outcomes: Outcomes | None = None
        self._model_inspections: list[str] = []
        self.remote: RemoteWorkers | None = None
        self._acq_heard = time.monotonic()
        self._acq_backoff = 0.0
        self._acq_ready_gen = -1
        self._last_state_sent = 0.0
        # hook factories, called once sockets exist: objects with .tick(supervisor) and .close()
        # (health/metrics listener + sd_notify, control channel, line integration)
        self.hook_factories: list[Any] = []
        self.hooks: list[Any] = []

    # ------------------------------------------------------------------ compatibility views
    @property
    def paused(self) -> bool:
        return self.state.paused

    @property
    def context(self) -> dict[str, Any]:
        return self.state.context.to_dict()

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        return self.state.models

    # ------------------------------------------------------------------ lifecycle
    def run(self, duration: float | None = None) -> int:
        set_title("supervisor")
        # fail before starting anything: inspections/models, and the camera driver's own settings
        # (GenTL producer file, replay folder) — the device itself is opened by the acquisition process
        validate_inspections(self.cfg)
        self._model_inspections = [s.name for s in self.cfg.enabled_inspections() if _has_model(s.name)]
        make_camera(self.cfg.camera, self.cfg.camera_id())
        # a full disk must fail a write with an error we handle, not kill the process (SIGXFSZ)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self.ctx = zmq.Context()
        self.events = self.ctx.socket(zmq.PULL)
        self.events.setsockopt(zmq.MAXMSGSIZE, self.cfg.transport.max_message_bytes)
        self.events.bind(self.ep.events)
        self.commands = self.ctx.socket(zmq.PUB)
        self.commands.setsockopt(zmq.LINGER, 0)
        self.commands.bind(self.ep.commands)
        self.remote = RemoteWorkers(self, self.ep.remote) if self.ep.remote else None
        self._inputs = zmq.Poller()
        for sock in (self.events, *((self.remote.events,) if self.remote else ())):
            self._inputs.register(sock, zmq.POLLIN)
        sec = security_config(self.cfg)
        require_secure_for_tcp(self.cfg.publish.endpoint, sec)
        self.publisher = Publisher(self.ctx, self.cfg.publish.endpoint,
                                   secure=lambda sock: secure_server(sock, sec, self.ctx))
        self.outcomes = Outcomes(self.ledger, self.recorder, self.publisher, self.metrics,
                                 log_results=self.cfg.log.results)
        self.lot_drift = LotDrift(self.cfg.models_path(), self.recorder, self.metrics)
        self.outcomes.listeners.append(self.lot_drift)
        self.metrics.queue_capacity.set(self.cfg.queue.capacity)
        self.metrics.workers_configured.set(self.cfg.workers)
        self.metrics.declare_camera(self.cfg.camera_id())
        self.metrics.declare_inspections([s.name for s in self.cfg.enabled_inspections()])
        self.recorder.startup()
        old_term = signal.signal(signal.SIGTERM, self._on_signal)
        old_int = signal.signal(signal.SIGINT, self._on_signal)
        try:
            self.hooks = []
            for factory in self.hook_factories:
                self.hooks.append(factory(self))
            for hook in self.hooks:  # line integration: every published frame, after its audit record
                if hasattr(hook, "on_published"):
                    self.outcomes.listeners.append(functools.partial(hook.on_published, self))
            log.info("run %s: config sha256 %s, %d worker(s), camera %s, publishing on %s", self.run_id,
                     self.config_sha256, self.cfg.workers, self.cfg.camera.driver, self.publisher.endpoint)
            for i in range(self.cfg.workers):
                self.children.start_worker(i)
            self.children.start_acquisition()
            # --duration counts from readiness (start-up of workers and models is not inspection
            # time), with a hard cap in case the daemon never becomes ready
            started = time.monotonic()
            end = None
            while not self.stop_requested:
                self._poll(100)
                self._check_children()
                self._tick()
                if duration:
                    now = time.monotonic()
                    if end is None and (self.readiness()[0] or now - started > 120):
                        end = now + duration
                    if end is not None and now >= end:
                        log.info("duration of %.1f s reached", duration)
                        break
            self._shutdown()
        except BaseException:
            self.children.kill_all()
            raise
        finally:
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGINT, old_int)
            self._close()
        c = self.ledger.counts
        log.info("stopped: acquired %d, inspected %d, dropped %d, lost %d", c["acquired"], c["inspected"],
                 c["dropped"], c["lost"])
        return 0

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("received %s: draining", signal.Signals(signum).name)
        self.stop_requested = True

    def command(self, op: str, **fields: Any) -> None:
        msg = Command(op, fields).to_wire()
        self.commands.send(msg)
        if self.remote is not None:
            self.remote.commands.send(msg)

    def broadcast_state(self) -> None:
        """Every child replaces its copy of the run state with this snapshot."""
        self.command("state", state=self.state.snapshot())
        self._last_state_sent = time.monotonic()

    # ------------------------------------------------------------------ main loop
    def _poll(self, timeout_ms: int) -> bool:
        ready = dict(self._inputs.poll(timeout_ms))
        for sock in ready:
            # batch: everything already queued, in one audit transaction
            for _ in range(500):
                try:
                    parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_message(parts)
        self.outcomes.commit()
        return bool(ready)

    def _drain(self) -> None:
        """Read everything the children already sent (before declaring anything lost)."""
        for _ in range(100):
            if not self._poll(0):
                break
        self.outcomes.commit()

    def _on_message(self, parts: list[Any]) -> None:
        try:
            kind = wire.decode_header(parts[0].buffer)["kind"]
            if kind == "result":
                self._on_result(Result.from_wire(parts))
            elif kind == "event":
                self._on_event(Event.from_wire(parts))
            else:
                raise WireError(f"unexpected {kind!r} message on the events socket")
        except WireError as e:
            self.metrics.bad_input.labels(kind="malformed_message").inc()
            log.error("malformed message from a child process: %s", e)

    def _on_event(self, ev: Event) -> None:
        name, m = ev.name, self.metrics
        if ev.get("generation") == self.children.acq_generation:
            self._acq_heard = time.monotonic()  # it reports stats every 0.5 s: a heartbeat
        if name == "acquired":
            fid = ev["frame_id"]
            self.ledger.acquired(fid, ev["meta"])
            self.state.frame_seen(fid)
            self.health.on_acquired()
            m.frames_acquired.labels(camera=ev["camera"]).inc()
            m.last_frame_ts.set(float(ev["acquired_at"]))
            m.stage_seconds.labels(stage="acquire").observe(float(ev.get("acquire_s") or 0.0))
        elif name == "dispatched":
            fid, worker = ev["frame_id"], ev["worker"]
            if not self.ledger.dispatched(fid, worker, ev["generation"]):
                self.outcomes.lost(fid, "worker_died")
        elif name == "dropped":
            self.outcomes.dropped(ev["frame_id"], ev["reason"])
        elif name == "stats":
            if ev.get("generation") == self.children.acq_generation:
                m.queue_depth.set(ev["queue_depth"])
        elif name == "camera":
            self._on_camera(ev)
        elif name == "bad_input":
            m.bad_input.labels(kind=ev["input_kind"]).inc()
            log.warning("bad input (%s): %s", ev["input_kind"], ev["message"])
            if ev.get("frame_id") is not None:
                self.outcomes.lost(int(ev["frame_id"]), "malformed_frame")
        elif name == "broker_ready":
            if ev["generation"] == self.children.acq_generation:
                self._acq_ready_gen = ev["generation"]
                self.command("broker_started", generation=ev["generation"])
                self.broadcast_state()
        elif name == "worker_idle":
            for st in self.ledger.in_transit(ev["worker"], ev["generation"]):
                self.outcomes.lost(st.frame_id, "in_transit")
        elif name == "worker_heartbeat":
            if self.remote is not None and not self.remote.heard(ev["worker"]):
                self.command("worker_gone", worker=ev["worker"])  # declared gone: it must re-register
        elif name == "worker_ready":
            if self.remote is not None and self.remote.is_remote(ev["worker"]):
                self.remote.heard(ev["worker"])
            self._on_worker_ready(ev)
        elif name == "model":
            self._on_model_event(ev)

    def _on_camera(self, ev: Event) -> None:
        if ev.get("generation") not in (None, self.children.acq_generation):
            return  # a dead incarnation's last words
        state = ev["state"]
        if state == "reconnecting":
            self.metrics.camera_reconnects.inc()
        if state == "finished":
            log.info("camera source finished: draining and stopping")
            self.stop_requested = self.source_finished = True
        up = state in ("up", "finished")
        if up != self.camera_up or state not in ("up", "down"):
            self.recorder.event("camera", {"state": state, "error": ev.get("error")})
        self.camera_up = up
        self.metrics.camera_up.set(1 if up else 0)

    def _on_worker_ready(self, ev: Event) -> None:
        worker = ev["worker"]
        if not ev["ok"]:
            log.error("worker %s could not start: %s", worker, ev.get("error"))
            return
        self.ready_workers.add(worker)
        for insp, info in (ev.get("models") or {}).items():
            if info and self._serve_model(insp, info):
                self.recorder.event("model_load", {"inspection": insp, "model": info, "worker": worker})

    def _serve_model(self, inspection: str, info: dict[str, Any]) -> bool:
        if not self.state.serve_model(inspection, info):
            return False
        self.metrics.set_model(inspection, info["name"], info["version"], info.get("sha256"))
        return True

    def _on_model_event(self, ev: Event) -> None:
        insp = ev["inspection"]
        if ev["ok"] and ev.get("model"):
            info = ev["model"]
            self._serve_model(insp, info)
            self.recorder.event("model_reload", {"inspection": insp, "model": info, "worker": ev["worker"]})
        else:
            self.recorder.event("model_refused", {"inspection": insp, "error": ev.get("error"),
                                                  "worker": ev["worker"]})

    def _on_result(self, res: Result) -> None:
        fid = res.meta.frame_id
        st = self.ledger.inflight.get(fid)
        if st is not None and st.meta and abs(float(st.meta.get("acquired_at", 0)) - res.meta.acquired_at) > 1e-6:
            # two frames with one id: cannot happen with one owner of the numbering; never merge them
            self.metrics.bad_input.labels(kind="conflicting_result").inc()
            log.error("result for frame %d does not match the acquired frame of that id; not recorded as it", fid)
            self.recorder.event("camera", {"state": "conflicting_result", "error": f"frame {fid}"})
            return
        self.state.frame_seen(fid)
        if self.outcomes.inspected(res):
            self.health.on_inspected()

    # ------------------------------------------------------------------ children
    def _check_children(self) -> None:
        if self.stopping:
            return
        backoff = self.cfg.supervisor.restart_backoff_s
        for index, child in self.children.exited_workers():
            self._drain()  # results it sent before dying are queued: read them before declaring losses
            code = child.process.exitcode
            log.error("worker %s exited with code %s; restarting", child.name, code)
            self.ready_workers.discard(child.name)
            self.command("worker_gone", worker=child.name)
            for st in self.ledger.worker_died(child.name):
                self.outcomes.lost(st.frame_id, "worker_died")
            self.metrics.worker_restarts.inc()
            self.recorder.event("worker_restart", {"worker": child.name, "exitcode": code})
            # exit code 3: it could not load its inspections — do not spin
            self.children.schedule(f"w{index}", min(5.0, backoff * 10) if code == 3 else backoff)
        for name in self.remote.expired() if self.remote is not None else ():
            log.error("remote worker %s silent for %.1f s: gone", name, self.remote.timeout_s)
            self.ready_workers.discard(name)
            self.command("worker_gone", worker=name)
            for st in self.ledger.worker_died(name):
                self.outcomes.lost(st.frame_id, "remote_worker_gone")
            self.recorder.event("worker_restart", {"worker": name, "exitcode": None, "remote": True})
        if self.children.acquisition_exited():
            self._drain()
            code = self.children.acq.process.exitcode
            log.error("acquisition process exited with code %s; restarting it", code)
            self.camera_up = False
            self.metrics.camera_up.set(0)
            self.metrics.acquisition_restarts.inc()
            for fid in self.ledger.acquisition_gone():
                log.warning("frame %d was inspected but its acquired event died with the process", fid)
            for st in self.ledger.outstanding():
                if st.worker is None:  # still in the dead process's queue
                    self.outcomes.lost(st.frame_id, "acquisition_died")
            # frames it had sent to workers end when each worker reports idle to the new generation
            self.recorder.event("camera", {"state": "acquisition_restart", "error": f"exit code {code}"})
            self.health.on_idle()
            # one that keeps failing right after its start is restarted ever more slowly (≤ 5 s); one
            # killed by a signal (OOM killer, an operator) comes back at once
            lived = time.monotonic() - self.children.acq.started
            crash_loop = code is not None and code > 0 and lived < 10
            self._acq_backoff = min(5.0, max(backoff, self._acq_backoff * 2, 0.1)) if crash_loop else backoff
            self.children.schedule("acq", self._acq_backoff)
        self.outcomes.commit()
        for key in self.children.due():
            if key == "acq":
                self.children.start_acquisition()
            else:
                self.children.start_worker(int(key[1:]))

    def _workers_ready(self) -> int:
        return sum(1 for c in self.children.workers.values()
                   if c.process.exitcode is None and c.name in self.ready_workers)

    def _tick(self) -> None:
        self.recorder.maybe_apply_retention()
        self.metrics.workers_up.set(self._workers_ready())
        # an audit store that refuses writes holds acquisition: nothing new piles up unpublished
        if self.state.set_hold("audit store refuses writes" if self.recorder.failure else None):
            log.warning("acquisition %s", "held: the audit store refuses writes" if self.state.held_by
                        else "resumed: the audit store accepts writes again")
            self.broadcast_state()
        flowing = (self.camera_up and self.children.acquisition_running() and self.state.acquiring
                   and self._workers_ready() == self.cfg.workers and not self.stopping)
        self.health.check(armed=flowing)
        ok, _ = self.readiness()
        self.metrics.ready.set(1 if ok else 0)
        if time.monotonic() - self._last_state_sent > STATE_RESEND_S:
            self.broadcast_state()
            self.command("broker_started", generation=max(0, self.children.acq_generation))
        for hook in self.hooks:
            hook.tick(self)

    # ------------------------------------------------------------------ readiness
    def readiness(self) -> tuple[bool, list[str]]:
        reasons = readiness_reasons(self)
        return (not reasons, reasons)

    # ------------------------------------------------------------------ shutdown
    def _shutdown(self) -> None:
        self.stopping = True
        drain = self.cfg.supervisor.drain_timeout_s
        if self.source_finished:  # nothing new is coming: inspect every queued frame
            drain = max(drain, 600.0)
        deadline = time.monotonic() + drain
        acq = self.children.acq.process if self.children.acq else None
        self.command("stop", target="acquisition", drain_s=drain * 0.6)
        while acq is not None and acq.is_alive() and time.monotonic() < deadline:
            self._poll(50)
            self.command("stop", target="acquisition", drain_s=max(0.1, deadline - time.monotonic()) * 0.6)
            acq.join(0.05)
        while self.ledger.outstanding() and time.monotonic() < deadline:
            self._poll(50)
        self._drain()
        for st in self.ledger.outstanding():
            self.outcomes.lost(st.frame_id, "shutdown")
        self.command("stop", target="workers")
        for c in self.children.workers.values():
            c.process.join(max(0.1, deadline + 2 - time.monotonic()))
        for p in self.children.all_processes():
            if p.is_alive():
                p.terminate()
                p.join(1)
        self._drain()
        self.lot_drift.close("shutdown")  # the running lot's lot_summary: the daemon stops mid-lot
        self.recorder.shutdown(self.ledger.counts)
        if not self.outcomes.commit():
            log.error("stopping with %d decision(s) unpublished: the audit store refuses writes (%s)",
                      self.outcomes.held, self.recorder.failure)

    def _close(self) -> None:
        for hook in self.hooks:
            if hasattr(hook, "close"):
                hook.close()
        if hasattr(self, "publisher"):
            self.publisher.close()
        if getattr(self, "remote", None) is not None:
            self.remote.close()
        for name in ("events", "commands"):
            if hasattr(self, name):
                getattr(self, name).close(0)
        try:
            self.recorder.close()
        except Exception as e:  # already failing: report, do not mask the first error
            log.error("closing the audit store: %s", e)
        if hasattr(self, "ctx"):
            stop_authenticator(self.ctx)  # the ZAP thread holds a socket: term() would wait for it
            self.ctx.term()
        if self._own_runtime:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)


def _has_model(inspection: str) -> bool:
    """Inspections that serve a model from the repository (the quality gate has none)."""
    from inspector.inspections import inspection_class

    try:
        return "version" in inspection_class(inspection).Params.model_fields
    except Exception:
        return False
