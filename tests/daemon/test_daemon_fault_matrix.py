"""The fault matrix: SIGKILL each kind of process 10 times during a run on the simulated GenTL camera
at 20 frames/s, and check after each kill and at the end that nothing is lost silently.

After every kill: inspection resumes (a frame acquired after the kill is published) and readiness
said "not ready" while a process was missing. At the end: every frame id appears exactly once in the
audit (inspected, dropped or lost with its reason), the counts balance, the chain verifies, and the
lot/recipe on the records is exactly what the control channel set (a restarted acquisition process
does not fall back to the configuration file's lot).
"""

from __future__ import annotations

import os
import time

import pytest

from daemon_helpers import control, run_cli
from fault_harness import FAULT_KINDS, Line, percentile

KILLS = int(os.environ.get("INSPECTOR_FAULT_KILLS", "10"))
#: kill → first inspected frame acquired after the kill. The issue's target is 2 s from the restart;
#: on a loaded 2-core CI machine spawning a Python process alone can take longer, so the test bound
#: is wider and bench/faults.py reports the measured percentiles (README).
RESUME_LIMIT_S = float(os.environ.get("INSPECTOR_FAULT_RESUME_LIMIT_S", "8"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_sigkill_matrix_loses_nothing_silently(tmp_path, kind):
    with Line(tmp_path) as line:
        # the operator starts a new lot without a recipe: from now on that is the truth
        assert control(line.cfg, "set_lot", lot="L2")["ok"]
        t_set = time.time()
        assert line.status()["context"] == {"lot": "L2"}
        recoveries = [line.inject(kind) for _ in range(KILLS)]
        assert line.status()["context"] == {"lot": "L2"}, "a restart changed the lot context"
        code, out = line.stop()
    assert code == 0, out[-3000:]

    slow = [r for r in recoveries if r.resume_s > RESUME_LIMIT_S]
    assert not slow, f"inspection resumed too late: {[(r.kind, round(r.resume_s, 2)) for r in slow]}"
    blind = [r for r in recoveries if not r.not_ready]
    assert not blind, f"/readyz claimed ready during {len(blind)} outage(s) of {kind}"
    print(f"\n{kind}: resume p50 {percentile([r.resume_s for r in recoveries], 50):.2f} s, "
          f"max {max(r.resume_s for r in recoveries):.2f} s; ready again p50 "
          f"{percentile([r.restored_s for r in recoveries], 50):.2f} s; reasons seen: "
          f"{sorted({x.split(':')[0] for r in recoveries for x in r.not_ready})}")

    acquired, inspected, dropped, lost = line.counts()
    assert acquired == inspected + dropped + lost
    frames = line.frames()
    ids = sorted(f["frame_id"] for f in frames)
    assert ids == list(range(len(ids))), "every frame id exactly once, no gap"
    assert len(ids) == acquired
    assert inspected > 0 and all(f["reason"] for f in frames if f["outcome"] != "inspected")
    reasons = {f["reason"] for f in frames if f["outcome"] == "lost"}
    assert reasons <= {"worker_died", "acquisition_died", "in_transit", "shutdown"}, reasons
    after = [f for f in frames if f["acquired_at"] > t_set + 0.5]
    assert after and all(f["lot"] == "L2" and f["recipe"] is None for f in after), \
        {(f["lot"], f["recipe"]) for f in after}
    verify = run_cli("audit", "verify", "--config", str(line.cfg_path))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "complete" in verify.stdout
