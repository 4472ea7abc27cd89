"""Model hot reload through the control channel: verified before the swap, nothing lost; tampered refused."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from pathlib import Path

import zmq

from daemon_helpers import audit_frames, control, run_cli, start_daemon, wait_ready, write_config

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "models" / "tablet-defect-default" / "1"


def _version(models: Path, v: str, tamper: bool = False) -> None:
    d = models / "tablet-defect-default" / v
    shutil.copytree(DEFAULT, d)
    m = json.loads((d / "manifest.json").read_text())
    m["version"] = v
    (d / "manifest.json").write_text(json.dumps(m, indent=2))
    if tamper:
        art = d / next(iter(m["artifacts"]))
        data = bytearray(art.read_bytes())
        data[len(data) // 2] ^= 0xFF
        art.write_bytes(bytes(data))


def _config(tmp_path: Path, version: str = "1"):
    models = tmp_path / "models"
    _version(models, "1")
    return write_config(
        tmp_path, camera={"driver": "synthetic", "scene": "tablet", "width": 512, "height": 384, "fps": 8},
        inspections=[{"name": "tablet_defect", "params": {"model": "tablet-defect-default", "version": version}}],
        models_dir=str(models))


def test_tampered_model_at_start_is_a_config_error(tmp_path):
    cfg_path, _ = _config(tmp_path)
    _version(tmp_path / "models", "2", tamper=True)
    cfg_path.write_text(cfg_path.read_text().replace("version: '1'", "version: '2'"))
    r = run_cli("config", "check", str(cfg_path))
    assert r.returncode != 0 and "sha256" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("run", "--config", str(cfg_path), "--duration", "1")
    assert r.returncode != 0 and "sha256" in r.stderr


def test_hot_reload_swaps_verified_model_without_loss_and_refuses_tampered(tmp_path):
    cfg_path, cfg = _config(tmp_path)
    seen: list[tuple[int, str]] = []
    stop = threading.Event()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"result.tablet_defect.")
    sub.connect(cfg["publish"]["endpoint"])

    def listen():
        while not stop.is_set():
            if sub.poll(100):
                h = json.loads(sub.recv_multipart()[1])
                seen.append((h["frame_id"], h["model"]["version"]))

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    proc = start_daemon(cfg_path)
    try:
        wait_ready(cfg, proc)
        _version(tmp_path / "models", "2")
        _version(tmp_path / "models", "3", tamper=True)
        end = time.monotonic() + 30
        while not seen and time.monotonic() < end:
            time.sleep(0.1)
        r = control(cfg, "reload_model", inspection="tablet_defect", version="2")
        assert r["ok"], r
        end = time.monotonic() + 60
        while not any(v == "2" for _, v in seen) and time.monotonic() < end:
            time.sleep(0.1)
        bad = control(cfg, "reload_model", inspection="tablet_defect", version="3")
        assert not bad["ok"] and "sha256" in bad["error"]
        n = len(seen)
        end = time.monotonic() + 30
        while len(seen) < n + 5 and time.monotonic() < end:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        stop.set()
        t.join(5)
        sub.close(0)
        ctx.term()
    assert proc.returncode == 0, out
    versions = [v for _, v in seen]
    assert versions[0] == "1" and "2" in versions
    assert "3" not in versions, "tampered version 3 must never serve"
    frames = audit_frames(tmp_path / "state")
    # the 2 workers swap independently: each serves 1 until its own reload, then only 2 (never back, never 3)
    by_worker: dict[str, list[str]] = {}
    for f in frames:
        for d in f.get("decisions") or []:
            if d["inspection"] == "tablet_defect":
                by_worker.setdefault(f["worker"], []).append(d["model"]["version"])
    assert len(by_worker) == 2 and all("2" in vs for vs in by_worker.values()), by_worker
    for w, vs in by_worker.items():
        first2 = vs.index("2")
        assert set(vs[:first2]) <= {"1"} and all(v == "2" for v in vs[first2:]), (w, vs)
    assert [f for f in frames if f["outcome"] == "lost"] == []  # nothing lost during the swap
    import sqlite3

    con = sqlite3.connect(tmp_path / "state" / "audit.sqlite3")
    kinds = [k for (k,) in con.execute("SELECT kind FROM audit")]
    con.close()
    assert kinds.count("model_reload") >= 2  # one per worker
    r = run_cli("audit", "verify", "--config", str(cfg_path))
    assert r.returncode == 0, r.stdout + r.stderr
