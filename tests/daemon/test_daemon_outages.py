"""Outages other than a killed process: the camera's producer gone and back, a wedged (stopped)
acquisition process, the audit store's disk full, SIGTERM in the middle of a model reload.

Each breaks the real thing (the GenTL producer file, SIGSTOP, the kernel's file-size limit on the
supervisor, a real reload) and checks that readiness says so, that nothing is published unaudited,
and that every frame still ends exactly once in the audit.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from daemon_helpers import control, run_cli
from fault_harness import GENICAM, Line


def _metric(line: Line, name: str) -> float:
    with urllib.request.urlopen(f"http://{line.cfg['metrics']['listen']}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(name))


def _wait_not_ready(line: Line, since: float, what: str, timeout: float = 10.0) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for t, ok, reasons in line.ready.samples:
            if t >= since and not ok and any(what in r for r in reasons):
                return t - since
        time.sleep(0.05)
    raise AssertionError(f"/readyz never reported {what!r}: {line.ready.samples[-3:]}")


def _audit_complete(line: Line) -> list[dict]:
    acquired, inspected, dropped, lost = line.counts()
    assert acquired == inspected + dropped + lost
    frames = line.frames()
    ids = sorted(f["frame_id"] for f in frames)
    assert ids == list(range(len(ids))) and len(ids) == acquired
    verify = run_cli("audit", "verify", "--config", str(line.cfg_path))
    assert verify.returncode == 0 and "complete" in verify.stdout, verify.stdout + verify.stderr
    return frames


@pytest.mark.slow
def test_camera_producer_gone_then_back(tmp_path):
    """The GenTL producer disappears (as with an unplugged camera the acquisition cannot re-open):
    camera down, not ready, back-off; when it is back, inspection resumes on its own."""
    import genicam

    cti = tmp_path / "producer" / "viky.cti"
    cti.parent.mkdir()
    shutil.copy(Path(genicam.__file__).parent / "viky.cti", cti)  # a private copy we can take away
    with Line(tmp_path, camera={**GENICAM, "cti": str(cti), "reconnect_backoff_s": [0.2, 1.0]}) as line:
        hidden = cti.with_suffix(".gone")
        cti.rename(hidden)
        t0 = time.time()
        os.kill(line.status()["acquisition_pid"], signal.SIGKILL)  # the open device is lost with it
        assert _wait_not_ready(line, t0, "camera not open") < 2.0
        time.sleep(2.0)
        # nothing acquired while it is gone (frames in flight at the kill may still come out)
        assert not [fid for fid, acq, _, _ in line.sub.got if acq > t0 + 0.5]
        hidden.rename(cti)
        t1 = time.time()
        assert line.wait_resumed(t1, timeout=20) < 10
        code, _ = line.stop()
    assert code == 0
    _audit_complete(line)


@pytest.mark.slow
def test_wedged_acquisition_process_is_not_ready_within_2s(tmp_path):
    with Line(tmp_path, camera={"driver": "synthetic", "scene": "noise", "width": 320, "height": 240,
                                "fps": 20}) as line:
        pid = line.status()["acquisition_pid"]
        t0 = time.time()
        os.kill(pid, signal.SIGSTOP)
        try:
            assert _wait_not_ready(line, t0, "not responding") < 2.0
        finally:
            os.kill(pid, signal.SIGCONT)
        assert line.wait_resumed(time.time(), timeout=10) < 5
        code, _ = line.stop()
    assert code == 0
    _audit_complete(line)


@pytest.mark.slow
def test_audit_disk_full_holds_every_decision_until_it_is_on_record(tmp_path):
    """RLIMIT_FSIZE=0 on the supervisor: every write to the audit store fails as on a full disk."""
    with Line(tmp_path, camera={"driver": "synthetic", "scene": "noise", "width": 320, "height": 240,
                                "fps": 20}) as line:
        sup = line.proc.pid
        soft, hard = resource.prlimit(sup, resource.RLIMIT_FSIZE)
        t_full = time.time()
        resource.prlimit(sup, resource.RLIMIT_FSIZE, (0, hard))
        try:
            assert _wait_not_ready(line, t_full, "audit store refuses writes") < 2.0
            time.sleep(2.0)
            # nothing acquired after the disk filled up was published while it stayed full
            published_while_full = [fid for fid, acq, arr, _ in line.sub.got if acq > t_full + 0.5]
            assert published_while_full == []
            assert _metric(line, "inspector_audit_write_failures_total") > 0
        finally:
            resource.prlimit(sup, resource.RLIMIT_FSIZE, (soft, hard))
        t_back = time.time()
        assert line.wait_resumed(t_back, timeout=15) < 10
        code, out = line.stop()
    assert code == 0, out[-2000:]
    assert "audit store refuses writes" in out and "writable again" in out
    frames = _audit_complete(line)
    # what was held back was written and published once the disk had room again
    held = [f["frame_id"] for f in frames if t_full < f["acquired_at"] < t_back and f["outcome"] == "inspected"]
    published = {fid for fid, _, _, _ in line.sub.got}
    assert set(held) <= published


@pytest.mark.slow
def test_sigterm_during_a_model_reload_drains_cleanly(tmp_path):
    with Line(tmp_path, camera={"driver": "synthetic", "scene": "sem", "fps": 5},
              inspections=[{"name": "quality"}, {"name": "excipient_identity"}]) as line:
        version = line.status()["models"]["excipient_identity"]["version"]
        assert control(line.cfg, "reload_model", inspection="excipient_identity", version=version)["ok"]
        t0 = time.monotonic()
        code, out = line.stop()
        assert time.monotonic() - t0 < 15
    assert code == 0, out[-2000:]
    _audit_complete(line)
