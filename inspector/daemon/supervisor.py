"""The supervisor (main process): starts acquisition and workers, restarts crashed workers, keeps the
frame ledger, writes the audit trail *before* publishing, exports metrics, drains on SIGTERM."""

from __future__ import annotations

import logging
import multiprocessing as mp
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
from inspector.daemon.acquisition import run_acquisition
from inspector.daemon.endpoints import Endpoints
from inspector.daemon.ledger import Ledger
from inspector.daemon.publisher import Publisher, result_header
from inspector.daemon.recorder import Recorder
from inspector.daemon.worker import run_worker
from inspector.errors import WireError
from inspector.frame import FrameMeta
from inspector.ops.metrics import Metrics
from inspector.transport import wire
from inspector.transport.security import (require_secure_for_tcp, secure_server, security_config,
                                          stop_authenticator)

log = logging.getLogger("inspector.supervisor")
results_log = logging.getLogger("inspector.results")


class Supervisor:
    def __init__(self, cfg: Config, *, metrics: Metrics | None = None):
        self.cfg = cfg
        self.config_sha256 = cfg.sha256()
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.metrics = metrics or Metrics()
        self.ledger = Ledger()
        self.mp = mp.get_context("spawn")
        # numpy's BLAS and ONNX Runtime threads fight on small line PCs: one BLAS thread per process,
        # set before the children are spawned (they import numpy before any of our code runs)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        self._own_runtime = cfg.runtime_dir is None
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="inspector-")) if self._own_runtime else Path(cfg.runtime_dir)
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.ep = Endpoints.in_dir(self.runtime_dir, cfg.transport.frames_endpoint)
        self.cfg_data = cfg.model_dump(mode="json")
        self.acq: Any = None
        self.workers: dict[int, tuple[Any, str]] = {}
        self.generation: dict[int, int] = {}
        self.ready_workers: set[str] = set()
        self.models: dict[str, dict[str, Any]] = {}
        self.camera_up = False
        self.stop_requested = False
        self.source_finished = False  # a finite source (replay, loop: false) ended: drain everything
        self.stopping = False
        self.paused = False
        self.context: dict[str, Any] = cfg.lot_context()
        self.recorder = Recorder(cfg, self.run_id, self.config_sha256, self.metrics)
        self._last_progress = time.monotonic()
        self._finished_out: dict[int, Any] = {}  # frames ended, waiting for earlier ones (in-order release)
        self._next_out = 0
        self._unreleased: list[tuple[int, Any]] = []  # ended frames whose audit records are not yet written
        # hook factories, called once sockets exist: objects with .tick(supervisor) and .close()
        # (health/metrics listener + sd_notify, control channel)
        self.hook_factories: list[Any] = []
        self.hooks: list[Any] = []

    # ------------------------------------------------------------------ lifecycle
    def run(self, duration: float | None = None) -> int:
        # fail before starting anything: inspections/models, and the camera driver's own settings
        # (GenTL producer file, replay folder) — the device itself is opened by the acquisition process
        validate_inspections(self.cfg)
        make_camera(self.cfg.camera, self.cfg.camera_id())
        self.ctx = zmq.Context()
        self.events = self.ctx.socket(zmq.PULL)
        self.events.setsockopt(zmq.MAXMSGSIZE, self.cfg.transport.max_message_bytes)
        self.events.bind(self.ep.events)
        self.commands = self.ctx.socket(zmq.PUB)
        self.commands.setsockopt(zmq.LINGER, 0)
        self.commands.bind(self.ep.commands)
        sec = security_config(self.cfg)
        require_secure_for_tcp(self.cfg.publish.endpoint, sec)
        self.publisher = Publisher(self.ctx, self.cfg.publish.endpoint,
                                   secure=lambda sock: secure_server(sock, sec, self.ctx))
        self.metrics.queue_capacity.set(self.cfg.queue.capacity)
        self.metrics.workers_configured.set(self.cfg.workers)
        self.metrics.declare_camera(self.cfg.camera_id())
        self.metrics.declare_inspections([s.name for s in self.cfg.enabled_inspections()])
        self.recorder.startup()
        self.hooks = [factory(self) for factory in self.hook_factories]
        old_term = signal.signal(signal.SIGTERM, self._on_signal)
        old_int = signal.signal(signal.SIGINT, self._on_signal)
        log.info("run %s: config sha256 %s, %d worker(s), camera %s, publishing on %s", self.run_id,
                 self.config_sha256, self.cfg.workers, self.cfg.camera.driver, self.publisher.endpoint)
        try:
            for i in range(self.cfg.workers):
                self._start_worker(i)
            self._start_acquisition()
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
            self._kill_children()
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

    def _start_worker(self, index: int) -> None:
        gen = self.generation.get(index, -1) + 1
        self.generation[index] = gen
        name = f"w{index}-{gen}"
        p = self.mp.Process(target=run_worker, name=f"inspector-worker-{index}",
                            args=(self.cfg_data, self.ep.to_dict(), name), daemon=True)
        p.start()
        self.workers[index] = (p, name)

    def _start_acquisition(self) -> None:
        # a restarted acquisition process continues the numbering after every id already seen
        first = max([self._next_out, *(i + 1 for i in self.ledger.inflight), *(i + 1 for i in self._finished_out)])
        self.acq = self.mp.Process(target=run_acquisition, name="inspector-acquisition",
                                   args=(self.cfg_data, self.ep.to_dict(), self.run_id, first), daemon=True)
        self.acq.start()

    def command(self, op: str, **fields: Any) -> None:
        self.commands.send(wire.encode_command(op, **fields))

    # ------------------------------------------------------------------ main loop
    def _poll(self, timeout_ms: int) -> None:
        if self.events.poll(timeout_ms):
            # batch: everything already queued, in one audit transaction
            batch = 0
            while batch < 500:
                try:
                    parts = self.events.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_message(parts)
                batch += 1
        self._commit()

    def _commit(self) -> None:
        """Write the pending audit records in one transaction, then release what they cover: nothing
        is published that is not on record, at one fsync per batch rather than per frame."""
        self.recorder.flush()
        pending, self._unreleased = self._unreleased, []
        for frame_id, item in pending:
            self._release(frame_id, item)

    def _on_message(self, parts: list[Any]) -> None:
        try:
            head = wire.decode_header(parts[0].buffer)
            if head["kind"] == "result":
                header, payloads = wire.decode_result(parts)
                self._on_result(header, payloads)
            elif head["kind"] == "event":
                self._on_event(wire.decode_event(parts))
            else:
                raise WireError(f"unexpected {head['kind']!r} message on the events socket")
        except WireError as e:
            self.metrics.bad_input.labels(kind="malformed_message").inc()
            log.error("malformed message from a child process: %s", e)

    def _on_event(self, ev: dict[str, Any]) -> None:
        name = ev["event"]
        m = self.metrics
        if name == "acquired":
            self.ledger.acquired(int(ev["frame_id"]), ev.get("meta") or {})
            m.frames_acquired.labels(camera=str(ev.get("camera", ""))).inc()
            m.last_frame_ts.set(float(ev.get("acquired_at", time.time())))
            m.stage_seconds.labels(stage="acquire").observe(float(ev.get("acquire_s", 0.0)))
            self._last_progress = time.monotonic()
        elif name == "dispatched":
            fid, worker = int(ev["frame_id"]), str(ev["worker"])
            if not self.ledger.dispatched(fid, worker):
                self._lost(fid, "worker_died")
        elif name == "dropped":
            self._dropped(int(ev["frame_id"]), str(ev.get("reason", "unknown")))
        elif name == "stats":
            m.queue_depth.set(int(ev.get("queue_depth", 0)))
        elif name == "camera":
            state = ev.get("state")
            if state == "reconnecting":
                m.camera_reconnects.inc()
            if state == "finished":
                log.info("camera source finished: draining and stopping")
                self.stop_requested = self.source_finished = True
            self.camera_up = state in ("up", "finished")
            m.camera_up.set(1 if self.camera_up else 0)
            self.recorder.event("camera", {"state": state, "error": ev.get("error")})
        elif name == "bad_input":
            m.bad_input.labels(kind=str(ev.get("input_kind", "unknown"))).inc()
            log.warning("bad input (%s): %s", ev.get("input_kind"), ev.get("message"))
            if ev.get("frame_id") is not None:
                self._lost(int(ev["frame_id"]), "malformed_frame")
        elif name == "worker_ready":
            self._on_worker_ready(ev)
        elif name == "model":
            self._on_model_event(ev)

    def _on_worker_ready(self, ev: dict[str, Any]) -> None:
        worker = str(ev.get("worker"))
        if not ev.get("ok"):
            log.error("worker %s could not start: %s", worker, ev.get("error"))
            return
        self.ready_workers.add(worker)
        for insp, info in (ev.get("models") or {}).items():
            if info and self._serve_model(insp, info):
                self.recorder.event("model_load", {"inspection": insp, "model": info, "worker": worker})

    def _serve_model(self, inspection: str, info: dict[str, Any]) -> bool:
        """Record the model an inspection now serves; False if it was already the one."""
        if self.models.get(inspection) == info:
            return False
        self.models[inspection] = info
        self.metrics.set_model(inspection, info["name"], info["version"], info.get("sha256"))
        return True

    def _on_model_event(self, ev: dict[str, Any]) -> None:
        insp = str(ev.get("inspection"))
        if ev.get("ok") and ev.get("model"):
            info = ev["model"]
            self._serve_model(insp, info)
            self.recorder.event("model_reload", {"inspection": insp, "model": info, "worker": ev.get("worker")})
        else:
            self.recorder.event("model_refused", {"inspection": insp, "error": ev.get("error"),
                                                  "worker": ev.get("worker")})

    def _on_result(self, header: dict[str, Any], payloads: list[bytes]) -> None:
        meta: FrameMeta = header["meta"]
        st = self.ledger.finish(meta.frame_id, "inspected", meta.to_dict())
        if st is None:
            log.warning("duplicate result for frame %d ignored", meta.frame_id)
            return
        self.recorder.inspected(meta, header["results"])
        self._unreleased.append((meta.frame_id, (header, payloads)))  # published after _commit()

    def _release(self, frame_id: int, item: tuple[dict[str, Any], list[bytes]] | None) -> None:
        """Publish in frame order: a result waits until every earlier frame has ended (inspected,
        dropped or lost), so the line sees strictly increasing frame ids whatever the worker count."""
        if frame_id < self._next_out:  # cannot happen with consecutive ids; never hold it back
            if item is not None:
                self._publish(*item)
            return
        self._finished_out[frame_id] = item
        while self._next_out in self._finished_out:
            it = self._finished_out.pop(self._next_out)
            if it is not None:
                self._publish(*it)
            self._next_out += 1

    def _publish(self, header: dict[str, Any], payloads: list[bytes]) -> None:
        meta: FrameMeta = header["meta"]
        m = self.metrics
        t0 = time.perf_counter()
        for r in header["results"]:
            self.publisher.result(result_header(meta, r))
            for a in r.get("attachments", []):
                self.publisher.attachment(a["kind"], r["inspection"], a["header"], payloads[a["index"]])
        publish_s = time.perf_counter() - t0
        m.frames_processed.inc()
        m.stage_seconds.labels(stage="publish").observe(publish_s)
        m.stage_seconds.labels(stage="queue").observe(float(header.get("queue_s", 0.0)))
        for r in header["results"]:
            m.results.labels(inspection=r["inspection"], verdict=r["verdict"]).inc()
            for stage, secs in (r.get("stages") or {}).items():
                if stage in ("preprocess", "infer", "gradcam"):
                    m.stage_seconds.labels(stage=stage).observe(float(secs))
            if isinstance(remote := (r.get("detail") or {}).get("remote"), dict):  # Triton round trip / failure
                m.observe_remote(r["inspection"], remote)
        m.frame_latency.observe(max(0.0, time.time() - meta.acquired_at))
        self._last_progress = time.monotonic()
        if self.cfg.log.results:
            results_log.info("frame %d %s %s (%.1f ms)", meta.frame_id, f"[{meta.source}]" if meta.source else "",
                             " ".join(_summary(r) for r in header["results"]),
                             (time.time() - meta.acquired_at) * 1000)

    def _dropped(self, frame_id: int, reason: str) -> None:
        st = self.ledger.finish(frame_id, "dropped")
        if st is None:
            return
        self.metrics.frames_dropped.labels(reason=reason).inc()
        self.recorder.not_inspected(st, "dropped", reason)
        self._unreleased.append((frame_id, None))

    def _lost(self, frame_id: int, reason: str) -> None:
        st = self.ledger.finish(frame_id, "lost")
        if st is None:
            return
        self.metrics.frames_lost.labels(reason=reason).inc()
        self.recorder.not_inspected(st, "lost", reason)
        self._unreleased.append((frame_id, None))
        log.warning("frame %d lost (%s)", frame_id, reason)

    def _check_children(self) -> None:
        for index, (p, name) in list(self.workers.items()):
            if p.exitcode is None:
                continue
            if self.stopping:
                continue
            # results it sent before dying are already queued: read them before declaring frames lost
            self._poll(0)
            log.error("worker %s exited with code %s; restarting", name, p.exitcode)
            self.ready_workers.discard(name)
            self.command("worker_gone", worker=name)
            for st in self.ledger.worker_died(name):
                self._lost(st.frame_id, "worker_died")
            self._commit()
            self.metrics.worker_restarts.inc()
            self.recorder.event("worker_restart", {"worker": name, "exitcode": p.exitcode})
            if p.exitcode == 3:  # could not load its inspections: do not spin
                time.sleep(min(5.0, self.cfg.supervisor.restart_backoff_s * 10))
            elif self.cfg.supervisor.restart_backoff_s:
                time.sleep(self.cfg.supervisor.restart_backoff_s)
            self._start_worker(index)
        if self.acq is not None and self.acq.exitcode is not None and not self.stopping:
            log.error("acquisition process exited with code %s; restarting it", self.acq.exitcode)
            self.camera_up = False
            self.metrics.camera_up.set(0)
            self._poll(0)
            for st in self.ledger.outstanding():
                if st.worker is None:  # still in the dead process's queue
                    self._lost(st.frame_id, "acquisition_died")
            self._commit()
            self._start_acquisition()

    def _workers_ready(self) -> int:
        return sum(1 for p, n in self.workers.values() if p.exitcode is None and n in self.ready_workers)

    def _tick(self) -> None:
        self.recorder.maybe_apply_retention()
        self.metrics.workers_up.set(self._workers_ready())
        ok, _ = self.readiness()
        self.metrics.ready.set(1 if ok else 0)
        for hook in self.hooks:
            hook.tick(self)

    # ------------------------------------------------------------------ readiness
    def readiness(self) -> tuple[bool, list[str]]:
        reasons = []
        if not self.camera_up:
            reasons.append("camera not open")
        alive = self._workers_ready()
        if alive < self.cfg.workers:
            reasons.append(f"{alive}/{self.cfg.workers} workers ready (models loaded)")
        if self.stopping:
            reasons.append("shutting down")
        return (not reasons, reasons)

    def frames_flowing(self, within_s: float) -> bool:
        return time.monotonic() - self._last_progress < within_s

    # ------------------------------------------------------------------ shutdown
    def _shutdown(self) -> None:
        self.stopping = True
        drain = self.cfg.supervisor.drain_timeout_s
        if self.source_finished:  # nothing new is coming: inspect every queued frame
            drain = max(drain, 600.0)
        deadline = time.monotonic() + drain
        self.command("stop", target="acquisition", drain_s=drain * 0.6)
        while self.acq is not None and self.acq.is_alive() and time.monotonic() < deadline:
            self._poll(50)
            self.command("stop", target="acquisition", drain_s=max(0.1, deadline - time.monotonic()) * 0.6)
            self.acq.join(0.05)
        while self.ledger.outstanding() and time.monotonic() < deadline:
            self._poll(50)
        self._poll(0)
        for st in self.ledger.outstanding():
            self._lost(st.frame_id, "shutdown")
        self.command("stop", target="workers")
        for p, _ in self.workers.values():
            p.join(max(0.1, deadline + 2 - time.monotonic()))
        for p, _ in [*self.workers.values(), (self.acq, "acq")]:
            if p is not None and p.is_alive():
                p.terminate()
                p.join(1)
        self._poll(0)
        self.recorder.shutdown(self.ledger.counts)

    def _kill_children(self) -> None:
        for p in [*(p for p, _ in self.workers.values()), self.acq]:
            if p is not None and p.is_alive():
                p.kill()
                p.join(2)

    def _close(self) -> None:
        for hook in self.hooks:
            if hasattr(hook, "close"):
                hook.close()
        for name in ("publisher",):
            if hasattr(self, name):
                getattr(self, name).close()
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


def _summary(r: dict[str, Any]) -> str:
    scores = r.get("scores") or {}
    shown = ",".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(scores.items())[:3])
    extra = r.get("detail", {}).get("identity")
    return f"{r['inspection']}={r['verdict']}" + (f"[{extra}]" if extra else "") + (f"({shown})" if shown else "")
