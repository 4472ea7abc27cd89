"""Every Prometheus metric of the daemon, in one place, with the ``inspector_`` prefix and base units.

One exporter: the supervisor owns the registry. Worker and acquisition processes do not export;
they ship their statistics inside the messages they already send (stage timings in results,
drops / queue depth / reconnects in acquisition events), so numbers add up across processes by
construction, worker restarts lose nothing, and label sets can be removed (model versions).
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from inspector import __version__

STAGES = ("acquire", "queue", "preprocess", "infer", "gradcam", "publish")
#: why remote (Triton) inference failed for a frame; the same tuple as inspector.identity.triton_runtime.REASONS
REMOTE_FAILURE_REASONS = ("unavailable", "timeout", "model_not_ready", "sha256_mismatch", "server_error", "bad_response")

# 0.5 ms … 10 s: from a quality gate on a small frame to a CNN on a slow CPU
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The daemon's metrics on a private registry (tests create as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.build_info = Info("inspector_build", "Build information", registry=r)
        self.build_info.info({"version": __version__, "python": platform.python_version()})
        self.frames_acquired = Counter(
            "inspector_frames_acquired", "Frames delivered by the camera driver", ["camera"], registry=r)
        self.frames_processed = Counter(
            "inspector_frames_processed", "Frames that completed all inspections", registry=r)
        self.frames_dropped = Counter(
            "inspector_frames_dropped", "Frames dropped before inspection, by reason", ["reason"], registry=r)
        self.frames_lost = Counter(
            "inspector_frames_lost", "Frames lost in flight (worker died, shutdown timeout), by reason",
            ["reason"], registry=r)
        self.results = Counter(
            "inspector_results", "Published inspection results", ["inspection", "verdict"], registry=r)
        self.stage_seconds = Histogram(
            "inspector_stage_duration_seconds", "Time spent per pipeline stage", ["stage"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.frame_latency = Histogram(
            "inspector_frame_latency_seconds", "Acquisition to publication of a frame's results",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("inspector_queue_depth", "Frames waiting for a worker", registry=r)
        self.queue_capacity = Gauge("inspector_queue_capacity", "Configured queue capacity", registry=r)
        self.workers_up = Gauge("inspector_workers_up", "Worker processes alive and ready", registry=r)
        self.workers_configured = Gauge("inspector_workers_configured", "Configured worker processes", registry=r)
        self.worker_restarts = Counter(
            "inspector_worker_restarts", "Worker processes restarted after exiting", registry=r)
        self.camera_up = Gauge("inspector_camera_up", "1 while the camera is open and delivering", registry=r)
        self.camera_reconnects = Counter(
            "inspector_camera_reconnects", "Times the camera driver re-created its acquirer", registry=r)
        self.last_frame_ts = Gauge(
            "inspector_last_frame_timestamp_seconds", "UNIX time of the last acquired frame", registry=r)
        self.bad_input = Counter(
            "inspector_bad_input", "Rejected inputs (corrupt frames, malformed messages…), by kind",
            ["kind"], registry=r)
        self.model_info = Gauge(
            "inspector_model_info", "Model served per inspection (value 1)",
            ["inspection", "name", "version", "sha256"], registry=r)
        self.audit_records = Counter("inspector_audit_records", "Records appended to the audit store",
                                     ["kind"], registry=r)
        self.control_commands = Counter("inspector_control_commands", "Control channel commands",
                                        ["command", "outcome"], registry=r)
        self.ready = Gauge("inspector_ready", "1 when camera, workers and models are ready", registry=r)
        self.paused = Gauge("inspector_paused", "1 while acquisition is paused by the control channel",
                            registry=r)
        self.stalled = Gauge("inspector_stalled", "1 while frames are acquired but none is inspected", registry=r)
        self.stalls = Counter("inspector_stalls", "Times the pipeline stalled (frames in, no results out)",
                              registry=r)
        self.acquisition_restarts = Counter(
            "inspector_acquisition_restarts", "Acquisition processes restarted after exiting", registry=r)
        self.audit_write_failures = Counter(
            "inspector_audit_write_failures", "Failed audit transactions (disk full, read-only…)", registry=r)
        self.audit_pending = Gauge(
            "inspector_audit_pending_records", "Audit records waiting to be written (nothing they cover is "
            "published meanwhile)", registry=r)
        # line integration (inspector/line): acknowledged reject delivery
        self.reject_commands = Counter("inspector_reject_commands", "Actionable decisions sent to the line "
                                       "controller(s) on the reject channel", registry=r)
        self.reject_acks = Counter("inspector_reject_acks", "Reject commands acknowledged in time", registry=r)
        self.reject_resends = Counter("inspector_reject_resends", "Reject commands sent again (no ack yet)",
                                      registry=r)
        self.reject_deadline_missed = Counter(
            "inspector_reject_deadline_missed", "Reject commands not acknowledged by their deadline (alarms)",
            registry=r)
        self.reject_ack_latency = Histogram(
            "inspector_reject_ack_latency_seconds", "Issue to acknowledgement of a reject command",
            buckets=(0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r)
        self.reject_pending = Gauge("inspector_reject_pending", "Reject commands awaiting acknowledgement",
                                    registry=r)
        self.line_controllers = Gauge("inspector_line_controllers", "Line controllers connected to the reject "
                                      "channel", registry=r)
        self.opcua_calls = Counter("inspector_opcua_method_calls", "OPC UA method calls", ["method", "outcome"],
                                   registry=r)
        self.lot_drift = Gauge(
            "inspector_lot_drift", "Mean shift of the lot vs the expected excipient's reference, per view "
            "(embedding: CNN identity embedding; morphology: measured particle size/shape), Hotelling-style; "
            "NaN before the first frame; current and previous lot only",
            ["lot", "excipient", "view"], registry=r)
        self.lot_drift_threshold = Gauge(
            "inspector_lot_drift_threshold", "Calibrated alarm threshold of inspector_lot_drift",
            ["lot", "excipient", "view"], registry=r)
        self.lot_frames = Gauge("inspector_lot_frames", "Frames of the lot inspected for identity",
                                ["lot", "excipient"], registry=r)
        self._models: dict[str, tuple[str, str, str]] = {}
        for s in STAGES:  # make every stage series exist from the start (dashboards never see "no data")
            self.stage_seconds.labels(stage=s)
        for reason in ("queue_full", "shutdown"):
            self.frames_dropped.labels(reason=reason)
        for reason in ("worker_died", "acquisition_died", "in_transit", "malformed_frame", "shutdown",
                       "remote_worker_gone"):
            self.frames_lost.labels(reason=reason)
        # remote inference (Triton): observed from each result's detail["remote"] (observe_remote)
        self.remote_infer_seconds = Histogram(
            "inspector_remote_infer_seconds", "Remote (Triton) inference round trip per frame, all chunks",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.remote_failures = Counter(
            "inspector_remote_infer_failures", "Frames whose remote inference failed, by reason", ["reason"],
            registry=r)
        self.remote_fallbacks = Counter(
            "inspector_remote_infer_fallbacks", "Frames inferred in-process after a remote failure", registry=r)
        self.remote_up = Gauge(
            "inspector_remote_up", "1 while the inspection's inference server answers with the verified model "
            "(or a local fallback is configured), 0 while frames cannot be inferred", ["inspection"], registry=r)
        for reason in REMOTE_FAILURE_REASONS:
            self.remote_failures.labels(reason=reason)

    def declare_camera(self, camera: str) -> None:
        """Create the acquired-frames series at 0 before the first frame, like the drop series, so
        early rate() ratios (drop ratio, throughput) compare counters that both start at zero."""
        self.frames_acquired.labels(camera=camera)

    def declare_inspections(self, names: list[str]) -> None:
        """Create every {inspection, verdict} series at start, so dashboards see zeros, not gaps."""
        for n in names:
            for v in ("pass", "reject", "error"):
                self.results.labels(inspection=n, verdict=v)

    def set_model(self, inspection: str, name: str, version: str, sha256: str | None) -> None:
        """Publish the model an inspection serves; a previous version's series is removed."""
        labels = (name, version, sha256 or "")
        old = self._models.get(inspection)
        if old == labels:
            return
        if old is not None:
            try:
                self.model_info.remove(inspection, *old)
            except KeyError:
                pass
        self.model_info.labels(inspection, *labels).set(1)
        self._models[inspection] = labels

    def observe_remote(self, inspection: str, remote: dict) -> None:
        """One frame's remote-inference statistics (``detail["remote"]`` of a result, shipped by the worker)."""
        try:
            if remote.get("ok"):
                self.remote_infer_seconds.observe(float(remote["seconds"]))
            else:
                reason = str(remote.get("reason"))
                self.remote_failures.labels(reason=reason if reason in REMOTE_FAILURE_REASONS else "server_error").inc()
                if remote.get("served") == "local":
                    self.remote_fallbacks.inc()
            self.remote_up.labels(inspection=inspection).set(
                1 if remote.get("healthy") or remote.get("fallback") == "local" else 0)
        except (AttributeError, KeyError, TypeError, ValueError):  # a malformed detail is not worth a crash
            self.bad_input.labels(kind="malformed_remote_stats").inc()

    def remove_lot(self, lot: str, excipient: str) -> None:
        """Drop a closed lot's drift series (only the current and the previous lot are exported)."""
        for g in (self.lot_drift, self.lot_drift_threshold, self.lot_frames):
            for labels in {tuple(x.labels.values()) for x in g.collect()[0].samples
                           if x.labels["lot"] == lot and x.labels["excipient"] == excipient}:
                g.remove(*labels)  # every series of the lot (each drift view, the frame count)
