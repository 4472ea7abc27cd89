"""kill -9 of a process writing to the store: on reopen the chain verifies and nothing acknowledged is lost."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from inspector.audit import cli as audit_cli
from inspector.audit.store import AuditStore

CHILD = textwrap.dedent("""
    import sys, time
    from inspector.audit.store import AuditStore

    store = AuditStore(sys.argv[1])
    store.append("startup", {"run_id": "crash-run"})
    i = 0
    while True:
        batch = [("frame", {"run_id": "crash-run", "frame_id": i + k, "camera": "cam0",
                            "acquired_at": time.time(), "outcome": "inspected", "reason": None,
                            "decisions": [{"inspection": "quality", "verdict": "pass",
                                           "scores": {"s": 0.5, "pad": "x" * 2000}, "model": None,
                                           "latency_ms": 1.0, "gradcam": None}],
                            "config_sha256": "0" * 64, "lot": "L", "recipe": None}) for k in range(1 + i % 7)]
        seqs = store.append_many(batch)   # durable when this returns
        i += len(batch)
        print(" ".join(map(str, seqs)), flush=True)
""")


def test_sigkill_mid_write_leaves_a_verifiable_store_with_every_acked_record(tmp_path: Path) -> None:
    db = tmp_path / "state" / "audit.sqlite3"
    script = tmp_path / "writer.py"
    script.write_text(CHILD)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True, env=env)
    acked: list[int] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acked.extend(int(s) for s in line.split())
            if len(acked) >= 400:
                os.kill(child.pid, signal.SIGKILL)  # mid-loop: the child is inside another transaction
                break
        rest = child.stdout.read()  # lines printed before the kill landed
        acked.extend(int(s) for s in rest.split())
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 400 and acked == list(range(2, 2 + len(acked)))  # seq 1 is the startup record

    # what an operator runs after the crash: `inspector audit verify --db …` exits 0
    parser = argparse.ArgumentParser(prog="inspector")
    audit_cli.register(parser.add_subparsers(dest="command"), {})
    args = parser.parse_args(["audit", "verify", "--db", str(db)])
    assert args.func(args) == 0

    with AuditStore(db) as store:
        rep = store.verify()
        assert rep.ok, rep.summary()
        assert store.count() >= len(acked) + 1
        assert rep.head_seq >= max(acked)
        # every acked frame is there exactly once, and the run is visibly unclosed (daemon died)
        frames = store.frame_ids("crash-run")
        assert len(frames) == store.count("frame") >= len(acked)
        assert store.unclosed_runs() == ["crash-run"]
        # the store stays writable after the crash
        store.append("shutdown", {"run_id": "crash-run", "reason": "recovered after unclean stop"})
        assert store.verify().ok


def test_concurrent_writers_and_a_verifier_keep_one_valid_chain(tmp_path: Path) -> None:
    """Two store instances (two connections, as two processes would have) append concurrently
    while a third verifies: BEGIN IMMEDIATE serialises the writers, verify reads one snapshot."""
    import threading

    db = tmp_path / "audit.sqlite3"
    AuditStore(db).close()
    errors: list[BaseException] = []
    reports = []

    def writer(tag: str) -> None:
        try:
            with AuditStore(db) as s:
                for i in range(40):
                    s.append_many([("config", {"writer": tag, "i": i}), ("config", {"writer": tag, "i": -i})])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    with AuditStore(db, create=False) as v:
        while any(t.is_alive() for t in threads):
            reports.append(v.verify())
    for t in threads:
        t.join()
    assert not errors
    assert reports and all(r.ok for r in reports), [r.summary() for r in reports if not r.ok]
    with AuditStore(db) as s:
        final = s.verify()
        assert final.ok and final.checked == 160 == s.count()
