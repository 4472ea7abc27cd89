"""Settings and access rules of the line integration: one-line errors naming the key (bad values,
address in use), the operator page's token on a real HTTP listener, and the worker's thumbnail."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
import yaml

from daemon_helpers import free_port, run_cli, write_config
from inspector.errors import ConfigError
from inspector.frame import Frame, FrameMeta
from inspector.line.settings import OperatorConfig
from inspector.ops.http import HealthServer
from inspector.ops.metrics import Metrics
from inspector.ops.operator_page import OperatorFeed, OperatorPage, require_token

TOKEN = "0123456789abcdef-operator"


BAD_SETTINGS = [
    ({"line": {"reject_endpoint": "http://x:1"}}, "line.reject_endpoint"),
    ({"line": {"reject_endpoint": "tcp://127.0.0.1:5562", "deadline_ms": 50, "resend_ms": 100}}, "resend_ms"),
    ({"line": {"require": "most"}}, "line.require"),
    ({"line": {"actionable": ["explode"]}}, "line.actionable.0"),
    ({"line": {"deadline": 5}}, "line.deadline: unknown key"),
    ({"opcua": {"enabled": True, "endpoint": "tcp://127.0.0.1:4840"}}, "opcua.endpoint"),
    ({"opcua": {"enabled": True, "security": ["Basic256Sha256_SignAndEncrypt"]}}, "certificate and private_key"),
    ({"operator": {"rejects": 0}}, "operator.rejects"),
]


@pytest.mark.parametrize("block, expected", BAD_SETTINGS)
def test_bad_settings_give_one_line_naming_the_key(tmp_path, block, expected):
    from inspector.config import load_config
    from inspector.line.settings import validate_all

    path, _ = write_config(tmp_path, **block)
    with pytest.raises(ConfigError) as e:
        validate_all(load_config(path))
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_config_check_cli_reports_the_key_on_one_line(tmp_path):
    path, _ = write_config(tmp_path, line={"require": "most"})
    r = run_cli("config", "check", str(path))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == ["error: invalid configuration: line.require: Input should be 'any' or 'all'"], lines


def test_reject_endpoint_in_use_is_a_one_line_error(tmp_path):
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        path, _ = write_config(tmp_path, line={"reject_endpoint": f"tcp://127.0.0.1:{port}"})
        r = run_cli("run", "--config", str(path), "--duration", "1", timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: line.reject_endpoint: cannot bind") and f"127.0.0.1:{port}" in last, r.stderr


def test_non_loopback_reject_endpoint_needs_curve(tmp_path):
    path, _ = write_config(tmp_path, line={"reject_endpoint": "tcp://0.0.0.0:5562"})
    r = run_cli("run", "--config", str(path), "--duration", "1", timeout=120)
    assert r.returncode != 0 and "CURVE is not configured" in r.stderr.strip().splitlines()[-1]


def test_operator_token_policy():
    require_token("127.0.0.1:9108", OperatorConfig())
    require_token("[::1]:9108", OperatorConfig())
    require_token("0.0.0.0:9108", OperatorConfig(enabled=False))
    with pytest.raises(ConfigError, match="operator.token_file"):
        require_token("0.0.0.0:9108", OperatorConfig())


def test_operator_page_locked_on_a_network_bind_without_token():
    metrics = Metrics()
    feed = OperatorFeed(metrics.registry, rejects=2)
    server = HealthServer("127.0.0.1:0", metrics.registry, lambda: (True, []))
    server.start()
    try:
        server.add_route("/operator", OperatorPage(feed, None, locked="operator page locked: reason"))
        status, body, _ = _get(f"{server.url}/operator/state.json")
        assert status == 403 and b"locked" in body
        assert _get(f"{server.url}/metrics")[0] == 200
    finally:
        server.stop()


def _frame(fid: int, shape=(960, 1280)) -> Frame:
    rng = np.random.default_rng(fid)
    px = rng.integers(0, 255, shape, dtype=np.uint8)
    meta = FrameMeta(camera="cam0", frame_id=fid, acquired_at=time.time(), width=shape[1], height=shape[0],
                     pixel_format="Mono8")
    return Frame(px, meta)


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_operator_page_with_token_and_thumbnail_over_http():
    from inspector.daemon.worker import thumbnail

    metrics = Metrics()
    feed = OperatorFeed(metrics.registry, rejects=2)
    for fid, verdict in enumerate(["reject", "pass", "reject", "reject"]):
        fr = _frame(fid)
        head, jpeg = thumbnail(fr, 256)
        headers = [{"frame_id": fid, "acquired_at": fr.meta.acquired_at, "inspection": "quality",
                    "verdict": verdict, "scores": {"focus": 1.5}, "detail": {"reasons": ["out_of_focus"]},
                    "model": None}]
        feed.published(headers, [("thumbnail", None, head, jpeg)])
        metrics.results.labels(inspection="quality", verdict=verdict).inc()
    server = HealthServer("127.0.0.1:0", metrics.registry, lambda: (True, []))
    server.start()
    try:
        server.add_route("/operator", OperatorPage(feed, TOKEN))
        base = server.url
        assert _get(f"{base}/operator")[0] == 401
        assert _get(f"{base}/operator/state.json", {"Authorization": "Bearer wrong-token-xxxxxxxx"})[0] == 401
        status, body, headers = _get(f"{base}/operator?token={TOKEN}")
        assert status == 200 and b"/operator/static/operator.js" in body
        cookie = headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in headers["Set-Cookie"]
        status, body, _ = _get(f"{base}/operator/state.json", {"Cookie": cookie})
        state = json.loads(body)
        assert status == 200 and [r["frame_id"] for r in state["rejects"]] == [3, 2], "newest first, N kept"
        assert state["results"]["quality"] == {"pass": 1.0, "reject": 3.0}
        status, jpeg, headers = _get(base + state["last"]["thumbnail"], {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
        assert img.shape == (192, 256)
        # evicted: frame 0 is neither the last frame nor among the 2 kept rejects
        assert _get(f"{base}/operator/img/0-thumbnail-frame.jpg", {"Authorization": f"Bearer {TOKEN}"})[0] == 404
        assert _get(f"{base}/operator/static/../../http.py", {"Authorization": f"Bearer {TOKEN}"})[0] == 404
        assert _get(f"{base}/metrics")[0] == 200  # the page's token does not change the scrape endpoint
    finally:
        server.stop()


def test_thumbnail_of_16_bit_rgb_frames():
    from inspector.daemon.worker import thumbnail

    px = np.zeros((300, 100, 3), np.uint16)
    px[..., 0] = 65535  # pure red
    fr = Frame(px, FrameMeta(camera="c", frame_id=0, acquired_at=0.0, width=100, height=300, pixel_format="RGB8"))
    head, data = thumbnail(fr, 128)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert head == {"format": "jpeg", "width": 43, "height": 128} and img.shape == (128, 43, 3)
    b, g, r = img[64, 20]
    assert r > 200 and g < 50 and b < 50, "RGB order kept (OpenCV writes BGR)"


def test_config_check_accepts_the_documented_blocks(tmp_path):
    users = tmp_path / "users.yaml"
    users.write_text("op: pbkdf2_sha256$1000$00$00\n")
    token = tmp_path / "token"
    token.write_text(TOKEN)
    path, cfg = write_config(tmp_path, line={"reject_endpoint": "tcp://127.0.0.1:5562", "deadline_ms": 500,
                                             "resend_ms": 100, "actionable": ["reject", "error"], "require": "all"},
                             opcua={"enabled": True, "endpoint": "opc.tcp://127.0.0.1:4840", "users_file": str(users)},
                             operator={"token_file": str(token)}, metrics={"listen": "0.0.0.0:9999"})
    r = run_cli("config", "check", str(path))
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(path.read_text())["line"]["require"] == "all"


@pytest.mark.parametrize("snap, state", [
    ({"ready": False, "paused": False, "stopping": False, "counts": {"acquired": 5, "inspected": 0}}, "Preoperational"),
    ({"ready": True, "paused": False, "stopping": False, "counts": {"inspected": 9}}, "Operational"),
    ({"ready": True, "paused": True, "stopping": False, "counts": {"inspected": 9}}, "Halted"),
    ({"ready": False, "paused": False, "stopping": True, "counts": {"inspected": 9}}, "Halted"),
    ({"ready": False, "paused": False, "stopping": False, "counts": {"inspected": 9}}, "Error"),
])
def test_machine_state_mapping(snap, state):
    from inspector.line.state import machine_state

    assert machine_state(snap) == state
