"""Lot drift in the real daemon: a lot change writes a `lot_summary` record and the drift metrics appear."""

from __future__ import annotations

import signal
import time
import urllib.request

from daemon_helpers import audit_records, control, start_daemon, wait_ready, write_config
from openset_helpers import MODEL, calibrated_repo


def _metrics(cfg: dict) -> str:
    with urllib.request.urlopen(f"http://{cfg['metrics']['listen']}/metrics", timeout=5) as r:
        return r.read().decode()


def test_lot_change_writes_lot_summary_and_exports_drift(tmp_path, tmp_path_factory):
    repo, data = calibrated_repo(tmp_path_factory)
    expected = "mannit_q"
    cfg_path, cfg = write_config(
        tmp_path, camera={"driver": "replay", "path": str(data / expected), "fps": 3, "loop": True},
        workers=1, models_dir=str(repo), lot={"id": "L1", "expected_excipient": expected},
        inspections=[{"name": "excipient_identity",
                      "params": {"model": MODEL, "min_confidence": 0.0, "gradcam_every_n_passes": 0}}])
    proc = start_daemon(cfg_path)
    try:
        wait_ready(cfg, proc, timeout=180)
        end = time.monotonic() + 120
        while time.monotonic() < end and 'inspector_lot_frames{excipient="mannit_q",lot="L1"} 4' not in _metrics(cfg):
            time.sleep(0.5)
        text = _metrics(cfg)
        assert 'inspector_lot_frames{excipient="mannit_q",lot="L1"}' in text, text[-2000:]
        for view in ("embedding", "morphology"):  # both views of the calibrated model are exported
            assert f'inspector_lot_drift_threshold{{excipient="mannit_q",lot="L1",view="{view}"}}' in text
        assert control(cfg, "set_lot", lot="L2")["ok"]
        end = time.monotonic() + 120
        while time.monotonic() < end and 'lot="L2"' not in _metrics(cfg):
            time.sleep(0.5)
        text = _metrics(cfg)
        assert 'inspector_lot_drift{excipient="mannit_q",lot="L2",view="morphology"}' in text
        assert 'inspector_lot_drift{excipient="mannit_q",lot="L1",view="embedding"}' in text  # the previous lot stays
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    summaries = audit_records(tmp_path / "state", "lot_summary")
    l1 = [s for s in summaries if s["lot"] == "L1"]
    assert len(l1) == 1, summaries
    l2 = [s for s in summaries if s["lot"] == "L2"]  # the lot running at SIGTERM is closed too
    assert len(l2) == 1 and l2[0]["closed_by"] == "shutdown" and l2[0]["frames"] >= 1, summaries
    s = l1[0]
    assert s["excipient"] == expected and s["frames"] >= 4 and s["closed_by"] == "lot_change"
    assert s["frames_embedded"] == s["frames"] and s["drift"] is not None and s["threshold"] > 0
    assert sum(s["verdicts"].values()) == s["frames"] and s["model"]["name"] == MODEL
    assert s["views"]["morphology"]["frames"] == s["frames"] and s["views"]["morphology"]["drift"] is not None
    assert s["alarm"] == bool(s["alarm_views"])
    # the frame records of the lot carry the compact embedding and the morphology for `inspector drift report`
    frames = [f for f in audit_records(tmp_path / "state", "frame") if f.get("lot") == "L1" and f["decisions"]]
    assert frames and all(len(f["decisions"][0]["embedding"]) == 8 for f in frames)
    assert all(len(f["decisions"][0]["morphology"]) == 4 for f in frames)
