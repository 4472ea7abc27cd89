"""Remote inspection workers: `inspector worker --connect` processes on "another host" (loopback here),
over tcp with CURVE (the daemon's key pinned, the workers' keys on the allow-list). The supervisor
accounts their frames like local ones; a remote worker that disappears loses only the frame it held,
with its reason; a worker with a key not on the allow-list gets nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from daemon_helpers import free_port, run_cli
from fault_harness import Line

SYNTH = {"driver": "synthetic", "scene": "noise", "width": 320, "height": 240, "fps": 20}


def _keys(tmp: Path) -> dict[str, Path]:
    d = tmp / "keys"
    for name in ("server", "worker1", "worker2", "intruder"):
        r = run_cli("keys", "generate", str(d / name), "--name", name)
        assert r.returncode == 0, r.stderr
    allowed = d / "allowed"
    allowed.mkdir()
    for name in ("worker1", "worker2"):
        (allowed / f"{name}.key").write_bytes((d / name / f"{name}.key").read_bytes())
    return {"dir": d, "allowed": allowed}


def _worker(tmp: Path, keys: dict, name: str, connect: str, *, key: str) -> subprocess.Popen:
    d = keys["dir"]
    cfg = {"inspections": [{"name": "quality"}], "log": {"results": False},
           "security": {"curve_server_public_key_file": str(d / "server" / "server.key"),
                        "curve_client_secret_key_file": str(d / key / f"{key}.key_secret")}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.Popen([sys.executable, "-m", "inspector", "worker", "--connect", connect, "--config", str(path),
                             "--name", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_remote_workers_over_curve_are_accounted_like_local_ones(tmp_path):
    keys = _keys(tmp_path)
    port = free_port()
    while any(_busy(p) for p in (port, port + 1, port + 2)):
        port = free_port()
    connect = f"tcp://127.0.0.1:{port}"
    d = keys["dir"]
    security = {"curve_server_secret_key_file": str(d / "server" / "server.key_secret"),
                "curve_server_public_key_file": str(d / "server" / "server.key"),
                "curve_allowed_clients_dir": str(keys["allowed"]),
                "curve_client_secret_key_file": str(d / "worker1" / "worker1.key_secret")}
    line = Line(tmp_path, workers=1, camera=SYNTH, security=security,
                transport={"remote_listen": connect, "remote_timeout_s": 2.0})
    # the test's own subscriber is a CURVE client of the publisher too
    line.sub.sock.curve_secretkey, line.sub.sock.curve_publickey = _pair(d / "worker1" / "worker1.key_secret")
    line.sub.sock.curve_serverkey = _public(d / "server" / "server.key")
    line.sub.sock.disconnect(line.cfg["publish"]["endpoint"])
    line.sub.sock.connect(line.cfg["publish"]["endpoint"])
    workers = []
    with line:
        workers = [_worker(tmp_path, keys, n, connect, key=k) for n, k in (("r-a", "worker1"), ("r-b", "worker2"))]
        intruder = _worker(tmp_path, keys, "r-evil", connect, key="intruder")
        end = time.monotonic() + 60
        while time.monotonic() < end and len(line.status()["remote_workers"]) < 2:
            time.sleep(0.2)
        assert line.status()["remote_workers"] == ["r-a", "r-b"]
        time.sleep(3)
        t_kill = time.time()
        workers[0].send_signal(signal.SIGKILL)  # a remote host disappears
        time.sleep(3.5)  # > remote_timeout_s
        assert line.status()["remote_workers"] == ["r-b"]
        assert line.wait_resumed(t_kill) < 5
        code, out = line.stop()
    for p in [*workers, intruder]:
        p.kill()
        p.wait(10)
    assert code == 0, out[-2000:]
    acquired, inspected, dropped, lost = line.counts()
    assert acquired == inspected + dropped + lost
    frames = line.frames()
    ids = sorted(f["frame_id"] for f in frames)
    assert ids == list(range(len(ids))) and len(ids) == acquired
    by = {f.get("worker") for f in frames if f["outcome"] == "inspected"}
    assert {"r-a", "r-b"} <= by, by                         # remote workers did inspect frames
    assert "r-evil" not in by                               # the unknown key got nothing
    assert {f["reason"] for f in frames if f["outcome"] == "lost"} <= {"remote_worker_gone", "shutdown"}


def _busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pair(secret: Path) -> tuple[bytes, bytes]:
    import zmq.auth

    public, secret_key = zmq.auth.load_certificate(str(secret))
    return secret_key, public


def _public(path: Path) -> bytes:
    import zmq.auth

    return zmq.auth.load_certificate(str(path))[0]
