"""Break the real daemon and watch it recover: used by the fault-matrix tests and bench/faults.py.

A :class:`Line` runs ``inspector run`` as a subprocess on the simulated GenTL camera (viky.cti via
harvesters), with a ZeroMQ subscriber standing in for the line controller and a poller recording
``/readyz``. :meth:`Line.inject` SIGKILLs the processes of one fault kind (found through the control
channel's status) and measures how long until a frame acquired *after* the kill is published.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from daemon_helpers import audit_frames, control, start_daemon, wait_ready, write_config

FAULT_KINDS = ("acquisition", "worker", "all_workers", "acquisition_and_worker")
GENICAM = {"driver": "genicam", "cti": None, "width": 640, "height": 480, "pixel_format": "Mono8", "fps": 20}


class Subscriber(threading.Thread):
    """The line controller: every published result (frame id, acquired_at, arrival time, verdict)."""

    def __init__(self, endpoint: str):
        super().__init__(daemon=True)
        self.got: list[tuple[int, float, float, dict]] = []
        self.stop = threading.Event()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"result.")
        self.sock.connect(endpoint)

    def run(self) -> None:
        while not self.stop.is_set():
            if self.sock.poll(50):
                h = json.loads(self.sock.recv_multipart()[1])
                self.got.append((h["frame_id"], h["acquired_at"], time.time(), h))
        self.sock.close(0)
        self.ctx.term()


class ReadyPoller(threading.Thread):
    """/readyz every 50 ms: (wall time, ready, reasons)."""

    def __init__(self, listen: str):
        super().__init__(daemon=True)
        self.url = f"http://{listen}/readyz"
        self.samples: list[tuple[float, bool, list[str]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=1) as r:
                    body = json.loads(r.read())
            except urllib.error.HTTPError as e:
                body = json.loads(e.read() or b"{}")
            except (urllib.error.URLError, OSError, ValueError):
                body = {"ready": False, "reasons": ["unreachable"]}
            self.samples.append((time.time(), bool(body.get("ready")), list(body.get("reasons", []))))
            self.stop.wait(0.05)

    def not_ready_between(self, t0: float, t1: float) -> list[str]:
        """Reasons reported while not ready in [t0, t1] (empty: it claimed ready throughout)."""
        return [r for t, ok, reasons in self.samples if t0 <= t <= t1 and not ok for r in reasons]


@dataclass
class Recovery:
    kind: str
    killed: list[int]
    resume_s: float           # kill → first published result of a frame acquired after the kill
    restored_s: float         # kill → ready again (every process back, models loaded)
    not_ready: list[str] = field(default_factory=list)


class Line:
    def __init__(self, tmp: Path, *, workers: int = 2, camera: dict | None = None, **over):
        self.tmp = tmp
        over.setdefault("supervisor", {"restart_backoff_s": 0.05})
        over.setdefault("lot", {"id": "L1", "recipe": "R12"})
        self.cfg_path, self.cfg = write_config(tmp, workers=workers, camera=camera or dict(GENICAM), **over)
        self.sub = Subscriber(self.cfg["publish"]["endpoint"])
        self.ready = ReadyPoller(self.cfg["metrics"]["listen"])
        self.proc = None
        self.out = ""

    def __enter__(self) -> Line:
        self.sub.start()
        self.proc = start_daemon(self.cfg_path)
        wait_ready(self.cfg, self.proc)
        self.ready.start()
        self.wait_results(3, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for t in (self.sub, self.ready):
            t.stop.set()
            t.join(5)

    # ------------------------------------------------------------------ observation
    def status(self) -> dict:
        if self.cfg.get("security"):
            from inspector.control.client import send_command
            from inspector.transport.security import SecurityConfig

            return send_command(self.cfg["control"]["endpoint"], "status", user="test", timeout_s=10,
                                security=SecurityConfig(**self.cfg["security"]))["result"]
        return control(self.cfg, "status")["result"]

    def wait_results(self, n: int, timeout: float = 30.0) -> None:
        n0, end = len(self.sub.got), time.monotonic() + timeout
        while len(self.sub.got) < n0 + n:
            if time.monotonic() > end:
                raise TimeoutError(f"fewer than {n} results in {timeout} s")
            time.sleep(0.02)

    def wait_resumed(self, after_wall: float, timeout: float = 30.0) -> float:
        """Seconds from ``after_wall`` to the first result of a frame acquired after it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for fid, acquired_at, arrived, _ in reversed(self.sub.got):
                if acquired_at > after_wall:
                    first = min(a for _, acq, a, _ in self.sub.got if acq > after_wall)
                    return first - after_wall
            time.sleep(0.02)
        raise TimeoutError(f"inspection did not resume within {timeout} s")

    # ------------------------------------------------------------------ faults
    def victims(self, kind: str) -> list[int]:
        st = self.status()
        workers = sorted(st["workers"].values())
        acq = st["acquisition_pid"]
        return {"acquisition": [acq], "worker": workers[:1], "all_workers": workers,
                "acquisition_and_worker": [acq, *workers[-1:]]}[kind]

    def inject(self, kind: str, *, settle_s: float = 0.3) -> Recovery:
        pids = self.victims(kind)
        t_kill = time.time()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        resume = self.wait_resumed(t_kill)
        restored = self.wait_ready_again(t_kill)
        time.sleep(settle_s)
        # readiness must have said so while a process was missing
        reasons = self.ready.not_ready_between(t_kill, t_kill + restored)
        return Recovery(kind, pids, resume, restored, reasons)

    def wait_ready_again(self, t_kill: float, timeout: float = 30.0) -> float:
        """Seconds from the kill until /readyz is 200 again after having been 503."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            seen_down = False
            for t, ok, _ in list(self.ready.samples):
                if t < t_kill:
                    continue
                if not ok:
                    seen_down = True
                elif seen_down:
                    return t - t_kill
            time.sleep(0.05)
        raise TimeoutError("readiness did not come back")

    def stop(self, timeout: float = 60.0) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        self.out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, self.out

    # ------------------------------------------------------------------ after the run
    def counts(self) -> tuple[int, int, int, int]:
        m = re.search(r"acquired (\d+), inspected (\d+), dropped (\d+), lost (\d+)", self.out)
        return tuple(map(int, m.groups()))

    def frames(self) -> list[dict]:
        return audit_frames(Path(self.cfg["state_dir"]))


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]
