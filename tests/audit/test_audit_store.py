"""AuditStore: append/read, the exactly-once frame index, validation, triggers, HMAC, retention."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from inspector.audit.chain import GENESIS_HASH, AuditError, DuplicateFrameError, record_digest
from inspector.audit.store import AuditStore


def frame(i: int, *, run: str = "run-1", outcome: str = "inspected", reason: str | None = None,
          gradcam: str | None = None, lot: str = "LOT-A") -> dict:
    return {
        "run_id": run, "frame_id": i, "camera": "cam0", "acquired_at": 1_700_000_000.0 + i,
        "outcome": outcome, "reason": reason,
        "decisions": [] if outcome != "inspected" else [{
            "inspection": "quality", "verdict": "pass" if i % 3 else "reject",
            "scores": {"sharpness": 0.5 + i / 1000}, "model": {"name": "m", "version": "1", "sha256": "ab" * 32},
            "latency_ms": 3.5, "gradcam": gradcam}],
        "config_sha256": "cd" * 32, "lot": lot, "recipe": "R1",
    }


@pytest.fixture()
def store(tmp_path: Path):
    s = AuditStore(tmp_path / "state" / "audit.sqlite3")
    yield s
    s.close()


def test_append_returns_consecutive_seqs_and_records_round_trip(store: AuditStore) -> None:
    assert store.append("startup", {"run_id": "run-1", "pid": 42}) == 1
    assert store.append_many([("frame", frame(i)) for i in range(3)]) == [2, 3, 4]
    recs = list(store.records())
    assert [r.seq for r in recs] == [1, 2, 3, 4]
    assert recs[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(recs, recs[1:]))
    assert recs[2].payload == frame(1)
    # the digest is exactly the documented formula
    r = recs[2]
    assert r.hash == record_digest(r.seq, r.ts, r.ts_iso, r.kind, r.payload, r.prev_hash)
    assert r.ts_iso.endswith("+00:00")
    assert store.head().seq == 4 and store.head().hash == recs[-1].hash
    assert store.verify().ok


def test_records_filters_by_kind_and_time(store: AuditStore) -> None:
    store.append("startup", {"run_id": "run-1"})
    store.append_many([("frame", frame(i)) for i in range(5)])
    store.append("shutdown", {"run_id": "run-1"})
    frames = list(store.records(kind="frame"))
    assert [r.payload["frame_id"] for r in frames] == [0, 1, 2, 3, 4]
    cut = frames[2].ts
    later = list(store.records(since=cut))
    assert later[0].seq == frames[2].seq and later[-1].kind == "shutdown"
    earlier = list(store.records(until=cut))
    assert [r.seq for r in earlier] == list(range(1, frames[2].seq))
    with pytest.raises(AuditError, match="unknown audit record kind"):
        list(store.records(kind="bogus"))


def test_records_pages_through_more_than_one_page(store: AuditStore) -> None:
    store.append_many([("frame", frame(i)) for i in range(2500)])
    assert [r.seq for r in store.records()] == list(range(1, 2501))


def test_every_frame_id_at_most_once_and_batches_are_atomic(store: AuditStore) -> None:
    store.append("frame", frame(7))
    with pytest.raises(DuplicateFrameError, match="frame 7 of run 'run-1'"):
        store.append_many([("frame", frame(8)), ("frame", frame(7, outcome="lost", reason="worker died"))])
    assert store.count() == 1  # frame 8 was rolled back with the duplicate
    assert store.frame_ids("run-1") == {7}
    store.append("frame", frame(7, run="run-2"))  # same id in another run is fine
    assert store.frame_ids("run-2") == {7}
    assert store.verify().ok


@pytest.mark.parametrize("kind, record, message", [
    ("bogus", {}, "unknown audit record kind"),
    ("frame", [1, 2], "must be a dict"),
    ("frame", {"frame_id": 1}, "missing 'run_id'"),
    ("frame", {**frame(1), "frame_id": "1"}, "wrong type"),
    ("frame", {**frame(1), "frame_id": True}, "wrong type"),
    ("frame", {**frame(1), "outcome": "maybe"}, "outcome must be one of"),
    ("frame", frame(1, outcome="dropped"), "needs a reason"),
    ("frame", frame(1, gradcam="../../etc/passwd"), "relative path"),
    ("frame", frame(1, gradcam="/abs/x.png"), "relative path"),
    ("config", {"x": object()}, "cannot store a object"),
    ("config", {1: "x"}, "keys must be strings"),
    ("prune", {}, "written by AuditStore.prune"),
    ("config", {"name": "bad \ud800 surrogate"}, "not valid Unicode"),
])
def test_bad_records_are_refused_with_a_clear_error(store: AuditStore, kind, record, message) -> None:
    with pytest.raises(AuditError, match=message):
        store.append(kind, record)
    assert store.count() == 0


def test_numpy_scalars_and_non_finite_floats_are_stored_as_plain_json(store: AuditStore) -> None:
    store.append("model_load", {"score": np.float32(0.25), "n": np.int64(3), "bad": float("nan"),
                                "big": float("-inf"), "shape": (2, 3)})
    (rec,) = store.records()
    assert rec.payload == {"score": 0.25, "n": 3, "bad": "nan", "big": "-inf", "shape": [2, 3]}
    assert store.verify().ok


def test_dropped_and_lost_frames_carry_their_reason(store: AuditStore) -> None:
    store.append_many([("frame", frame(0)), ("frame", frame(1, outcome="dropped", reason="queue full")),
                       ("frame", frame(2, outcome="lost", reason="worker crashed mid-frame"))])
    got = {r.payload["frame_id"]: (r.payload["outcome"], r.payload["reason"]) for r in store.records(kind="frame")}
    assert got == {0: ("inspected", None), 1: ("dropped", "queue full"), 2: ("lost", "worker crashed mid-frame")}


def test_triggers_refuse_update_delete_and_out_of_order_insert(store: AuditStore) -> None:
    store.append_many([("frame", frame(i)) for i in range(3)])
    other = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            other.execute("UPDATE audit SET payload = '{}' WHERE seq = 2")
        with pytest.raises(sqlite3.IntegrityError, match="only be removed by prune"):
            other.execute("DELETE FROM audit WHERE seq = 3")
        with pytest.raises(sqlite3.IntegrityError, match="extend the head"):
            other.execute("INSERT INTO audit (seq, ts, ts_iso, kind, payload, prev_hash, hash) "
                          "VALUES (99, 0, '', 'config', '{}', '', '')")
        with pytest.raises(sqlite3.IntegrityError, match="only moves forward"):
            other.execute("UPDATE head SET seq = 1")
    finally:
        other.close()
    assert store.count() == 3 and store.verify().ok


def test_frame_gaps_and_run_summary_show_unrecorded_frames(store: AuditStore) -> None:
    store.append_many([("frame", frame(i)) for i in (3, 4, 5, 8, 10, 11)])
    store.append_many([("frame", frame(i, run="run-2", outcome="dropped", reason="paused")) for i in range(3)])
    assert store.frame_gaps("run-1") == [(6, 7), (9, 9)]
    assert store.frame_gaps("run-2") == [] and store.frame_gaps("nope") == []
    assert store.runs() == [
        {"run_id": "run-1", "frames": 6, "first_frame_id": 3, "last_frame_id": 11, "inspected": 6},
        {"run_id": "run-2", "frames": 3, "first_frame_id": 0, "last_frame_id": 2, "inspected": 0}]


def test_unclosed_runs_lists_runs_without_shutdown(store: AuditStore) -> None:
    store.append("startup", {"run_id": "a"})
    store.append("shutdown", {"run_id": "a", "reason": "SIGTERM"})
    store.append("startup", {"run_id": "b"})
    assert store.unclosed_runs() == ["b"]


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    p = tmp_path / "audit.sqlite3"
    with AuditStore(p) as s:
        s.append("startup", {"run_id": "r"})
    with AuditStore(p) as s:
        assert s.append("shutdown", {"run_id": "r"}) == 2
        assert s.verify().ok and s.verify().checked == 2
        assert s.path == p


def test_not_a_database_and_missing_store_are_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(AuditError, match="not a usable audit store"):
        AuditStore(junk)
    with pytest.raises(AuditError, match="no audit store at"):
        AuditStore(tmp_path / "absent.sqlite3", create=False)
    assert not (tmp_path / "absent.sqlite3").exists()


def test_hmac_store_requires_the_same_key(tmp_path: Path) -> None:
    p = tmp_path / "audit.sqlite3"
    key = b"k" * 32
    with AuditStore(p, hmac_key=key) as s:
        seq = s.append("config", {"sha256": "x"})
        (rec,) = s.records()
        assert rec.hash == record_digest(seq, rec.ts, rec.ts_iso, "config", rec.payload, rec.prev_hash, key)
        assert rec.hash != record_digest(seq, rec.ts, rec.ts_iso, "config", rec.payload, rec.prev_hash)
    with pytest.raises(AuditError, match="HMAC-keyed"):
        AuditStore(p)
    with pytest.raises(AuditError, match="does not match the key"):
        AuditStore(p, hmac_key=b"z" * 32)
    with AuditStore(p, hmac_key=key) as s:
        assert s.verify().ok
    plain = tmp_path / "plain.sqlite3"
    AuditStore(plain).close()
    with pytest.raises(AuditError, match="without an HMAC key"):
        AuditStore(plain, hmac_key=key)


def test_missing_triggers_are_reported_and_recreated(tmp_path: Path) -> None:
    p = tmp_path / "audit.sqlite3"
    AuditStore(p).close()
    con = sqlite3.connect(p)
    con.execute("DROP TRIGGER audit_no_update")
    con.commit()
    con.close()
    with AuditStore(p, create=False) as s:
        rep = s.verify()
        assert rep.ok and any("audit_no_update" in w for w in rep.warnings)
    with AuditStore(p) as s:  # a writer puts the protection back
        assert s.missing_triggers() == []


# ---- retention ---------------------------------------------------------------------------------
def test_prune_by_record_count_anchors_the_chain(store: AuditStore) -> None:
    store.append_many([("frame", frame(i, lot="LOT-A" if i < 5 else "LOT-B")) for i in range(10)])
    pruned_last = list(store.records())[5]
    rep = store.prune(max_records=4)
    assert (rep.pruned, rep.first_seq, rep.last_seq, rep.prune_seq) == (6, 1, 6, 11)
    assert rep.by_kind == {"frame": 6} and rep.lots == ["LOT-A", "LOT-B"]
    recs = list(store.records())
    assert [r.seq for r in recs] == [7, 8, 9, 10, 11]
    assert recs[0].prev_hash == pruned_last.hash
    p = recs[-1].payload
    assert recs[-1].kind == "prune"
    assert (p["pruned_from_seq"], p["pruned_through_seq"], p["count"], p["anchor_hash"]) == (1, 6, 6, pruned_last.hash)
    rep2 = store.verify()
    assert rep2.ok and rep2.first_seq == 7 and rep2.head_seq == 11
    assert store.prune(max_records=100).pruned == 0  # nothing due: nothing appended
    assert store.head().seq == 11


def test_prune_by_age_and_repeated_prunes_keep_verifying(store: AuditStore) -> None:
    store.append_many([("frame", frame(i)) for i in range(6)])
    now = time.time()
    assert store.prune(max_age_s=3600, now=now).pruned == 0
    rep = store.prune(max_age_s=0, now=now + 1)  # everything is older than now+1
    assert rep.pruned == 6 and store.count() == 1
    store.append("frame", frame(6))
    rep = store.prune(max_records=0)  # prune everything, including the previous prune record
    assert rep.pruned == 2 and rep.by_kind == {"frame": 1, "prune": 1}
    assert store.verify().ok and store.count() == 1


def test_prune_by_bytes_keeps_newest_within_budget(store: AuditStore) -> None:
    store.append_many([("config", {"blob": "x" * 1000, "i": i}) for i in range(10)])
    rep = store.prune(max_bytes=3 * 1300)
    assert rep.pruned == 7 and [r.payload.get("i") for r in store.records(kind="config")] == [7, 8, 9]
    assert store.verify().ok


def test_prune_deletes_referenced_gradcam_snapshots_only(store: AuditStore, tmp_path: Path) -> None:
    snaps = tmp_path / "gradcam"
    (snaps / "run-1").mkdir(parents=True)
    for i in range(4):
        (snaps / "run-1" / f"{i}.png").write_bytes(b"png")
    (snaps / "unrelated.png").write_bytes(b"png")
    store.append_many([("frame", frame(i, gradcam=f"run-1/{i}.png")) for i in range(4)])
    rep = store.prune(max_records=2, gradcam_dir=snaps)
    assert rep.gradcam_deleted == 2 and rep.gradcam_missing == 0
    assert sorted(p.name for p in (snaps / "run-1").iterdir()) == ["2.png", "3.png"]
    assert (snaps / "unrelated.png").exists()
    assert list(store.records(kind="prune"))[0].payload["gradcam_files"] == 2


@pytest.mark.parametrize("kwargs, message", [({}, "at least one"), ({"max_records": -1}, "max_records"),
                                             ({"max_age_s": float("nan")}, "max_age_s")])
def test_prune_rejects_bad_policy(store: AuditStore, kwargs, message) -> None:
    with pytest.raises(AuditError, match=message):
        store.prune(**kwargs)
