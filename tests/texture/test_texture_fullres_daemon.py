"""Full-resolution serving through the real daemon: 2580 × 1944 frames, no downscaling, 2 workers, the
shipped default tablet model; every frame is inspected, on record, with the right verdict.

Throughput is measured by ``bench/bench_texture_fullres.py``, not asserted here."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import cv2
import numpy as np
import zmq

from daemon_helpers import audit_frames, start_daemon, write_config
from inspector.synth.tablets import render_tablet

REPO = Path(__file__).resolve().parents[2]
W, H = 2580, 1944


def test_daemon_serves_full_resolution_tablets_with_the_default_model(tmp_path: Path) -> None:
    lot = tmp_path / "lot"
    lot.mkdir()
    expected = {}
    for name, cls, sev in (("0_good.png", "good", None), ("1_chip.png", "chip", 3), ("2_crack.png", "crack", 3)):
        img, _ = render_tablet(cls, 910 + len(expected), severity=sev, width=W, height=H)
        cv2.imwrite(str(lot / name), img)
        expected[name] = "pass" if cls == "good" else "reject"
    cfg_path, cfg = write_config(
        tmp_path, camera={"driver": "replay", "path": str(lot), "fps": 4, "loop": True},
        queue={"capacity": 4, "when_full": "block"}, models_dir=str(REPO / "models"),
        inspections=[{"name": "tablet_defect", "params": {"model": "tablet-defect-default"}}])
    got: list[tuple[bytes, dict, bytes | None]] = []
    stop = threading.Event()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    for topic in (b"result.tablet_defect.", b"snapshot.tablet_defect."):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(cfg["publish"]["endpoint"])

    def listen() -> None:
        while not stop.is_set():
            if sub.poll(100):
                parts = sub.recv_multipart()
                got.append((parts[0], json.loads(parts[1]), parts[2] if len(parts) > 2 else None))

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    try:
        proc = start_daemon(cfg_path, "--duration", "8")
        out, _ = proc.communicate(timeout=180)
    finally:
        stop.set()
        t.join(5)
        sub.close(0)
        ctx.term()
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    m = re.search(r"acquired (\d+), inspected (\d+), dropped (\d+), lost (\d+)", out)
    acquired, inspected, dropped, lost = map(int, m.groups())
    assert acquired == inspected + dropped + lost and inspected >= 3 and lost == 0, out
    # on record: every inspected frame with the verdict its tablet deserves
    frames = [f for f in audit_frames(tmp_path / "state") if f["outcome"] == "inspected"]
    assert len(frames) == inspected and {f["source"] for f in frames} == set(expected)
    for f in frames:
        (d,) = [d for d in f["decisions"] if d["inspection"] == "tablet_defect"]
        assert d["verdict"] == expected[f["source"]], (f["source"], d)
        assert d["model"]["version"] == "2" and (d["reason"] == "defect") == (d["verdict"] == "reject")
    # published: the worst patch in full-resolution pixels (an 8 × 8 grid over a ≈ 1470 px tablet, not a
    # downscaled copy) and, for a reject, the PNG snapshot with it drawn
    results = [h for topic, h, _ in got if topic.startswith(b"result.")]
    snaps = {h["frame_id"]: png for topic, h, png in got if topic.startswith(b"snapshot.")}
    assert results and all(h["verdict"] == expected[h["source"]] for h in results)
    for h in results:
        wp = h["detail"]["worst_patch"]
        assert 150 < wp["w"] == wp["h"] < 260 and 0 <= wp["x"] < W and 0 <= wp["y"] < H, wp
        assert h["detail"]["patches"] >= 40
        if h["verdict"] == "reject" and h["frame_id"] in snaps:
            png = cv2.imdecode(np.frombuffer(snaps[h["frame_id"]], np.uint8), cv2.IMREAD_COLOR)
            assert png is not None and max(png.shape[:2]) == 768
    assert any(h["verdict"] == "reject" and h["frame_id"] in snaps for h in results), "no snapshot published"
