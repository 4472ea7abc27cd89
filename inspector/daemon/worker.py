"""Worker process: asks the acquisition broker for a frame, runs the configured inspections in order,
pushes one result message per frame to the supervisor, asks for the next frame.

One frame in flight per worker (credit 1), so when a worker dies the supervisor knows exactly which
frame it held. A failing inspection yields verdict ``error`` for that frame; it never kills the worker.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

import cv2
import zmq

from inspector.config import Config, validate_inspections
from inspector.daemon.endpoints import Endpoints
from inspector.errors import BadFrameError, InspectorError, WireError
from inspector.frame import Frame
from inspector.inspections import inspection_class
from inspector.inspections.base import Inspection, InspectionContext, InspectionResult
from inspector.daemon.proc import ParentWatch, child_setup
from inspector.daemon.thumbnail import thumbnail
from inspector.transport import wire
from inspector.transport.messages import AttachmentRef, Command, Decision, Ready, Result, event

log = logging.getLogger("inspector.worker")


def build_inspections(cfg: Config, worker: str) -> list[Inspection]:
    params = validate_inspections(cfg)
    from inspector.audit.settings import gradcam_dir

    ctx = InspectionContext(state_dir=cfg.state_path(), models_dir=cfg.models_path(),
                            log=logging.getLogger(f"inspector.inspection.{worker}"), worker=worker,
                            gradcam_dir=gradcam_dir(cfg))
    return [inspection_class(s.name)(params[s.name], ctx) for s in cfg.enabled_inspections()]


def run_inspections(inspections: list[Inspection], frame: Frame) -> tuple[list[Decision], list[bytes]]:
    """Run every inspection on the frame; the quality gate (if first and rejecting) skips the rest."""
    decisions: list[Decision] = []
    payloads: list[bytes] = []
    gated_by: str | None = None
    for insp in inspections:
        t0 = time.perf_counter()
        if gated_by is not None:
            res = InspectionResult("reject", reason="image_quality", detail={"gated_by": gated_by})
        else:
            try:
                res = insp.inspect(frame)
            except BadFrameError as e:
                res = InspectionResult("error", reason=e.kind, detail={"error": str(e)})
            except Exception as e:  # an inspection bug must not take the line down
                log.exception("inspection %s failed on frame %d", insp.name, frame.meta.frame_id)
                res = InspectionResult("error", reason="internal", detail={"error": f"{type(e).__name__}: {e}"})
        elapsed = time.perf_counter() - t0
        if res.verdict == "reject" and gated_by is None and res.detail.get("gate"):
            gated_by = insp.name
        refs = []
        for a in res.attachments:
            refs.append(AttachmentRef(a.kind, a.header, len(payloads)))
            payloads.append(a.payload)
        info = insp.model_info()
        decisions.append(Decision(
            inspection=insp.name, verdict=res.verdict, reason=res.reason_code(), scores=res.scores,
            detail=res.detail, stages=res.stages, model=info.to_dict() if info else None,
            latency_ms=round(elapsed * 1000, 3), attachments=refs))
    return decisions, payloads


def run_worker(cfg_data: dict[str, Any], endpoints: dict[str, str], worker: str, snapshot: dict[str, Any],
               generation: int, parent_pid: int) -> None:
    """Process entry point (spawned by the supervisor). ``snapshot`` is the run state at spawn time
    (model versions set by hot reloads); ``generation`` that of the acquisition process running then."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # see acquisition.run_acquisition
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # the local workers share this host's cores: OpenCV's own thread pool in each would oversubscribe them
    cv2.setNumThreads(max(1, (os.cpu_count() or 1) // max(1, int(cfg_data.get("workers") or 1))))
    child_setup(f"worker {worker.split('-')[0].lstrip('w')}", parent_pid)
    logging.basicConfig(level=cfg_data.get("log", {}).get("level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ep = Endpoints(**endpoints)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(ep.events)
    try:
        cfg = Config(**with_model_versions(cfg_data, snapshot.get("model_versions") or {}))
        inspections = build_inspections(cfg, worker)
    except InspectorError as e:
        push.send_multipart(event("worker_ready", worker=worker, ok=False, error=str(e)))
        push.close()
        ctx.term()
        raise SystemExit(3) from None
    models = {i.name: (m.to_dict() if (m := i.model_info()) else None) for i in inspections}
    push.send_multipart(event("worker_ready", worker=worker, ok=True, models=models))
    _Loop(cfg, ep, ctx, push, worker, inspections, generation, parent_pid).run()


def run_remote_worker(cfg: Config, connect: str, name: str) -> int:
    """``inspector worker --connect tcp://HOST:PORT``: the configured inspections on this host, fed by
    the daemon on HOST (frames on PORT, results on PORT+1, commands on PORT+2). With CURVE keys in
    ``security:`` the daemon's public key is pinned (``curve_server_public_key_file``) and this
    worker's key (``curve_client_secret_key_file``) must be on the daemon's allow-list."""
    from inspector.daemon.proc import set_title
    from inspector.transport.security import secure_client, security_config

    sec = security_config(cfg)
    ep = Endpoints.for_remote_worker(connect)
    set_title(f"remote worker {name} -> {connect}")
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    secure_client(push, sec)
    push.connect(ep.events)
    try:
        inspections = build_inspections(cfg, name)
    except InspectorError as e:
        push.send_multipart(event("worker_ready", worker=name, ok=False, error=str(e)))
        push.close()
        ctx.term()
        raise
    models = {i.name: (m.to_dict() if (m := i.model_info()) else None) for i in inspections}
    push.send_multipart(event("worker_ready", worker=name, ok=True, models=models))
    log.info("remote worker %s connected to %s; waiting for frames", name, connect)
    loop = _Loop(cfg, ep, ctx, push, name, inspections, -1, None, secure=lambda sock: secure_client(sock, sec))
    loop.run()
    return loop.exit_code


def with_model_versions(cfg_data: dict[str, Any], versions: dict[str, str | None]) -> dict[str, Any]:
    """The configuration with the model versions the run state serves (hot reloads) applied."""
    if not versions:
        return cfg_data
    specs = []
    for spec in cfg_data.get("inspections", []):
        if spec.get("name") in versions:
            spec = {**spec, "params": {**(spec.get("params") or {}), "version": versions[spec["name"]]}}
        specs.append(spec)
    return {**cfg_data, "inspections": specs}


class _Loop:
    """Credit-based: at most one frame in flight. A credit is for one acquisition generation; when a
    new acquisition process announces itself (``broker_started``), the worker finishes what it holds,
    tells the supervisor it is idle (so frames lost in transit with the old process can be declared
    lost), and sends a credit to the new one."""

    def __init__(self, cfg: Config, ep: Endpoints, ctx: zmq.Context, push: zmq.Socket, worker: str,
                 inspections: list[Inspection], generation: int, parent_pid: int | None, *,
                 secure: Any = None):
        self.cfg, self.ctx, self.push, self.worker, self.inspections = cfg, ctx, push, worker, inspections
        self.dealer = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.IDENTITY, worker.encode())
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.MAXMSGSIZE, cfg.transport.max_message_bytes)
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        if secure is not None:
            secure(self.dealer)
            secure(self.sub)
        self.dealer.connect(ep.frames)
        self.sub.connect(ep.commands)
        # a local worker watches its supervisor; a remote one says it is alive instead
        self.parent = ParentWatch(parent_pid) if parent_pid is not None else None
        self.remote = parent_pid is None
        self.exit_code = 0
        self._beat = 0.0
        from inspector.line.settings import operator_config

        op = operator_config(cfg)
        self.thumbnail_px = op.thumbnail_px if op.enabled and cfg.metrics.enabled else 0
        self.generation = generation        # the newest acquisition generation we know of
        self.credit: int | None = None      # generation our outstanding credit is for

    def _grant(self) -> None:
        self.dealer.send(Ready(self.generation).to_wire())
        self.credit = self.generation

    def run(self) -> None:
        if self.generation >= 0:  # a remote worker learns the generation from the next broadcast
            self._grant()
        poller = zmq.Poller()
        poller.register(self.dealer, zmq.POLLIN)
        poller.register(self.sub, zmq.POLLIN)
        try:
            while True:
                socks = dict(poller.poll(500))
                # frames first: one sent by a dead acquisition process is still inspected before this
                # worker reports itself idle to its successor
                if self.dealer in socks:
                    self._on_frame(self.dealer.recv_multipart(copy=False))
                if self.sub in socks and self._on_command():
                    return
                if self.parent is not None and self.parent.gone():  # where PR_SET_PDEATHSIG is unavailable
                    log.error("supervisor exited; worker %s stops", self.worker)
                    return
                if self.remote and time.monotonic() - self._beat >= 1.0:
                    self.push.send_multipart(event("worker_heartbeat", worker=self.worker))
                    self._beat = time.monotonic()
        finally:
            for i in self.inspections:
                i.close()
            self.dealer.close(0)
            self.sub.close(0)
            self.push.close()
            self.ctx.term()

    def _on_frame(self, parts: list[Any]) -> None:
        received = time.time()
        gen = _generation_of(parts[0]) if parts else None
        if gen == self.credit:
            self.credit = None  # the credit was used; a frame from an older broker does not use it
        try:
            frame = wire.decode_frame(parts[1:], max_bytes=self.cfg.transport.max_message_bytes)
        except WireError as e:
            fid = _frame_id_or_none(parts[1:])
            self.push.send_multipart(event("bad_input", input_kind="malformed_frame", frame_id=fid,
                                           worker=self.worker, message=str(e)))
        else:
            decisions, payloads = run_inspections(self.inspections, frame)
            queue_s = max(0.0, received - frame.meta.acquired_at)
            thumb = None
            if self.thumbnail_px:  # for the operator page only: never published on the line PUB
                try:
                    made = thumbnail(frame, self.thumbnail_px)
                except cv2.error as e:  # the page misses one picture; the result still goes out
                    log.warning("no thumbnail for frame %d: %s", frame.meta.frame_id, e)
                    made = None
                if made is not None:
                    thumb = AttachmentRef("thumbnail", made[0], len(payloads))
                    payloads.append(made[1])
            self.push.send_multipart(Result(frame.meta, self.worker, decisions, payloads, queue_s,
                                            thumbnail=thumb).to_wire(), copy=False)
        if self.credit is None:
            self._grant()

    def _on_command(self) -> bool:
        try:
            cmd = Command.from_wire(self.sub.recv())
        except WireError as e:
            log.error("ignoring malformed command: %s", e)
            return False
        if cmd.op == "stop":
            return cmd.get("target") in (None, "workers", "all")
        if cmd.op == "worker_gone" and cmd.fields["worker"] == self.worker:
            log.error("the daemon declared worker %s gone (silent too long); exiting to re-register", self.worker)
            self.exit_code = 1
            return True
        if cmd.op == "broker_started":
            gen = int(cmd.fields["generation"])
            if gen > self.generation:
                self.generation = gen
                # results of every frame this worker received are already queued ahead on the same pipe
                self.push.send_multipart(event("worker_idle", worker=self.worker, generation=gen))
                self._grant()
        elif cmd.op == "reload":
            self._reload(cmd.fields["inspection"], cmd.get("version"), cmd.fields["request_id"])
        return False

    def _reload(self, name: str, version: str | None, request_id: str) -> None:
        for insp in self.inspections:
            if insp.name != name:
                continue
            try:
                info = insp.reload(version)
                self.push.send_multipart(event("model", worker=self.worker, inspection=name, ok=True,
                                               request_id=request_id, model=info.to_dict() if info else None))
            except InspectorError as e:  # refused: the previous model stays in service
                self.push.send_multipart(event("model", worker=self.worker, inspection=name, ok=False,
                                               request_id=request_id, error=str(e)))
            return


def _generation_of(part: Any) -> int | None:
    try:
        return int(bytes(part.buffer if hasattr(part, "buffer") else part))
    except (TypeError, ValueError):
        return None


def _frame_id_or_none(parts: list[Any]) -> int | None:
    try:
        return int(wire.decode_header(parts[0].buffer if hasattr(parts[0], "buffer") else parts[0])
                   ["meta"]["frame_id"])
    except Exception:
        return None
