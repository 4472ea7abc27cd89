"""``inspector audit verify|export|prune`` through the plugin's argparse registration."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from cli_helpers import run_plugin_cli
from inspector.audit import cli as audit_cli
from inspector.audit.chain import record_digest
from inspector.audit.store import AuditStore


def run(argv: list[str]) -> int:
    return run_plugin_cli(audit_cli.register, argv)


def _fill(path: Path) -> None:
    with AuditStore(path) as s:
        s.append("startup", {"run_id": "r"})
        s.append("lot_change", {"lot": "L7", "recipe": "R", "user": "op1"})
        s.append_many([("frame", {
            "run_id": "r", "frame_id": i, "camera": "cam0", "acquired_at": 1.7e9 + i, "outcome": "inspected",
            "reason": None, "decisions": [
                {"inspection": "quality", "verdict": "pass", "scores": {"s": 1.0}, "model": None,
                 "latency_ms": 1.0, "gradcam": None},
                {"inspection": "tablet_defect", "verdict": "reject", "scores": {"p": 0.9},
                 "model": {"name": "td", "version": "3", "sha256": "e" * 64}, "latency_ms": 9.0,
                 "gradcam": f"r/{i}.png"}],
            "config_sha256": "c" * 64, "lot": "L7", "recipe": "R"}) for i in range(3)])
        s.append("frame", {"run_id": "r", "frame_id": 3, "camera": "cam0", "acquired_at": 1.7e9,
                           "outcome": "dropped", "reason": "queue full", "decisions": [],
                           "config_sha256": "c" * 64, "lot": "L7", "recipe": "R"})


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    p = tmp_path / "audit.sqlite3"
    _fill(p)
    return p


def test_verify_ok_prints_the_head_for_external_logging(db: Path, capsys) -> None:
    assert run(["audit", "verify", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "run r: frames 0..3, 4 records (3 inspected), complete" in out
    head = [ln for ln in out.splitlines() if ln.startswith("head ")][0].split()[1]
    assert run(["audit", "verify", "--db", str(db), "--expect-head", head]) == 0


def test_verify_reports_frames_without_a_record(db: Path, capsys) -> None:
    with AuditStore(db) as s:
        s.append("frame", {"run_id": "r", "frame_id": 6, "camera": "cam0", "acquired_at": 1.7e9,
                           "outcome": "lost", "reason": "worker crashed", "decisions": [],
                           "config_sha256": "c" * 64, "lot": "L7", "recipe": "R"})
    assert run(["audit", "verify", "--db", str(db)]) == 0  # the chain is intact ...
    captured = capsys.readouterr()
    assert "run r: frames 0..6, 5 records (3 inspected), 2 frame ids without a record: 4..5" in captured.out
    assert "2 acquired frame ids have no record" in captured.err  # ... but the gap is flagged


def test_verify_fails_with_exit_1_naming_the_seq(db: Path, capsys) -> None:
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER audit_no_delete")
    con.execute("DELETE FROM audit WHERE seq = 4")
    con.commit()
    con.close()
    assert run(["audit", "verify", "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert "BROKEN at seq 4" in err and "missing" in err


def test_verify_rejects_bad_expect_head_and_missing_db(tmp_path: Path, db: Path, capsys) -> None:
    assert run(["audit", "verify", "--db", str(db), "--expect-head", "12:nothex"]) == 2
    assert run(["audit", "verify", "--db", str(tmp_path / "nope.sqlite3")]) == 1
    assert "no audit store" in capsys.readouterr().out


def test_verify_uses_the_state_dir_from_the_config(tmp_path: Path, capsys) -> None:
    state = tmp_path / "state"
    _fill(state / "audit.sqlite3")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"state_dir: {state}\ninspections: [{{name: quality}}]\n")
    assert run(["audit", "verify", "--config", str(cfg)]) == 0
    assert "6 records" in capsys.readouterr().out


def test_export_jsonl_is_lossless_and_recomputable(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    assert run(["audit", "export", "--db", str(db), "--format", "jsonl", "--out", str(out)]) == 0
    lines = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["seq"] for r in lines] == [1, 2, 3, 4, 5, 6]
    for r in lines:
        assert r["hash"] == record_digest(r["seq"], r["ts"], r["ts_iso"], r["kind"], r["payload"], r["prev_hash"])
    assert not (tmp_path / "export.jsonl.part").exists()


def test_export_csv_one_row_per_decision_with_kind_filter(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames.csv"
    assert run(["audit", "export", "--db", str(db), "--format", "csv", "--kind", "frame", "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 3 * 2 + 1
    rejects = [r for r in rows if r["verdict"] == "reject"]
    assert {r["frame_id"] for r in rejects} == {"0", "1", "2"}
    assert rejects[0]["model_version"] == "3" and rejects[0]["gradcam"].endswith(".png")
    dropped = [r for r in rows if r["outcome"] == "dropped"]
    assert len(dropped) == 1 and dropped[0]["reason"] == "queue full" and dropped[0]["inspection"] == ""


def test_export_time_window(db: Path, capsys) -> None:
    with AuditStore(db) as s:
        recs = list(s.records())
    from datetime import datetime, timezone

    start = datetime.fromtimestamp(recs[2].ts, timezone.utc).isoformat()
    assert run(["audit", "export", "--db", str(db), "--from", start, "--to", "2999-01-01"]) == 0
    seqs = [json.loads(ln)["seq"] for ln in capsys.readouterr().out.splitlines()]
    assert seqs[0] == recs[2].seq and seqs[-1] == recs[-1].seq
    assert run(["audit", "export", "--db", str(db), "--from", "yesterday"]) == 2
    assert run(["audit", "export", "--db", str(db), "--kind", "nope"]) == 2


def test_prune_cli_keeps_the_chain_verifiable(db: Path, capsys) -> None:
    assert run(["audit", "prune", "--db", str(db)]) == 2  # no policy given
    assert run(["audit", "prune", "--db", str(db), "--max-records", "2"]) == 0
    assert "pruned 4 records" in capsys.readouterr().out
    assert run(["audit", "verify", "--db", str(db)]) == 0
    with AuditStore(db) as s:
        assert [r.kind for r in s.records()] == ["frame", "frame", "prune"]
