"""ONNX Runtime session for an exported identity model: execution providers in configured order.

Providers are tried in the configured order among those this onnxruntime build offers
(``onnxruntime`` offers CPU only; ``onnxruntime-gpu`` adds CUDA and TensorRT)::

    TensorrtExecutionProvider  fp16, engine + timing cache in <state_dir>/trt-cache/<model sha>
    CUDAExecutionProvider      device 0
    CPUExecutionProvider       always last resort

ONNX Runtime falls back silently when a provider fails to initialise (no GPU, missing TensorRT
libraries), so the provider that actually runs is read back from the session and logged.
No TensorFlow here: this module runs in the daemon's worker processes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import ConfigError, ModelIntegrityError
from inspector.modelrepo import ModelDir

log = logging.getLogger("inspector.identity.runtime")

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEFAULT_PROVIDERS: tuple[str, ...] = (TENSORRT, CUDA, CPU)
#: provider names accepted in configuration (others would be a typo)
KNOWN_PROVIDERS: frozenset[str] = frozenset({
    TENSORRT, CUDA, CPU, "ROCMExecutionProvider", "MIGraphXExecutionProvider", "OpenVINOExecutionProvider",
    "DnnlExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider", "XnnpackExecutionProvider",
})
#: artifact names by precision
ARTIFACTS = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
OUTPUTS = ("probs", "conv_map", "pooled")


def check_provider_names(names: list[str]) -> list[str]:
    """Validate configured provider names (used by the inspection's params); returns them unchanged."""
    if not names:
        raise ValueError("at least one execution provider is required (e.g. CPUExecutionProvider)")
    unknown = [n for n in names if n not in KNOWN_PROVIDERS]
    if unknown:
        raise ValueError(f"unknown execution provider(s) {unknown}; known: {sorted(KNOWN_PROVIDERS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"execution provider listed twice in {names}")
    return names


def provider_options(name: str, *, cache_dir: Path | None, fp16: bool = True, device_id: int = 0) -> dict[str, Any]:
    """Options handed to ONNX Runtime for one provider."""
    if name == TENSORRT:
        opts: dict[str, Any] = {"device_id": device_id, "trt_fp16_enable": bool(fp16)}
        if cache_dir is not None:
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir),
                        trt_timing_cache_enable=True, trt_timing_cache_path=str(cache_dir))
        return opts
    if name == CUDA:
        return {"device_id": device_id}
    return {}


def select_providers(requested: list[str], available: list[str], *, cache_dir: Path | None,
                     fp16: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """The requested providers this build offers, in the requested order, each with its options."""
    chosen = [(p, provider_options(p, cache_dir=cache_dir, fp16=fp16)) for p in requested if p in available]
    if not chosen:
        raise ConfigError(f"none of the configured execution providers {requested} is available "
                          f"(this onnxruntime build offers {available})")
    return chosen


class OrtModel:
    """An identity model version loaded into an ONNX Runtime session (sha256-verified ``ModelDir``)."""

    def __init__(self, model_dir: ModelDir, providers: list[str] | tuple[str, ...] = DEFAULT_PROVIDERS, *,
                 cache_dir: Path | None = None, intra_op_threads: int = 1, precision: str = "fp32",
                 fp16: bool = True):
        import onnxruntime as ort

        self.model_dir = model_dir
        self.manifest = model_dir.manifest
        self.precision = precision
        if precision not in ARTIFACTS:
            raise ConfigError(f"precision must be one of {sorted(ARTIFACTS)}, got {precision!r}")
        artifact = ARTIFACTS[precision]
        if artifact not in self.manifest.artifacts:
            raise ConfigError(f"model {self.manifest.name}/{self.manifest.version} has no {precision} artifact "
                              f"({artifact}); run `inspector quantize identity` to make one")
        self.artifact = artifact
        self.sha256 = str(self.manifest.artifacts[artifact]["sha256"])
        if cache_dir is not None:
            cache_dir = Path(cache_dir) / self.sha256[:16]  # one engine cache per model artifact
        self.requested = list(providers)
        chosen = select_providers(self.requested, ort.get_available_providers(), cache_dir=cache_dir, fp16=fp16)
        if cache_dir is not None and chosen[0][0] == TENSORRT:
            cache_dir.mkdir(parents=True, exist_ok=True)
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(intra_op_threads))
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model_dir.artifact(artifact)), sess_options=so,
                                                providers=[p for p, _ in chosen],
                                                provider_options=[o for _, o in chosen])
        except Exception as e:  # onnxruntime raises its own exception types for a corrupt graph
            raise ModelIntegrityError(f"ONNX Runtime cannot load {model_dir.path / artifact}: "
                                      f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        self.provider = self.session.get_providers()[0]
        names_out = [o.name for o in self.session.get_outputs()]
        missing = [o for o in OUTPUTS if o not in names_out]
        if missing:
            raise ModelIntegrityError(f"model {self.manifest.name}/{self.manifest.version} lacks outputs {missing} "
                                      f"(has {names_out}); re-export it with inspector export identity")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.tile = int(self.manifest.preprocessing.get("tile", 224))
        self.preprocess_mode = str(self.manifest.preprocessing.get("mode", "none"))
        self.classes = list(self.manifest.classes)
        level = logging.INFO if self.provider == chosen[0][0] else logging.WARNING
        log.log(level, "model %s/%s (%s) runs on %s (configured %s, offered %s)", self.manifest.name,
                self.manifest.version, precision, self.provider, self.requested, [p for p, _ in chosen])

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Preprocessed tiles (n, t, t, 3) float32 -> {"probs": (n, C), "conv_map": (n, h, w, K), "pooled": (n, K)}."""
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1:] != (self.tile, self.tile, 3):
            raise ValueError(f"expected preprocessed tiles of shape (n, {self.tile}, {self.tile}, 3), got {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        outs = self.session.run(list(OUTPUTS), {self.input_name: x})
        return dict(zip(OUTPUTS, outs, strict=True))

    def info(self) -> dict[str, Any]:
        return {"name": self.manifest.name, "version": self.manifest.version, "sha256": self.sha256,
                "precision": self.precision, "provider": self.provider}
