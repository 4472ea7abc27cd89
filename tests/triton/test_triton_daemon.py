"""The daemon end to end with the identity CNN served by a real Triton server: results and audit
records name the server's model, the supervisor's metrics count remote round trips, and when the
server is killed mid-run the frames get verdict error with the reason (counted), the daemon runs on."""

from __future__ import annotations

import re
import signal
import time

import pytest

pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed (pip install -e '.[test]')")

from daemon_helpers import audit_frames, start_daemon, wait_http, write_config  # noqa: E402

from inspector.offline.triton.server import TritonServer  # noqa: E402


def _metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.slow
def test_daemon_identity_through_triton_then_server_killed(triton_install, triton_repo, repo_root, tmp_path):
    server = TritonServer(triton_install, triton_repo, log_path=tmp_path / "triton.log").start()
    proc = None
    try:
        cfg_path, cfg = write_config(
            tmp_path, camera={"driver": "synthetic", "scene": "sem", "width": 1280, "height": 960, "fps": 2},
            workers=1, models_dir=str(repo_root / "models"),
            inspections=[{"name": "excipient_identity", "params": {
                "version": "1", "min_confidence": 0.0, "gradcam_every_n_passes": 0,
                "providers": ["CPUExecutionProvider"],
                "runtime": "triton", "triton": {"url": server.grpc_url, "timeout_ms": 30_000, "reconnect_s": 0.5}}}])
        proc = start_daemon(cfg_path)  # stopped by SIGTERM once the checks are done (drains, exits 0)
        url = f"http://{cfg['metrics']['listen']}/metrics"
        end, text = time.monotonic() + 120, ""
        while time.monotonic() < end and _metric(text, "inspector_remote_infer_seconds_count") < 3:
            text = wait_http(url).decode()
            time.sleep(0.3)
        assert _metric(text, "inspector_remote_infer_seconds_count") >= 3, text[-2000:]
        assert _metric(text, "inspector_remote_up", '{inspection="excipient_identity"}') == 1
        server.stop(signal.SIGKILL)
        while time.monotonic() < end and _metric(
                text, "inspector_remote_infer_failures_total", '{reason="unavailable"}') < 2:
            text = wait_http(url).decode()
            time.sleep(0.3)
        assert _metric(text, "inspector_remote_infer_failures_total", '{reason="unavailable"}') >= 2
        assert _metric(text, "inspector_remote_up", '{inspection="excipient_identity"}') == 0
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        server.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    decisions = [d for f in audit_frames(tmp_path / "state") if f["outcome"] == "inspected" for d in f["decisions"]]
    served = [d for d in decisions if d["verdict"] in ("pass", "reject")]
    failed = [d for d in decisions if d["verdict"] == "error"]
    assert served and failed, decisions
    for d in served:  # the audit names the server, the Triton model and version, and the verified sha256
        sb = d["model"]["served_by"]
        assert sb == {"runtime": "triton", "url": server.grpc_url, "model": "excipient-identity-default",
                      "version": "1", "sha256": d["model"]["sha256"]}
    assert {d["reason"] for d in failed} == {"remote_unavailable"}
