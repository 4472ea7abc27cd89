"""What an operator and a QA reviewer see of the processes and the audit: titles in `ps`, children
that die with the supervisor, quality rejects audited with their reason, run-state semantics."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from daemon_helpers import audit_frames, control
from fault_harness import Line
from inspector.config import Config
from inspector.daemon.runstate import RunState, StateCopy

SYNTH = {"driver": "synthetic", "scene": "noise", "width": 320, "height": 240, "fps": 20}


def _title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


@pytest.mark.slow
def test_titles_pdeathsig_and_quality_reasons_in_the_audit(tmp_path):
    # min_focus far above any noise frame: every frame is a quality reject, gate on
    with Line(tmp_path, camera=SYNTH, inspections=[{"name": "quality", "params": {"min_focus": 1e9}}]) as line:
        st = line.status()
        assert _title(line.proc.pid).startswith("inspector: supervisor")
        assert _title(st["acquisition_pid"]) == "inspector: acquisition synthetic0"
        assert sorted(_title(p) for p in st["workers"].values()) == ["inspector: worker 0", "inspector: worker 1"]
        children = [st["acquisition_pid"], *st["workers"].values()]
        line.wait_results(5)
        os.kill(line.proc.pid, signal.SIGKILL)  # no drain, no goodbye: the kernel tells the children
        line.proc.wait(10)
        end = time.monotonic() + 5
        while time.monotonic() < end and any(os.path.exists(f"/proc/{p}") and _alive(p) for p in children):
            time.sleep(0.05)
        assert not [p for p in children if _alive(p)], "children outlived the supervisor"
    rejects = [d for f in audit_frames(Path(line.cfg["state_dir"])) if f["outcome"] == "inspected"
               for d in f["decisions"]]
    assert rejects and all(d["verdict"] == "reject" and d["reason"] == "out_of_focus" for d in rejects)
    published = [h for _, _, _, h in line.sub.got]
    assert published and all(h["reason"] == "out_of_focus" for h in published)


def _alive(pid: int) -> bool:
    try:
        state = [ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("State:")]
    except OSError:
        return False
    return bool(state) and "Z" not in state[0]  # a zombie has exited (its parent is gone, init reaps it)


def test_set_lot_without_recipe_clears_the_recipe_and_children_replace_their_copy():
    state = RunState.from_config(Config(lot={"id": "L1", "recipe": "R12", "expected_excipient": "Mannit Q"}), "r")
    copy = StateCopy()
    assert copy.apply(state.snapshot()) and copy.context == {"lot": "L1", "recipe": "R12",
                                                             "expected_excipient": "Mannit Q"}
    old = state.snapshot()
    state.set_lot("L2", None)
    assert state.status()["context"] == {"lot": "L2", "expected_excipient": "Mannit Q"}
    assert copy.apply(state.snapshot()) and copy.context == state.status()["context"]
    assert not copy.apply(old), "an older snapshot never overwrites a newer one"
    state.set_paused(True)
    assert copy.apply(state.snapshot()) and copy.paused
    state.set_paused(False)
    state.set_hold("audit store refuses writes")
    assert copy.apply(state.snapshot()) and copy.paused, "a hold stops acquisition like a pause"


@pytest.mark.slow
def test_control_status_equals_what_the_audit_records(tmp_path):
    with Line(tmp_path, camera=SYNTH) as line:
        assert control(line.cfg, "set_lot", lot="L7", recipe="R3")["ok"]
        assert control(line.cfg, "set_lot", lot="L8")["ok"]
        t = time.time()
        shown = line.status()["context"]
        line.wait_results(10)
        line.stop()
    after = [f for f in audit_frames(Path(line.cfg["state_dir"])) if f["acquired_at"] > t + 0.2]
    assert shown == {"lot": "L8"}
    assert after and all((f["lot"], f["recipe"]) == ("L8", None) for f in after)
