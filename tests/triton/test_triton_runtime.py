"""The identity inspection served by a REAL Triton Inference Server (python backend running ONNX
Runtime on the exported model), compared with the in-process ONNX Runtime path: parity, Grad-CAM,
chunking, sha256 refusal, timeouts, server down -> error verdict + metric, reconnection, local fallback."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed (pip install -e '.[test]')")

from inspector.errors import ModelIntegrityError  # noqa: E402
from inspector.frame import Frame, FrameMeta  # noqa: E402
from inspector.identity.gradcam import HEAD_ARTIFACT, DenseHead, gradcam  # noqa: E402
from inspector.identity.runtime import OrtModel  # noqa: E402
from inspector.identity.tiling import frame_tiles, preprocess, to_gray_u8  # noqa: E402
from inspector.identity.triton_runtime import REASONS, TritonModel, TritonSettings  # noqa: E402
from inspector.inspections.base import InspectionContext  # noqa: E402
from inspector.inspections.excipient_identity import ExcipientIdentity  # noqa: E402
from inspector.offline.triton.server import TritonServer  # noqa: E402
from inspector.ops.metrics import REMOTE_FAILURE_REASONS, Metrics  # noqa: E402

MODEL, OTHER, MAX_BATCH = "excipient-identity-default", "identity-other", 20  # as in conftest.py's repository


def _sem(i: int) -> np.ndarray:
    from inspector.synth.sem import SEM_CLASSES, render_sem

    return render_sem(SEM_CLASSES[i % len(SEM_CLASSES)], 91_000 + i)[0]


def _frame(i: int) -> Frame:
    px = _sem(i)
    meta = FrameMeta(camera="sem0", frame_id=i, acquired_at=time.time(), width=px.shape[1], height=px.shape[0],
                     pixel_format="Mono8", run_id="run-t", context={})
    return Frame(px, meta)


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return [_frame(i) for i in range(4)]


def _tiles(frames: list[Frame], mode: str) -> np.ndarray:
    return np.concatenate([preprocess(frame_tiles(to_gray_u8(f.gray()), 224)[0], mode) for f in frames])


def _make(models_dir: Path, tmp_path: Path, runtime: str = "triton", **triton) -> ExcipientIdentity:
    ctx = InspectionContext(state_dir=tmp_path / "state", models_dir=models_dir)
    params = dict(version="1", providers=["CPUExecutionProvider"], min_confidence=0.0, gradcam_every_n_passes=1,
                  save_gradcam=False)
    if runtime == "triton":
        params.update(runtime="triton", triton=triton)
    return ExcipientIdentity(ExcipientIdentity.Params(**params), ctx)


def test_reasons_are_the_metric_labels():
    assert REASONS == REMOTE_FAILURE_REASONS


def test_parity_with_local_onnxruntime_and_chunking(model_dir, triton_server, frames):
    local = OrtModel(model_dir, ["CPUExecutionProvider"])
    remote = TritonModel(model_dir, TritonSettings(url=triton_server.grpc_url, model=MODEL, timeout_ms=20_000))
    assert remote.healthy and remote.max_batch_size == MAX_BATCH
    assert remote.info() == {"runtime": "triton", "url": triton_server.grpc_url, "model": MODEL, "version": "1",
                             "sha256": model_dir.manifest.artifacts["model.onnx"]["sha256"]}
    x = _tiles(frames[:3], local.preprocess_mode)[:50]  # 50 tiles: chunks of 20, 20, 10
    assert len(x) > MAX_BATCH
    a, b = local.run(x), remote.run(x)
    head = DenseHead.load(model_dir.artifact(HEAD_ARTIFACT))
    for k in ("probs", "conv_map", "pooled"):
        assert a[k].shape == b[k].shape
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-5, err_msg=k)
    cls = int(a["probs"].mean(0).argmax())
    np.testing.assert_allclose(gradcam(b["conv_map"], b["pooled"], head, cls),
                               gradcam(a["conv_map"], a["pooled"], head, cls), rtol=1e-5, atol=1e-5)
    remote.close()


def test_inspection_through_triton_equals_local(models_dir, triton_server, frames, tmp_path):
    local = _make(models_dir, tmp_path, runtime="onnxruntime")
    remote = _make(models_dir, tmp_path, url=triton_server.grpc_url, timeout_ms=20_000)
    for f in frames:
        a, b = local.inspect(f), remote.inspect(f)
        assert b.verdict == a.verdict and b.detail["identity"] == a.detail["identity"]
        assert b.scores.keys() == a.scores.keys()
        for k in a.scores:
            assert b.scores[k] == pytest.approx(a.scores[k], abs=1e-5), k
        assert b.detail["provider"] == "triton" and b.detail["tiles"] == 20
        rem = b.detail["remote"]
        assert rem["ok"] and rem["healthy"] and rem["served"] == "triton" and rem["seconds"] > 0
        assert rem["url"] == triton_server.grpc_url and rem["version"] == "1"
        # Grad-CAM goes out the same way, with the server named in the model info
        assert [x.kind for x in b.attachments] == [x.kind for x in a.attachments] == ["gradcam"]
        assert b.attachments[0].header["model"]["served_by"]["runtime"] == "triton"
    info = remote.model_info().to_dict()
    assert info["sha256"] == local.model_info().sha256
    assert info["served_by"] == {"runtime": "triton", "url": triton_server.grpc_url, "model": MODEL,
                                 "version": "1", "sha256": info["sha256"]}
    m = Metrics()
    m.observe_remote("excipient_identity", rem)
    assert m.registry.get_sample_value("inspector_remote_infer_seconds_count") == 1
    assert m.registry.get_sample_value("inspector_remote_up", {"inspection": "excipient_identity"}) == 1
    remote.close()


def test_wrong_sha256_is_refused_at_start_and_on_reload(models_dir, model_dir, triton_server, tmp_path):
    # the server serves a genuine model, but not the artifact our manifest verified
    with pytest.raises(ModelIntegrityError, match="refusing it"):
        TritonModel(model_dir, TritonSettings(url=triton_server.grpc_url, model=OTHER))
    with pytest.raises(ModelIntegrityError, match="refusing it"):
        _make(models_dir, tmp_path, url=triton_server.grpc_url, model=OTHER)
    # a hot reload to a version served wrongly keeps the verified one
    repo = tmp_path / "models"
    shutil.copytree(models_dir / MODEL / "1", repo / MODEL / "1")
    insp = ExcipientIdentity(ExcipientIdentity.Params(
        providers=["CPUExecutionProvider"], runtime="triton",
        triton={"url": triton_server.grpc_url, "timeout_ms": 20_000}),
        InspectionContext(state_dir=tmp_path / "s", models_dir=repo))
    before = insp.model_info().to_dict()
    shutil.copytree(models_dir / MODEL / "1", repo / MODEL / "2")
    insp.params = insp.params.model_copy(update={"triton": TritonSettings(url=triton_server.grpc_url, model=OTHER)})
    with pytest.raises(ModelIntegrityError):
        insp.reload("2")
    assert insp.model_info().to_dict() == before


def test_slow_server_times_out_with_a_reason(models_dir, triton_server, frames, tmp_path):
    insp = _make(models_dir, tmp_path, url=triton_server.grpc_url, timeout_ms=20_000, reconnect_s=0.2)
    assert insp.inspect(frames[0]).verdict != "error"
    # 1 ms is far below what 20 tiles take on this server: the frame is answered late -> timeout
    insp._current.ort.remote.settings = insp._current.ort.remote.settings.model_copy(update={"timeout_ms": 1})
    r = insp.inspect(frames[1])
    assert r.verdict == "error" and r.detail["reason"] == "remote_timeout", r.detail
    assert r.detail["remote"]["ok"] is False and r.detail["remote"]["healthy"] is False
    insp.close()


@pytest.fixture()
def own_server(triton_install, triton_repo, tmp_path):
    """A server of this test's own, to kill and bring back on the same ports."""
    server = TritonServer(triton_install, triton_repo, log_path=tmp_path / "triton.log").start()
    yield server
    server.stop()


def test_server_down_error_verdict_metric_then_reconnect(models_dir, own_server, frames, tmp_path):
    # generous timeout: a loaded CI machine must not turn "down" into "slow"
    insp = _make(models_dir, tmp_path, url=own_server.grpc_url, timeout_ms=30_000, reconnect_s=5.0)
    assert insp.inspect(frames[0]).detail["remote"]["healthy"]
    ports = (own_server.grpc_port, own_server.http_port, own_server.metrics_port)
    own_server.stop(signal.SIGKILL)  # the real server dies
    m = Metrics()
    r = insp.inspect(frames[1])
    assert r.verdict == "error" and r.detail["reason"] == "remote_unavailable", r.detail
    assert "triton" in r.detail["error"] and r.detail["remote"]["healthy"] is False
    m.observe_remote("excipient_identity", r.detail["remote"])
    r2 = insp.inspect(frames[2])  # within reconnect_s: fails fast, no new connection attempt
    assert r2.verdict == "error" and r2.detail["reason"] == "remote_unavailable"
    assert "next reconnection in" in r2.detail["error"], r2.detail
    m.observe_remote("excipient_identity", r2.detail["remote"])
    assert m.registry.get_sample_value("inspector_remote_infer_failures_total", {"reason": "unavailable"}) == 2
    assert m.registry.get_sample_value("inspector_remote_up", {"inspection": "excipient_identity"}) == 0
    assert not insp._current.ort.healthy  # what readiness reads
    # the server comes back (same ports): the next frame after reconnect_s reconnects and re-verifies
    server = TritonServer(own_server.install, own_server.model_repository, ports=ports,
                          log_path=tmp_path / "triton2.log").start()
    try:
        time.sleep(max(0.0, insp._current.ort.remote._retry_at - time.monotonic()) + 0.05)
        r3 = insp.inspect(frames[3])
        assert r3.verdict in ("pass", "reject") and r3.detail["remote"]["healthy"], r3.detail
        m.observe_remote("excipient_identity", r3.detail["remote"])
        assert m.registry.get_sample_value("inspector_remote_up", {"inspection": "excipient_identity"}) == 1
    finally:
        insp.close()
        server.stop()


def test_server_swapped_for_another_artifact_is_refused_after_reconnect(models_dir, own_server, swapped_repo,
                                                                      frames, tmp_path):
    insp = _make(models_dir, tmp_path, url=own_server.grpc_url, timeout_ms=30_000, reconnect_s=0.1)
    assert insp.inspect(frames[0]).verdict in ("pass", "reject")
    ports = (own_server.grpc_port, own_server.http_port, own_server.metrics_port)
    own_server.stop(signal.SIGKILL)
    assert insp.inspect(frames[1]).detail["reason"] == "remote_unavailable"
    # back on the same address, but serving another file under the same model name
    with TritonServer(own_server.install, swapped_repo, ports=ports, log_path=tmp_path / "swapped.log"):
        time.sleep(0.2)
        for f in frames[2:]:  # refused on every reconnection attempt: nothing is inferred there
            r = insp.inspect(f)
            assert r.verdict == "error" and r.detail["reason"] == "remote_sha256_mismatch", r.detail
            assert "refusing it" in r.detail["error"] or "next reconnection" in r.detail["error"]
            time.sleep(0.15)
    insp.close()


def test_unreachable_at_start_then_served(models_dir, triton_install, triton_repo, frames, tmp_path):
    from inspector.offline.triton.server import free_port

    ports = (free_port(), free_port(), free_port())
    insp = _make(models_dir, tmp_path, url=f"127.0.0.1:{ports[0]}", timeout_ms=30_000, reconnect_s=0.1)
    assert insp.model_info().to_dict()["served_by"]["version"] is None  # nothing verified yet
    r = insp.inspect(frames[0])
    assert r.verdict == "error" and r.detail["reason"] == "remote_unavailable"
    with TritonServer(triton_install, triton_repo, ports=ports, log_path=tmp_path / "t.log"):
        time.sleep(0.2)
        assert insp.inspect(frames[1]).verdict in ("pass", "reject")
        assert insp.model_info().to_dict()["served_by"]["version"] == "1"
    insp.close()


def test_local_fallback_when_the_server_is_down(models_dir, frames, tmp_path):
    from inspector.offline.triton.server import free_port

    local = _make(models_dir, tmp_path, runtime="onnxruntime")
    insp = _make(models_dir, tmp_path, url=f"127.0.0.1:{free_port()}", timeout_ms=2000, on_unavailable="local")
    a, b = local.inspect(frames[0]), insp.inspect(frames[0])
    assert b.verdict == a.verdict and b.scores == a.scores  # the same artifact, in-process
    rem = b.detail["remote"]
    assert rem["ok"] is False and rem["reason"] == "unavailable" and rem["served"] == "local"
    assert b.detail["provider"] == "CPUExecutionProvider"
    assert insp.model_info().to_dict()["served_by"]["runtime"] == "onnxruntime"
    m = Metrics()
    m.observe_remote("excipient_identity", rem)
    assert m.registry.get_sample_value("inspector_remote_infer_fallbacks_total") == 1
    assert m.registry.get_sample_value("inspector_remote_infer_failures_total", {"reason": "unavailable"}) == 1
    assert m.registry.get_sample_value("inspector_remote_up", {"inspection": "excipient_identity"}) == 1
    insp.close()
