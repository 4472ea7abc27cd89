"""Triton Inference Server model repository from a verified identity model version.

    REPO/<name>/config.pbtxt
    REPO/<name>/<version>/model.onnx          (+ model.py for the python backend)

The configuration is built as Triton's own ``ModelConfig`` protobuf (``tritonclient.grpc.model_config_pb2``)
and written with ``google.protobuf.text_format``, so every field name and enum is checked by the
schema Triton itself parses. Inputs and outputs carry the ONNX graph's names, data types and shapes
(batch dimension dropped: ``max_batch_size`` > 0), including ``conv_map`` and ``pooled`` that the
numpy Grad-CAM and the embedding scores need. The artifact's sha256 goes into the model
``parameters`` (key :data:`SHA_PARAM`) so a client can check what the server serves before trusting
its answers (inspector/identity/triton_runtime.py refuses a mismatch).

Backends:

* ``onnxruntime`` (production, a GPU host): ``platform: "onnxruntime_onnx"``, instance group on GPU or
  CPU, optional TensorRT execution accelerator (fp16) with an engine cache.
* ``python`` (the CPU test server bundled with ``nvidia-pytriton``, which has no onnxruntime
  backend): ``backend: "python"`` and a ``model.py`` that runs ONNX Runtime on the same file and
  verifies its sha256 when Triton loads it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from inspector.errors import InspectorError
from inspector.identity.runtime import ARTIFACTS, OUTPUTS
from inspector.modelrepo import ModelDir, sha256_file

#: model parameter holding the served artifact's sha256 (checked by the client)
SHA_PARAM = "inspector_sha256"
#: parameters recording where the artifact comes from (informational)
NAME_PARAM, VERSION_PARAM, PRECISION_PARAM = "inspector_model", "inspector_version", "inspector_precision"
CONFIG = "config.pbtxt"
PYTHON_MODEL = Path(__file__).with_name("python_model.py")
#: tiles of a 1280x960 frame (data bar cropped) at 224: 5 columns x 4 rows
TILES_PER_FRAME = 20

Backend = Literal["onnxruntime", "python"]
Kind = Literal["cpu", "gpu"]

# ONNX TensorProto element types -> Triton DataType names (the ones an image CNN uses)
_ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 2: "TYPE_UINT8", 3: "TYPE_INT8",
                   6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton DataType enum name, e.g. TYPE_FP32
    dims: tuple[int, ...]  # without the batch dimension


@dataclass(frozen=True)
class ExportOptions:
    backend: Backend = "onnxruntime"
    name: str | None = None  # Triton model name (default: the manifest's)
    version: int | None = None  # Triton version (default: the manifest's, must be an integer)
    precision: str = "fp32"
    max_batch_size: int = 64
    instance_kind: Kind = "gpu"
    instance_count: int = 1
    tensorrt: bool = False  # TensorRT execution accelerator, fp16 (onnxruntime backend on GPU)
    trt_workspace_bytes: int = 1 << 30
    trt_cache_path: str | None = None  # engine cache folder on the Triton host (builds once per GPU)
    queue_delay_us: int = 2000
    tiles_per_frame: int = TILES_PER_FRAME


def onnx_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX graph with Triton data types; the leading (batch) dimension must be
    dynamic and the others fixed, as Triton's batching requires."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}

    def spec(v) -> TensorSpec:  # noqa: ANN001 — onnx.ValueInfoProto
        t = v.type.tensor_type
        if t.elem_type not in _ONNX_TO_TRITON:
            raise InspectorError(f"{path.name}: tensor {v.name!r} has ONNX element type {t.elem_type}, "
                                 f"not one Triton export supports")
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if not dims or dims[0] > 0:
            raise InspectorError(f"{path.name}: tensor {v.name!r} has no dynamic batch dimension ({dims})")
        if any(d <= 0 for d in dims[1:]):
            raise InspectorError(f"{path.name}: tensor {v.name!r} has dynamic non-batch dimensions ({dims})")
        return TensorSpec(v.name, _ONNX_TO_TRITON[t.elem_type], tuple(dims[1:]))

    return ([spec(v) for v in graph.input if v.name not in inits], [spec(v) for v in graph.output])


def _triton_version(md: ModelDir, given: int | None) -> int:
    if given is not None:
        v = given
    elif md.manifest.version.isdigit():
        v = int(md.manifest.version)
    else:
        raise InspectorError(f"model version {md.manifest.version!r} is not an integer, which Triton requires: "
                             f"pass --triton-version N")
    if v < 1:
        raise InspectorError(f"Triton model versions start at 1 (got {v})")
    return v


def build_config(md: ModelDir, opts: ExportOptions):  # -> model_config_pb2.ModelConfig
    """The Triton ``ModelConfig`` for a verified identity model version (see the module docstring)."""
    from tritonclient.grpc import model_config_pb2 as mc

    if opts.precision not in ARTIFACTS or ARTIFACTS[opts.precision] not in md.manifest.artifacts:
        raise InspectorError(f"model {md.manifest.name}/{md.manifest.version} has no {opts.precision} artifact")
    if opts.max_batch_size < opts.tiles_per_frame:
        raise InspectorError(f"max_batch_size {opts.max_batch_size} is below the {opts.tiles_per_frame} tiles of a frame")
    if opts.instance_count < 1:
        raise InspectorError("instance count must be at least 1")
    if opts.tensorrt and (opts.backend != "onnxruntime" or opts.instance_kind != "gpu"):
        raise InspectorError("the TensorRT accelerator needs --backend onnxruntime with GPU instances")
    artifact = ARTIFACTS[opts.precision]
    inputs, outputs = onnx_io(md.artifact(artifact))
    expected_in = md.manifest.input.get("name")
    if len(inputs) != 1 or (expected_in and inputs[0].name != expected_in):
        raise InspectorError(f"model inputs {[i.name for i in inputs]} do not match the manifest's {expected_in!r}")
    by_name = {o.name: o for o in outputs}
    missing = [o for o in OUTPUTS if o not in by_name]
    if missing:
        raise InspectorError(f"model lacks outputs {missing} (has {sorted(by_name)}); re-export it")
    if by_name["probs"].dims != (len(md.manifest.classes),):
        raise InspectorError(f"probs has shape {by_name['probs'].dims}, manifest lists {len(md.manifest.classes)} classes")

    cfg = mc.ModelConfig(name=opts.name or md.manifest.name, max_batch_size=opts.max_batch_size)
    if opts.backend == "onnxruntime":
        cfg.platform = "onnxruntime_onnx"
        cfg.default_model_filename = "model.onnx"
    else:
        cfg.backend = "python"
    cfg.version_policy.specific.versions.append(_triton_version(md, opts.version))
    for t in inputs:
        cfg.input.add(name=t.name, data_type=mc.DataType.Value(t.data_type), dims=list(t.dims))
    for name in OUTPUTS:  # the order the runtime asks for them
        t = by_name[name]
        cfg.output.add(name=t.name, data_type=mc.DataType.Value(t.data_type), dims=list(t.dims))
    db = cfg.dynamic_batching
    db.preferred_batch_size.extend(range(opts.tiles_per_frame, opts.max_batch_size + 1, opts.tiles_per_frame))
    db.max_queue_delay_microseconds = opts.queue_delay_us
    kind = "gpu" if opts.backend == "onnxruntime" and opts.instance_kind == "gpu" else "cpu"
    cfg.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU if kind == "gpu" else mc.ModelInstanceGroup.KIND_CPU,
                           count=opts.instance_count)
    if opts.tensorrt:
        acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        acc.parameters["precision_mode"] = "FP16"
        acc.parameters["max_workspace_size_bytes"] = str(opts.trt_workspace_bytes)
        if opts.trt_cache_path:
            acc.parameters["trt_engine_cache_enable"] = "1"
            acc.parameters["trt_engine_cache_path"] = opts.trt_cache_path
    sha = str(md.manifest.artifacts[artifact]["sha256"])
    for key, value in ((SHA_PARAM, sha), (NAME_PARAM, md.manifest.name), (VERSION_PARAM, md.manifest.version),
                       (PRECISION_PARAM, opts.precision)):
        cfg.parameters[key].string_value = value
    return cfg


def config_text(cfg) -> str:  # noqa: ANN001 — model_config_pb2.ModelConfig
    from google.protobuf import text_format

    return text_format.MessageToString(cfg)


def read_config(path: str | Path):  # -> model_config_pb2.ModelConfig
    """Parse a config.pbtxt with Triton's schema (unknown fields and bad enums are errors)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    try:
        return text_format.Parse(Path(path).read_text(encoding="utf-8"), mc.ModelConfig())
    except text_format.ParseError as e:
        raise InspectorError(f"{path}: not a valid Triton model configuration: {e}") from None


def write_repository(md: ModelDir, out: str | Path, opts: ExportOptions, *, overwrite: bool = False) -> Path:
    """Write REPO/<name>/config.pbtxt and REPO/<name>/<version>/model.onnx (+ model.py for the python
    backend); the copied file is re-hashed and must match the manifest. Returns the model folder."""
    cfg = build_config(md, opts)
    model_root = Path(out) / cfg.name
    vdir = model_root / str(cfg.version_policy.specific.versions[0])
    if vdir.exists():
        if not overwrite:
            raise InspectorError(f"{vdir} exists (pass --overwrite to replace it)")
        shutil.rmtree(vdir)
    vdir.mkdir(parents=True)
    artifact = ARTIFACTS[opts.precision]
    dest = vdir / "model.onnx"
    shutil.copyfile(md.artifact(artifact), dest)
    if sha256_file(dest) != cfg.parameters[SHA_PARAM].string_value:
        raise InspectorError(f"copy of {artifact} to {dest} does not match its manifest sha256")
    if opts.backend == "python":
        shutil.copyfile(PYTHON_MODEL, vdir / "model.py")
    tmp = model_root / (CONFIG + ".tmp")
    tmp.write_text(config_text(cfg), encoding="utf-8")
    read_config(tmp)  # round trip through Triton's schema before it replaces a working one
    tmp.replace(model_root / CONFIG)
    return model_root
