"""The operator page in a real headless browser (Debian's chromium over the DevTools protocol) against
`inspector run` with the excipient-identity CNN: the page loads, shows the lot and the last frame's
thumbnail, the reject gallery fills with Grad-CAM overlays, and — with the line paused so nothing
moves — every counter on the page equals /metrics. A screenshot PNG is kept (out/operator-page.png)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdp import Browser, find_chromium
from daemon_helpers import control, free_port, wait_ready
from line_helpers import Daemon, start_controller, write_config

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "ci" / "install-browser.sh"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = find_chromium()
    note = ""
    if path is None and hasattr(os, "geteuid") and os.geteuid() == 0:
        r = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=900)
        lines = (r.stderr or r.stdout).strip().splitlines()
        note = lines[-1] if lines else ""
        path = find_chromium()
    if path is None:
        pytest.skip("chromium not installed and could not be installed "
                    f"(run deploy/ci/install-browser.sh as root){': ' + note if note else ''}")
    pytest.importorskip("websocket", reason="websocket-client not installed (pip install websocket-client)")
    return path


def _metrics(listen: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _sum(metrics: dict, name: str) -> float:
    return sum(v for (n, _), v in metrics.items() if n == name)


def _stable_counters(listen: str, quiet_s: float = 2.0, timeout: float = 90.0) -> None:
    """Wait until every acquired frame has ended (processed, dropped or lost) after a pause and the
    counters stay still for quiet_s."""
    end = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < end:
        m = _metrics(listen)
        acquired = _sum(m, "inspector_frames_acquired_total")
        ended = sum(_sum(m, n) for n in ("inspector_frames_processed_total", "inspector_frames_dropped_total",
                                          "inspector_frames_lost_total"))
        cur = (acquired, ended)
        if cur != last or acquired != ended:
            last, since = cur, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.25)
    raise TimeoutError("counters kept moving after pause")


def test_operator_page_in_headless_chromium(tmp_path, chromium):
    cfg_path, cfg = write_config(
        tmp_path, camera={"scene": "sem", "width": 1280, "height": 960, "fps": 1}, workers=1,
        queue={"capacity": 4, "when_full": "drop_oldest"},
        inspections=[{"name": "quality", "params": {"max_saturated_fraction": 0.15}},
                     {"name": "excipient_identity",
                      "params": {"model": "excipient-identity-default", "min_confidence": 0.3}}],
        lot={"id": "LOT-OP-1", "recipe": "DEMO", "expected_excipient": "mannit_q"},
        line={"reject_endpoint": f"tcp://127.0.0.1:{free_port()}", "deadline_ms": 1000},
        operator={"rejects": 6})
    listen = cfg["metrics"]["listen"]
    ctl = start_controller(cfg["line"]["reject_endpoint"])
    daemon = Daemon(cfg_path)
    browser = None
    try:
        wait_ready(cfg, daemon.proc)
        browser = Browser(chromium, free_port())
        browser.navigate(f"http://{listen}/operator")
        browser.wait_for("document.body && Number(document.body.dataset.updates || 0) >= 2")
        text = browser.evaluate("Object.fromEntries(['lot','recipe','expected','machine-state','ready']"
                                ".map(id => [id, document.getElementById(id).textContent]))")
        assert text == {"lot": "LOT-OP-1", "recipe": "DEMO", "expected": "mannit_q",
                        "machine-state": "Operational", "ready": "ready"}
        thumb = browser.wait_for("(() => { const i = document.getElementById('last-thumb');"
                                 " return i.complete && i.naturalWidth > 0 && [i.naturalWidth, i.naturalHeight]; })()",
                                 timeout=60)
        assert max(thumb) <= 256 and thumb[0] / thumb[1] == pytest.approx(1280 / 960, rel=0.02)
        # the synthetic camera cycles through 10 excipients; 9 are not mannit_q: rejects with Grad-CAM
        n = browser.wait_for("(() => { const g = Array.from(document.querySelectorAll('#gallery .reject img.gradcam'));"
                             " return g.length >= 2 && g.every(i => i.complete && i.naturalWidth > 0) && g.length; })()",
                             timeout=120)
        assert n >= 2
        caption = browser.evaluate("document.querySelector('#gallery .reject .caption').textContent")
        assert "excipient_identity: reject" in caption

        control(cfg, "pause")
        _stable_counters(listen)
        u = browser.evaluate("Number(document.body.dataset.updates)")
        browser.wait_for(f"Number(document.body.dataset.updates) >= {u + 2}")
        dom = browser.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('[data-metric]'))"
                               ".map(e => [e.dataset.metric, Number(e.textContent)]))")
        rows = browser.evaluate("Array.from(document.querySelectorAll('#results tbody tr'))"
                                ".map(r => Array.from(r.cells).map(c => c.textContent))")
        state = browser.evaluate("document.getElementById('machine-state').textContent")
        metrics = _metrics(listen)
        shot = browser.screenshot(tmp_path / "operator-page.png")
    finally:
        if browser is not None:
            browser.close()
        log = daemon.stop()
        ctl.terminate()
        ctl.wait(10)
    assert daemon.proc.returncode == 0, log
    assert len(dom) == 7
    for name, value in dom.items():
        assert value == _sum(metrics, name), f"{name}: page {value} != /metrics {_sum(metrics, name)}"
    assert dom["inspector_frames_processed_total"] >= 3 and dom["inspector_reject_commands_total"] >= 2
    for inspection, *counts in rows:
        for verdict, shown in zip(("pass", "reject", "error"), counts):
            key = ("inspector_results_total", (("inspection", inspection), ("verdict", verdict)))
            assert float(shown) == metrics[key], (inspection, verdict)
    assert state == "Halted", "paused from the control channel"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    out = REPO / "out"
    out.mkdir(exist_ok=True)
    shutil.copy(shot, out / "operator-page.png")  # the test artifact (out/ is git-ignored)
