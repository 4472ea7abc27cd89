"""The whole path as a user runs it: `inspector run` as a subprocess, a plain pyzmq SUB as the line."""

from __future__ import annotations

import json
import re
import signal
import time

import cv2
import numpy as np
import pytest
import zmq

from daemon_helpers import audit_frames, run_cli, start_daemon, wait_http, write_config


def _collect(endpoint: str, proc, topic: bytes, until_exit: bool = True, timeout: float = 120) -> list[dict]:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)  # before the daemon binds: no slow-joiner loss
    out = []
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if sub.poll(200):
                parts = sub.recv_multipart()
                out.append({"topic": parts[0], **json.loads(parts[1])})
            elif proc.poll() is not None:
                while sub.poll(200):
                    parts = sub.recv_multipart()
                    out.append({"topic": parts[0], **json.loads(parts[1])})
                break
    finally:
        sub.close(0)
        ctx.term()
    return out


def test_genicam_simulated_camera_end_to_end(tmp_path):
    cfg_path, cfg = write_config(
        tmp_path, camera={"driver": "genicam", "cti": None, "width": 320, "height": 240,
                          "pixel_format": "Mono8", "fps": 30})
    proc = start_daemon(cfg_path, "--duration", "5")
    results = _collect(cfg["publish"]["endpoint"], proc, b"result.quality.")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    ids = [r["frame_id"] for r in results]
    assert len(ids) >= 50, out
    assert all(b > a for a, b in zip(ids, ids[1:])), "frame ids must be strictly increasing"
    r0 = results[0]
    assert r0["topic"] == b"result.quality." and r0["schema"] == 1 and r0["inspection"] == "quality"
    assert r0["verdict"] in ("pass", "reject") and r0["camera"].startswith("genicam")
    assert {"focus", "dark_fraction", "saturated_fraction"} <= set(r0["scores"])
    # accounting: every acquired frame ends exactly once; results + drops (+ lost) = acquired
    m = re.search(r"acquired (\d+), inspected (\d+), dropped (\d+), lost (\d+)", out)
    acquired, inspected, dropped, lost = map(int, m.groups())
    assert acquired == inspected + dropped + lost
    assert len(results) == inspected
    frames = audit_frames(tmp_path / "state")
    assert len(frames) == acquired == len({f["frame_id"] for f in frames})
    assert sum(f["outcome"] == "inspected" for f in frames) == inspected
    assert "Traceback" not in out


def test_replay_skips_non_images_counts_them_and_keeps_going(tmp_path):
    lot = tmp_path / "lot"
    lot.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        cv2.imwrite(str(lot / f"{i}.png"), rng.integers(0, 255, (120, 160), dtype=np.uint8))
    (lot / "3.png").write_bytes(b"not an image at all")
    cfg_path, cfg = write_config(tmp_path, camera={"driver": "replay", "path": str(lot), "fps": 40})
    proc = start_daemon(cfg_path, "--duration", "3")
    try:
        metrics = b""
        end = time.monotonic() + 90
        while time.monotonic() < end and b'inspector_bad_input_total{kind="unreadable_file"}' not in metrics:
            metrics = wait_http(f"http://{cfg['metrics']['listen']}/metrics")
            time.sleep(0.5)
        out, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert b'inspector_bad_input_total{kind="unreadable_file"}' in metrics
    assert "3.png is not a readable image" in out
    frames = audit_frames(tmp_path / "state")
    assert len(frames) > 3 and {f["source"] for f in frames} == {"0.png", "1.png", "2.png"}


def test_sigterm_drains_and_exits_zero_quickly(tmp_path):
    cfg_path, cfg = write_config(tmp_path)
    proc = start_daemon(cfg_path)
    wait_http(f"http://{cfg['metrics']['listen']}/healthz")
    end = time.monotonic() + 90
    while time.monotonic() < end:  # wait until ready (frames flowing)
        try:
            wait_http(f"http://{cfg['metrics']['listen']}/readyz", timeout=1)
            break
        except Exception:
            time.sleep(0.3)
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, out
    assert elapsed < 10, f"drain took {elapsed:.1f} s"
    frames = audit_frames(tmp_path / "state")
    m = re.search(r"acquired (\d+), inspected (\d+), dropped (\d+), lost (\d+)", out)
    assert len(frames) == int(m.group(1)) > 0


@pytest.mark.parametrize("camera,inspections,needle", [
    ({"driver": "usbcam"}, None, "camera.driver"),
    ({"driver": "genicam", "cti": "/nonexistent/producer.cti"}, None, "producer file not found"),
    ({"fps": -5}, None, "camera.fps"),
    ({}, [{"name": "telepathy"}], "unknown inspection 'telepathy'"),
    ({"driver": "replay", "path": "/nonexistent/lot-42"}, None, "replay folder or file not found"),
])
def test_bad_input_gives_a_clear_error_and_nonzero_exit(tmp_path, camera, inspections, needle):
    over = {"camera": camera}
    if inspections is not None:
        over["inspections"] = inspections
    cfg_path, _ = write_config(tmp_path, **over)
    for cmd in (["config", "check", str(cfg_path)], ["run", "--config", str(cfg_path), "--duration", "1"]):
        r = run_cli(*cmd)
        assert r.returncode != 0, (cmd, r.stdout, r.stderr)
        assert needle in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_replay_without_loop_inspects_every_file_once_and_exits(tmp_path):
    lot = tmp_path / "lot"
    lot.mkdir()
    rng = np.random.default_rng(2)
    for i in range(12):
        cv2.imwrite(str(lot / f"{i:02d}.png"), rng.integers(0, 255, (120, 160), dtype=np.uint8))
    cfg_path, cfg = write_config(tmp_path, camera={"driver": "replay", "path": str(lot), "fps": 50, "loop": False},
                                 queue={"capacity": 2, "when_full": "block"})
    proc = start_daemon(cfg_path)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    frames = audit_frames(tmp_path / "state")
    assert sorted(f["source"] for f in frames) == [f"{i:02d}.png" for i in range(12)]
    assert all(f["outcome"] == "inspected" for f in frames)
