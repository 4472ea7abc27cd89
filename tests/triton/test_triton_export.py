"""`inspector export triton`: the repository layout and config.pbtxt, parsed with Triton's own schema
(tritonclient.grpc.model_config_pb2 + text_format). No server needed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed (pip install -e '.[test]')")

from cli_helpers import run_plugin_cli  # noqa: E402
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402

from inspector.errors import InspectorError, ModelIntegrityError  # noqa: E402
from inspector.modelrepo import load_model_dir, sha256_file  # noqa: E402
from inspector.offline.triton import cli  # noqa: E402
from inspector.offline.triton.export import SHA_PARAM, ExportOptions, onnx_io, read_config, write_repository  # noqa: E402

MODEL = "excipient-identity-default"


@pytest.fixture()
def src(repo_root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "models" / MODEL / "1"
    shutil.copytree(repo_root / "models" / MODEL / "1", dst)
    return dst


def test_production_config_onnxruntime_gpu_tensorrt(src, tmp_path, capsys):
    out = tmp_path / "repo"
    assert run_plugin_cli(cli.register, ["export", "triton", str(src), "--out", str(out), "--tensorrt",
                                         "--instance-count", "2", "--trt-cache", "/var/cache/trt"]) == 0
    assert "onnxruntime_onnx" in capsys.readouterr().out
    md = load_model_dir(src)
    cfg = read_config(out / MODEL / "config.pbtxt")
    assert cfg.name == MODEL and cfg.platform == "onnxruntime_onnx" and not cfg.backend
    assert cfg.max_batch_size >= 20 and list(cfg.version_policy.specific.versions) == [1]
    # inputs/outputs: the names, types and shapes of the ONNX graph, batch dimension dropped
    inputs, outputs = onnx_io(src / "model.onnx")
    assert [(i.name, list(i.dims), mc.DataType.Name(i.data_type)) for i in cfg.input] == \
        [("tiles", [224, 224, 3], "TYPE_FP32")] == [(t.name, list(t.dims), t.data_type) for t in inputs]
    got = {o.name: (list(o.dims), mc.DataType.Name(o.data_type)) for o in cfg.output}
    assert got == {t.name: (list(t.dims), t.data_type) for t in outputs}
    assert got["probs"][0] == [len(md.manifest.classes)] and set(got) == {"probs", "conv_map", "pooled"}
    assert list(cfg.dynamic_batching.preferred_batch_size) == [20, 40, 60]
    assert cfg.dynamic_batching.max_queue_delay_microseconds > 0
    (group,) = cfg.instance_group
    assert group.kind == mc.ModelInstanceGroup.KIND_GPU and group.count == 2
    (trt,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    assert trt.parameters["trt_engine_cache_path"] == "/var/cache/trt"
    # the served artifact is the verified one, and says so
    sha = md.manifest.artifacts["model.onnx"]["sha256"]
    assert cfg.parameters[SHA_PARAM].string_value == sha == sha256_file(out / MODEL / "1" / "model.onnx")
    assert sorted(p.name for p in (out / MODEL).rglob("*") if p.is_file()) == ["config.pbtxt", "model.onnx"]


def test_cpu_instances_and_python_backend(src, tmp_path):
    md = load_model_dir(src)
    root = write_repository(md, tmp_path / "cpu", ExportOptions(instance_kind="cpu", max_batch_size=20))
    cfg = read_config(root / "config.pbtxt")
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert not cfg.optimization.HasField("execution_accelerators")
    py = write_repository(md, tmp_path / "py", ExportOptions(backend="python", name="ident", version=7))
    cfg = read_config(py / "config.pbtxt")
    assert cfg.backend == "python" and not cfg.platform and cfg.name == "ident"
    assert (py / "7" / "model.py").is_file() and (py / "7" / "model.onnx").is_file()
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU  # python backend: CPU


@pytest.mark.parametrize(("opts", "message"), [
    (ExportOptions(max_batch_size=16), "below the 20 tiles"),
    (ExportOptions(backend="python", tensorrt=True), "TensorRT accelerator needs"),
    (ExportOptions(instance_kind="cpu", tensorrt=True), "TensorRT accelerator needs"),
    (ExportOptions(precision="int8"), "no int8 artifact"),
])
def test_invalid_options_are_refused(src, tmp_path, opts, message):
    with pytest.raises(InspectorError, match=message):
        write_repository(load_model_dir(src), tmp_path / "r", opts)
    assert not (tmp_path / "r").exists()


def test_tampered_model_is_not_exported(src, tmp_path, capsys):
    with open(src / "model.onnx", "r+b") as f:
        f.seek(1000)
        f.write(b"\0")
    with pytest.raises(ModelIntegrityError):
        load_model_dir(src)
    assert run_plugin_cli(cli.register, ["export", "triton", str(src), "--out", str(tmp_path / "r")]) == 1
    assert "refusing to load a modified model" in capsys.readouterr().out
    assert not (tmp_path / "r").exists()


def test_existing_version_needs_overwrite_and_config_is_schema_checked(src, tmp_path):
    md = load_model_dir(src)
    root = write_repository(md, tmp_path / "r", ExportOptions())
    with pytest.raises(InspectorError, match="--overwrite"):
        write_repository(md, tmp_path / "r", ExportOptions())
    write_repository(md, tmp_path / "r", ExportOptions(max_batch_size=40), overwrite=True)
    assert read_config(root / "config.pbtxt").max_batch_size == 40
    (root / "config.pbtxt").write_text((root / "config.pbtxt").read_text().replace("KIND_GPU", "KIND_TPU"))
    with pytest.raises(InspectorError, match="not a valid Triton model configuration"):
        read_config(root / "config.pbtxt")
