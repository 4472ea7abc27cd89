"""Identity model served by NVIDIA Triton Inference Server (gRPC), with the interface of ``OrtModel``.

A line PC sends the preprocessed tiles of a frame to a shared Triton host and gets back the same
three tensors as the in-process ONNX Runtime session (``probs``, ``conv_map``, ``pooled``), so
aggregation, Grad-CAM and scores run unchanged on the line PC. The model served is the repository's
verified version exported by ``inspector export triton``, which writes the artifact's sha256 into
the Triton model's parameters (``inspector_sha256``):

* **Refusal**: at start, on reload and after every reconnection the served sha256 is read from the
  server's model configuration and compared with the manifest; a mismatch is a
  ``ModelIntegrityError`` at start/reload and a per-frame ``sha256_mismatch`` failure afterwards —
  nothing is ever inferred on an unverified server.
* **Failures** (server down, slow, model unloaded) raise :class:`RemoteInferenceError` with a short
  ``reason`` (:data:`REASONS`). After a failure the runtime is unhealthy; frames fail fast with that
  reason for ``reconnect_s`` (no stacked timeouts on the line), then one fresh connection is made
  and the model re-verified; it is healthy again as soon as that succeeds.
* :class:`RemoteIdentityModel` adds the configured policy (``on_unavailable: error | local``: fall
  back to an in-process ``OrtModel`` of the same verified artifact) and the per-frame statistics that
  the worker ships to the supervisor inside the result's ``detail["remote"]``.

gRPC rather than HTTP: ``tritonclient.http`` is not thread-safe, the gRPC client is, and binary
tensors travel without JSON. No TensorFlow here: this module runs in the daemon's worker processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from inspector.errors import InspectorError, ModelIntegrityError
from inspector.identity.runtime import ARTIFACTS, OUTPUTS, OrtModel
from inspector.modelrepo import ModelDir

log = logging.getLogger("inspector.identity.triton")

#: model parameter with the served artifact's sha256 (written by inspector export triton)
SHA_PARAM = "inspector_sha256"
#: failure reasons (label values of inspector_remote_infer_failures_total)
REASONS = ("unavailable", "timeout", "model_not_ready", "sha256_mismatch", "server_error", "bad_response")


class RemoteInferenceError(InspectorError):
    """Remote inference failed for this frame; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class ServedModelRefused(ModelIntegrityError):
    """The server answers, but not with the model the manifest verified (``reason``: sha256_mismatch, or
    bad_response for a configuration without the outputs or batching the runtime needs)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class TritonSettings(BaseModel):
    """The ``triton:`` block of the identity inspection's params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1, description="host:port of Triton's gRPC endpoint (Triton's default port is 8001)")
    model: str | None = Field(None, description="Triton model name (default: the manifest's model name)")
    version: str = Field("", pattern=r"^[0-9]*$", description="Triton model version; empty: the latest it serves")
    timeout_ms: int = Field(1000, ge=1, le=600_000, description="per frame, all chunks together")
    reconnect_s: float = Field(1.0, gt=0, le=3600, description="after a failure frames fail fast this long, "
                                                               "then one reconnection re-verifies the sha256")
    on_unavailable: Literal["error", "local"] = Field("error", description="error: the frame gets verdict error; "
                                                      "local: in-process ONNX Runtime on the same artifact")


def _reason(exc: Exception) -> str:
    status = str(getattr(exc, "status", lambda: "")() or "")
    msg = str(exc).lower()
    if "DEADLINE_EXCEEDED" in status or "deadline exceeded" in msg:
        return "timeout"
    if "unknown model" in msg or "not ready" in msg or "NOT_FOUND" in status:
        return "model_not_ready"
    if "UNAVAILABLE" in status or "failed to connect" in msg or "connection refused" in msg:
        return "unavailable"
    return "server_error"


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class TritonModel:
    """A verified identity model version served by Triton; ``run`` has ``OrtModel.run``'s contract."""

    provider = "triton"

    def __init__(self, model_dir: ModelDir, settings: TritonSettings, *, precision: str = "fp32"):
        self.model_dir = model_dir
        self.manifest = model_dir.manifest
        self.settings = settings
        self.model_name = settings.model or self.manifest.name
        self.precision = precision
        self.sha256 = str(self.manifest.artifacts[ARTIFACTS[precision]]["sha256"])
        self.tile = int(self.manifest.preprocessing.get("tile", 224))
        self.preprocess_mode = str(self.manifest.preprocessing.get("mode", "none"))
        self.classes = list(self.manifest.classes)
        self.input_name = str(self.manifest.input.get("name") or "tiles")
        self.max_batch_size = 0
        self.served_version: str | None = None  # the version the server runs, once verified
        self.healthy = False
        self.last_reason: str | None = None
        self._client: Any = None
        self._retry_at = 0.0
        try:
            self._connect()
        except RemoteInferenceError as e:  # not reachable yet: start unhealthy, reconnect on use
            log.warning("triton %s: %s; frames get verdict error until it is reachable", settings.url, e)

    # ---- connection and verification -----------------------------------
    def _connect(self) -> None:
        """(Re)create the gRPC client and verify the served model; raises RemoteInferenceError, or
        ModelIntegrityError when the server answers with another artifact's sha256."""
        import tritonclient.grpc as grpcclient

        s, name = self.settings, self.model_name
        self.healthy = False
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 — a dead channel may fail to close; it is dropped anyway
                pass
        self._client = grpcclient.InferenceServerClient(s.url, channel_args=self._channel_args())
        t = s.timeout_ms / 1000.0
        try:
            cfg = self._client.get_model_config(name, s.version, client_timeout=t).config
            served = s.version or str(max(int(v) for v in
                                          self._client.get_model_metadata(name, client_timeout=t).versions))
            if not self._client.is_model_ready(name, served, client_timeout=t):
                raise RemoteInferenceError(f"model {name}/{served} is not ready on {s.url}", "model_not_ready")
        except RemoteInferenceError:
            raise
        except Exception as e:  # noqa: BLE001 — tritonclient.utils.InferenceServerException and grpc errors
            raise RemoteInferenceError(f"triton {s.url}: {_one_line(e)}", _reason(e)) from None
        got = cfg.parameters[SHA_PARAM].string_value if SHA_PARAM in cfg.parameters else ""
        if got != self.sha256:
            raise ServedModelRefused(
                f"triton {s.url} serves {name}/{served} with sha256 {got[:12] or '(none)'}…, manifest of "
                f"{self.manifest.name}/{self.manifest.version} says {self.sha256[:12]}… — refusing it", "sha256_mismatch")
        outputs = {o.name for o in cfg.output}
        missing = [o for o in OUTPUTS if o not in outputs]
        if missing or cfg.max_batch_size < 1:
            raise ServedModelRefused(f"triton model {name}/{served} lacks outputs {missing} or batching "
                                     f"(max_batch_size {cfg.max_batch_size}); re-export it with inspector export triton",
                                     "bad_response")
        self.max_batch_size = int(cfg.max_batch_size)
        self.served_version = served
        self.healthy, self.last_reason = True, None
        log.info("triton %s serves %s/%s, sha256 %s… verified (max_batch_size %d)", s.url, name, served,
                 self.sha256[:12], self.max_batch_size)

    def _channel_args(self) -> list[tuple[str, int]]:
        """tritonclient's defaults (unlimited message size, keepalive), a subchannel pool of this
        channel's own (gRPC shares subchannels process-wide by default, so a fresh channel could inherit
        the dead connection's state) and a reconnect back-off bounded by reconnect_s (gRPC's default
        grows to 120 s), so a server that comes back is used within about reconnect_s."""
        from tritonclient.grpc import KeepAliveOptions

        ka = KeepAliveOptions()
        backoff_ms = max(100, int(self.settings.reconnect_s * 1000))
        unlimited = 2**31 - 1  # tritonclient's MAX_GRPC_MESSAGE_SIZE (INT32_MAX), as Triton's server side
        return [("grpc.max_send_message_length", unlimited), ("grpc.max_receive_message_length", unlimited),
                ("grpc.keepalive_time_ms", ka.keepalive_time_ms), ("grpc.keepalive_timeout_ms", ka.keepalive_timeout_ms),
                ("grpc.keepalive_permit_without_calls", int(ka.keepalive_permit_without_calls)),
                ("grpc.http2.max_pings_without_data", ka.http2_max_pings_without_data),
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.initial_reconnect_backoff_ms", backoff_ms), ("grpc.min_reconnect_backoff_ms", backoff_ms),
                ("grpc.max_reconnect_backoff_ms", backoff_ms)]

    def _fail(self, err: RemoteInferenceError) -> RemoteInferenceError:
        if self.healthy:
            log.warning("%s (%s); retrying in %.1f s", err, err.reason, self.settings.reconnect_s)
        self.healthy, self.last_reason = False, err.reason
        self._retry_at = time.monotonic() + self.settings.reconnect_s
        return err

    def _ensure(self) -> None:
        if self.healthy:
            return
        if time.monotonic() < self._retry_at:
            raise RemoteInferenceError(f"triton {self.settings.url} unavailable ({self.last_reason}), "
                                       f"next reconnection in ≤ {self.settings.reconnect_s:g} s",
                                       self.last_reason or "unavailable")
        try:
            self._connect()
        except ServedModelRefused as e:
            log.error("%s", e)
            raise self._fail(RemoteInferenceError(str(e), e.reason)) from None
        except RemoteInferenceError as e:
            raise self._fail(e) from None
        log.info("triton %s reachable again", self.settings.url)

    # ---- inference ------------------------------------------------------------
    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Preprocessed tiles (n, t, t, 3) float32 -> {"probs", "conv_map", "pooled"}, in chunks of at
        most the server's max_batch_size; raises RemoteInferenceError (the frame gets no result)."""
        import tritonclient.grpc as grpcclient

        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1:] != (self.tile, self.tile, 3):
            raise ValueError(f"expected preprocessed tiles of shape (n, {self.tile}, {self.tile}, 3), got {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        self._ensure()
        s = self.settings
        deadline = time.monotonic() + s.timeout_ms / 1000.0
        requested = [grpcclient.InferRequestedOutput(o) for o in OUTPUTS]
        parts: dict[str, list[np.ndarray]] = {o: [] for o in OUTPUTS}
        for start in range(0, len(x), self.max_batch_size):
            chunk = x[start:start + self.max_batch_size]
            inp = grpcclient.InferInput(self.input_name, list(chunk.shape), "FP32")
            inp.set_data_from_numpy(chunk)
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(RemoteInferenceError(f"triton {s.url}: no answer within {s.timeout_ms} ms", "timeout"))
            try:
                res = self._client.infer(self.model_name, [inp], model_version=self.served_version or "",
                                         outputs=requested, client_timeout=left)
            except Exception as e:  # noqa: BLE001 — InferenceServerException, grpc errors
                raise self._fail(RemoteInferenceError(f"triton {s.url}: {_one_line(e)}", _reason(e))) from None
            for o in OUTPUTS:
                arr = res.as_numpy(o)
                if arr is None or len(arr) != len(chunk):
                    raise self._fail(RemoteInferenceError(f"triton {s.url}: output {o} missing or of the wrong "
                                                          f"batch size", "bad_response"))
                parts[o].append(arr)
        return {o: (p[0] if len(p) == 1 else np.concatenate(p)) for o, p in parts.items()}

    def info(self) -> dict[str, Any]:
        """The server's identity of what it serves (published and audited with every decision)."""
        return {"runtime": "triton", "url": self.settings.url, "model": self.model_name,
                "version": self.served_version, "sha256": self.sha256 if self.served_version else None}

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None


class RemoteIdentityModel:
    """Triton first, with the configured policy when it fails: ``error`` (re-raise) or ``local`` (an
    in-process ``OrtModel`` of the same verified artifact). Same interface as ``OrtModel``; after each
    ``run`` the frame's remote statistics are in :meth:`frame_detail`."""

    def __init__(self, model_dir: ModelDir, settings: TritonSettings, *, precision: str = "fp32",
                 local: Callable[[], OrtModel] | None = None):
        self.remote = TritonModel(model_dir, settings, precision=precision)
        self.local = local() if settings.on_unavailable == "local" and local is not None else None
        if settings.on_unavailable == "local" and self.local is None:
            raise InspectorError("on_unavailable: local needs a local ONNX Runtime model")
        self.settings = settings
        for attr in ("model_dir", "manifest", "sha256", "tile", "preprocess_mode", "classes", "precision"):
            setattr(self, attr, getattr(self.remote, attr))
        self._last: dict[str, Any] = {}

    @property
    def provider(self) -> str:
        """Who ran the last frame: ``triton`` or, after a fallback, the local ONNX Runtime provider."""
        return self.local.provider if self._last.get("served") == "local" and self.local else "triton"

    @property
    def healthy(self) -> bool:
        """False while frames cannot be inferred (remote unavailable and no local fallback)."""
        return self.remote.healthy or self.local is not None

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        try:
            out = self.remote.run(x)
        except RemoteInferenceError as e:
            self._last = {"ok": False, "reason": e.reason, "error": str(e), "seconds": None,
                          "served": "local" if self.local else None}
            if self.local is None:
                raise
            return self.local.run(x)
        self._last = {"ok": True, "reason": None, "seconds": time.perf_counter() - t0, "served": "triton"}
        return out

    def frame_detail(self) -> dict[str, Any]:
        """``detail["remote"]`` of the last frame: server identity, outcome, seconds, health. The
        supervisor turns it into inspector_remote_infer_seconds / _failures_total / readiness."""
        return {**self.remote.info(), **self._last, "healthy": self.remote.healthy,
                "fallback": self.settings.on_unavailable}

    def served_by(self) -> dict[str, Any]:
        """Who served the last frame (goes into the published and audited model info)."""
        if self._last.get("served") == "local" and self.local is not None:
            return {"runtime": "onnxruntime", "provider": self.local.provider, "fallback_from": self.settings.url}
        return self.remote.info()

    def info(self) -> dict[str, Any]:
        return {**self.remote.info(), "precision": self.precision, "provider": self.provider}

    def close(self) -> None:
        self.remote.close()
