"""The dashboard's Triton panel, run by a real Prometheus scraping the real Triton server's metrics
port (job triton, as in deploy/prometheus/prometheus.yml), after real inferences."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed (pip install -e '.[test]')")

from inspector.identity.triton_runtime import TritonModel, TritonSettings  # noqa: E402
from inspector.offline.triton.server import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TITLE = "Triton queue and compute time per request"


def _panel_exprs() -> list[str]:
    dash = json.loads((REPO / "deploy/grafana/dashboards/inspector.json").read_text(encoding="utf-8"))
    (panel,) = [p for p in dash["panels"] if p["title"] == TITLE]
    return [t["expr"].replace("$__rate_interval", "20s") for t in panel["targets"]]


def _query(url: str, expr: str) -> list:
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=10) as r:
        doc = json.loads(r.read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def test_prometheus_job_and_dashboard_panel_on_real_triton_metrics(triton_server, model_dir, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (bash deploy/ci/install-prometheus.sh)")
    shipped = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in shipped["scrape_configs"] if j["job_name"] == "triton"]
    assert job["static_configs"][0]["targets"][0].endswith(":8002")  # Triton's default metrics port
    port = free_port()
    job = {**job, "static_configs": [{"targets": [f"127.0.0.1:{triton_server.metrics_port}"]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"}, "scrape_configs": [job]}))
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    model = TritonModel(model_dir, TritonSettings(url=triton_server.grpc_url, timeout_ms=20_000))
    x = np.zeros((20, 224, 224, 3), np.float32)
    try:
        end = time.monotonic() + 60
        results: list[list] = []
        while time.monotonic() < end:
            model.run(x)  # traffic while Prometheus scrapes
            try:
                results = [_query(url, e) for e in _panel_exprs()]
            except OSError:
                results = []
            if results and all(results):
                break
            time.sleep(0.5)
        assert results and all(results), f"panel queries stayed empty: {results}"
        for res in results:  # queue / compute seconds per request of the served model
            by_model = {s["metric"]["model"]: float(s["value"][1]) for s in res}
            assert 0 <= by_model["excipient-identity-default"] < 10, by_model
        compute = {s["metric"]["model"]: float(s["value"][1]) for s in results[1]}
        assert compute["excipient-identity-default"] > 0
    finally:
        model.close()
        proc.terminate()
        proc.wait(10)
