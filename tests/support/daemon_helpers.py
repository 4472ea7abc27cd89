"""Helpers to run the real daemon as a subprocess, as a user would."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp: Path, **over) -> tuple[Path, dict]:
    cfg = {
        "camera": {"driver": "synthetic", "scene": "noise", "width": 320, "height": 240, "fps": 30},
        "workers": 2,
        "publish": {"endpoint": f"tcp://127.0.0.1:{free_port()}"},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "state_dir": str(tmp / "state"),
        "inspections": [{"name": "quality"}],
        "log": {"results": False},
        "control": {"endpoint": f"tcp://127.0.0.1:{free_port()}"},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    p = tmp / "config.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p, cfg


def start_daemon(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inspector", "run", "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspector", *args], capture_output=True, text=True,
                          timeout=timeout)


def audit_records(state: Path, kind: str) -> list[dict]:
    """Payloads of one kind of audit record, in order, read straight from the store's SQLite file."""
    con = sqlite3.connect(state / "audit.sqlite3")
    try:
        rows = con.execute("SELECT payload FROM audit WHERE kind = ? ORDER BY seq", (kind,)).fetchall()
    finally:
        con.close()
    return [json.loads(r[0]) for r in rows]


def audit_frames(state: Path) -> list[dict]:
    return audit_records(state, "frame")


def wait_http(url: str, timeout: float = 60.0) -> bytes:
    import urllib.request

    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except Exception as e:  # noqa: BLE001 - retry until the listener is up
            last = e
            time.sleep(0.3)
    raise TimeoutError(f"{url}: {last}")


def control(cfg: dict, cmd: str, **args) -> dict:
    from inspector.control.client import send_command

    return send_command(cfg["control"]["endpoint"], cmd, args or None, user="test", timeout_s=10)


def wait_ready(cfg: dict, proc, timeout: float = 120.0) -> None:
    import urllib.error
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://{cfg['metrics']['listen']}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise TimeoutError("daemon not ready")
