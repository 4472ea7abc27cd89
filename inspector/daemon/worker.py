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
import numpy as np
import zmq

from inspector.config import Config, validate_inspections
from inspector.daemon.endpoints import Endpoints
from inspector.errors import BadFrameError, InspectorError, WireError
from inspector.frame import Frame
from inspector.inspections import inspection_class
from inspector.inspections.base import Inspection, InspectionContext, InspectionResult
from inspector.transport import wire

log = logging.getLogger("inspector.worker")


def build_inspections(cfg: Config, worker: str) -> list[Inspection]:
    params = validate_inspections(cfg)
    from inspector.audit.settings import gradcam_dir

    ctx = InspectionContext(state_dir=cfg.state_path(), models_dir=cfg.models_path(),
                            log=logging.getLogger(f"inspector.inspection.{worker}"), worker=worker,
                            gradcam_dir=gradcam_dir(cfg))
    return [inspection_class(s.name)(params[s.name], ctx) for s in cfg.enabled_inspections()]


def run_inspections(inspections: list[Inspection], frame: Frame) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Run every inspection on the frame; the quality gate (if first and rejecting) skips the rest."""
    results: list[dict[str, Any]] = []
    payloads: list[bytes] = []
    gated_by: str | None = None
    for insp in inspections:
        t0 = time.perf_counter()
        if gated_by is not None:
            res = InspectionResult("reject", detail={"reason": "image_quality", "gated_by": gated_by})
        else:
            try:
                res = insp.inspect(frame)
            except BadFrameError as e:
                res = InspectionResult("error", detail={"reason": e.kind, "error": str(e)})
            except Exception as e:  # an inspection bug must not take the line down
                log.exception("inspection %s failed on frame %d", insp.name, frame.meta.frame_id)
                res = InspectionResult("error", detail={"reason": "internal", "error": f"{type(e).__name__}: {e}"})
        elapsed = time.perf_counter() - t0
        if res.verdict == "reject" and gated_by is None and res.detail.get("gate"):
            gated_by = insp.name
        attachments = []
        for a in res.attachments:
            attachments.append({"kind": a.kind, "header": a.header, "index": len(payloads)})
            payloads.append(a.payload)
        info = insp.model_info()
        results.append({
            "inspection": insp.name, "verdict": res.verdict, "scores": res.scores, "detail": res.detail,
            "stages": res.stages, "model": info.to_dict() if info else None,
            "latency_ms": round(elapsed * 1000, 3), "attachments": attachments,
        })
    return results, payloads


def thumbnail(frame: Frame, max_side: int) -> tuple[dict[str, Any], bytes] | None:
    """A small JPEG of the frame for the operator page (longest side <= max_side; 8-bit; RGB kept)."""
    px = frame.pixels
    if px.dtype == np.uint16:
        px = (px >> 8).astype(np.uint8)
    h, w = px.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        px = cv2.resize(px, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if px.ndim == 3:
        px = cv2.cvtColor(px, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", px, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        return None
    return {"format": "jpeg", "width": int(px.shape[1]), "height": int(px.shape[0])}, buf.tobytes()


def run_worker(cfg_data: dict[str, Any], endpoints: dict[str, str], worker: str) -> None:
    """Process entry point (spawned by the supervisor)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # see acquisition.run_acquisition
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    logging.basicConfig(level=cfg_data.get("log", {}).get("level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ep = Endpoints(**endpoints)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(ep.events)
    try:
        cfg = Config(**cfg_data)
        inspections = build_inspections(cfg, worker)
    except InspectorError as e:
        push.send_multipart(wire.encode_event("worker_ready", worker=worker, ok=False, error=str(e)))
        push.close()
        ctx.term()
        raise SystemExit(3) from None
    models = {i.name: (m.to_dict() if (m := i.model_info()) else None) for i in inspections}
    push.send_multipart(wire.encode_event("worker_ready", worker=worker, ok=True, models=models))
    _Loop(cfg, ep, ctx, push, worker, inspections).run()


class _Loop:
    def __init__(self, cfg: Config, ep: Endpoints, ctx: zmq.Context, push: zmq.Socket, worker: str,
                 inspections: list[Inspection]):
        self.cfg, self.ctx, self.push, self.worker, self.inspections = cfg, ctx, push, worker, inspections
        self.dealer = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.IDENTITY, worker.encode())
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.MAXMSGSIZE, cfg.transport.max_message_bytes)
        self.dealer.connect(ep.frames)
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(ep.commands)
        self.parent = os.getppid()
        from inspector.line.settings import operator_config

        op = operator_config(cfg)
        self.thumbnail_px = op.thumbnail_px if op.enabled and cfg.metrics.enabled else 0

    def run(self) -> None:
        self.dealer.send(wire.encode_header("ready"))
        poller = zmq.Poller()
        poller.register(self.dealer, zmq.POLLIN)
        poller.register(self.sub, zmq.POLLIN)
        try:
            while True:
                socks = dict(poller.poll(500))
                if self.sub in socks and self._on_command():
                    return
                if self.dealer in socks:
                    self._on_frame(self.dealer.recv_multipart(copy=False))
                    self.dealer.send(wire.encode_header("ready"))
                if os.getppid() != self.parent:
                    log.error("supervisor exited; worker %s stops", self.worker)
                    return
        finally:
            for i in self.inspections:
                i.close()
            self.dealer.close(0)
            self.sub.close(0)
            self.push.close()
            self.ctx.term()

    def _on_frame(self, parts: list[Any]) -> None:
        received = time.time()
        try:
            frame = wire.decode_frame(parts, max_bytes=self.cfg.transport.max_message_bytes)
        except WireError as e:
            fid = _frame_id_or_none(parts)
            self.push.send_multipart(wire.encode_event("bad_input", input_kind="malformed_frame", frame_id=fid,
                                                       worker=self.worker, message=str(e)))
            return
        results, payloads = run_inspections(self.inspections, frame)
        queue_s = max(0.0, received - frame.meta.acquired_at)
        extra: dict[str, Any] = {}
        try:
            thumb = thumbnail(frame, self.thumbnail_px) if self.thumbnail_px else None
        except cv2.error as e:  # the operator page misses one picture; the result still goes out
            log.warning("no thumbnail for frame %d: %s", frame.meta.frame_id, e)
            thumb = None
        if thumb is not None:
            extra["thumbnail"] = {**thumb[0], "index": len(payloads)}
            payloads.append(thumb[1])
        self.push.send_multipart(wire.encode_result(frame.meta, self.worker, results, payloads, queue_s=queue_s,
                                                    **extra), copy=False)

    def _on_command(self) -> bool:
        try:
            cmd = wire.decode_command(self.sub.recv())
        except WireError as e:
            log.error("ignoring malformed command: %s", e)
            return False
        if cmd["op"] == "stop":
            return cmd.get("target") in (None, "workers", "all")
        if cmd["op"] == "reload":
            self._reload(str(cmd.get("inspection")), cmd.get("version"), cmd.get("request_id"))
        return False

    def _reload(self, name: str, version: str | None, request_id: Any) -> None:
        for insp in self.inspections:
            if insp.name != name:
                continue
            try:
                info = insp.reload(version)
                self.push.send_multipart(wire.encode_event(
                    "model", worker=self.worker, inspection=name, ok=True, request_id=request_id,
                    model=info.to_dict() if info else None))
            except InspectorError as e:  # refused: the previous model stays in service
                self.push.send_multipart(wire.encode_event(
                    "model", worker=self.worker, inspection=name, ok=False, request_id=request_id, error=str(e)))
            return


def _frame_id_or_none(parts: list[Any]) -> int | None:
    try:
        return int(wire.decode_header(parts[0].buffer if hasattr(parts[0], "buffer") else parts[0])
                   ["meta"]["frame_id"])
    except Exception:
        return None
