"""Helpers for the line-integration tests: a daemon whose quality gate rejects about half the frames,
the reference line controller as a real subprocess, and the audit check that no reject was lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

from daemon_helpers import audit_frames, audit_records, free_port, write_config  # noqa: F401 (re-exported)

# noise frames have a Laplacian variance of ~2975-3085: a threshold in the middle rejects ~half
REJECTING_QUALITY = [{"name": "quality", "params": {"min_focus": 3028}}]


def line_config(tmp: Path, line: dict | None = None, **over) -> tuple[Path, dict]:
    line = {"reject_endpoint": f"tcp://127.0.0.1:{free_port()}", "deadline_ms": 500, "resend_ms": 100, **(line or {})}
    over.setdefault("camera", {"fps": 20})
    over.setdefault("workers", 1)
    over.setdefault("inspections", REJECTING_QUALITY)
    return write_config(tmp, line=line, **over)


class Daemon:
    """`inspector run` as a subprocess whose output is read continuously (a full pipe would block it)."""

    def __init__(self, config: Path, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "inspector", "run", "--config", str(config), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 60) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        self._reader.join(10)
        return self.output


def start_controller(endpoint: str, *args: str, name: str = "plc-1") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inspector", "line-controller", "--endpoint", endpoint,
                             "--name", name, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def controller_events(proc: subprocess.Popen) -> list[dict]:
    out = proc.stdout.read() if proc.stdout else ""
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def settle_report(state: Path, actionable: tuple[str, ...] = ("reject",)) -> dict:
    """Check the audit: every frame with an actionable decision is settled exactly once (acknowledged
    or alarmed), sequence numbers are 1..n without gaps. Returns the records for further checks."""
    frames = audit_frames(state)
    wanted = sorted(f["frame_id"] for f in frames if any(d["verdict"] in actionable for d in f["decisions"]))
    acks, alarms = audit_records(state, "reject_ack"), audit_records(state, "alarm")
    settled = sorted(r["frame_id"] for r in acks + alarms)
    assert settled == wanted, (f"{len(wanted)} actionable frames, {len(acks)} acks + {len(alarms)} alarms; "
                               f"unsettled {sorted(set(wanted) - set(settled))[:10]}, "
                               f"extra {sorted(set(settled) - set(wanted))[:10]}")
    seqs = sorted(r["seq"] for r in acks + alarms)
    assert seqs == list(range(1, len(seqs) + 1)), "sequence numbers must be 1..n, each settled once"
    return {"frames": frames, "wanted": wanted, "acks": acks, "alarms": alarms}


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)
