"""Audit store benchmark: ``python -m inspector.audit.bench [--dir DIR] [--records N] [--batch B]``.

Measures, in one process and on the same disk, the audit store against a reference: a plain SQLite
table with the same WAL/``synchronous=FULL`` settings and the same payload text, but no validation,
no hashing, no triggers and no indexes. Prints records/s and the ratio store/reference for

* one transaction per record (``append``) vs a plain one-row transaction,
* one transaction per batch (``append_many``) vs a plain batched insert,
* ``verify`` (full re-hash of the chain) vs a plain ``SELECT`` of every row.

Timings on a shared machine are noisy: compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from inspector.audit.chain import canonical_json
from inspector.audit.store import AuditStore


def frame_record(i: int, run: str) -> dict[str, Any]:
    """A realistic frame record: two inspections, model identity, scores."""
    return {
        "run_id": run, "frame_id": i, "camera": "cam0", "acquired_at": 1.7e9 + i * 0.1, "outcome": "inspected",
        "reason": None, "decisions": [
            {"inspection": "quality", "verdict": "pass", "scores": {"sharpness": 0.81, "exposure": 0.44},
             "model": None, "latency_ms": 3.2, "gradcam": None},
            {"inspection": "excipient_identity", "verdict": "pass",
             "scores": {"maltodextrin": 0.97, "mcc": 0.02, "lactose": 0.01},
             "model": {"name": "identity-resnet50", "version": "7", "sha256": "ab" * 32}, "latency_ms": 41.5,
             "gradcam": f"{run}/{i}-excipient_identity.png"}],
        "config_sha256": "cd" * 32, "lot": "LOT-42", "recipe": "R7",
    }


def _plain(path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(str(path), isolation_level=None)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA synchronous = FULL")
    c.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, ts REAL, kind TEXT, payload TEXT)")
    return c


def _timed(label: str, n: int, fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    print(f"  {label:<44} {n / dt:>10.0f} rec/s")
    return dt


def run(directory: Path, n: int, batch: int) -> dict[str, float]:
    recs = [frame_record(i, "bench") for i in range(n)]
    texts = [canonical_json(r) for r in recs]
    ratios: dict[str, float] = {}

    # ---- one transaction per record
    ref = _plain(directory / "ref1.sqlite3")

    def ref_single() -> None:
        for i, t in enumerate(tqdm(texts, desc="reference 1/txn", leave=False, disable=None)):
            ref.execute("BEGIN IMMEDIATE")
            ref.execute("INSERT INTO t VALUES (?, ?, 'frame', ?)", (i + 1, time.time(), t))
            ref.execute("COMMIT")

    store = AuditStore(directory / "single.sqlite3")

    def store_single() -> None:
        for r in tqdm(recs, desc="store append", leave=False, disable=None):
            store.append("frame", r)

    print(f"one transaction per record ({n} records):")
    a = _timed("reference: plain INSERT", n, ref_single)
    b = _timed("AuditStore.append", n, store_single)
    ratios["append/ref"] = b / a

    # ---- batched
    ref_b = _plain(directory / "refb.sqlite3")
    store_b = AuditStore(directory / "batch.sqlite3")

    def ref_batch() -> None:
        for s in tqdm(range(0, n, batch), desc="reference batch", leave=False, disable=None):
            ref_b.execute("BEGIN IMMEDIATE")
            ref_b.executemany("INSERT INTO t VALUES (?, ?, 'frame', ?)",
                              [(s + k + 1, time.time(), t) for k, t in enumerate(texts[s:s + batch])])
            ref_b.execute("COMMIT")

    def store_batch() -> None:
        for s in tqdm(range(0, n, batch), desc="store append_many", leave=False, disable=None):
            store_b.append_many([("frame", r) for r in recs[s:s + batch]])

    print(f"one transaction per batch of {batch}:")
    c = _timed("reference: plain executemany", n, ref_batch)
    d = _timed("AuditStore.append_many", n, store_batch)
    ratios["append_many/ref"] = d / c
    ratios["append/append_many"] = b / d

    # ---- verification
    def ref_read() -> None:
        for _ in ref_b.execute("SELECT * FROM t ORDER BY seq"):
            pass

    rep: list[Any] = []
    print("full read / verify:")
    e = _timed("reference: plain SELECT of every row", n, ref_read)
    f = _timed("AuditStore.verify (re-hash whole chain)", n, lambda: rep.append(store_b.verify()))
    assert rep[0].ok and rep[0].checked == n
    ratios["verify/read"] = f / e
    for con in (ref, ref_b):
        con.close()
    store.close()
    store_b.close()
    print("ratios (time, store / reference; >1 = store slower):")
    for k, v in ratios.items():
        print(f"  {k:<24} {v:6.2f}")
    return ratios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", help="where to create the benchmark databases (default: a temp dir under the CWD, "
                                 "so the disk is the real one, not tmpfs)")
    p.add_argument("--records", type=int, default=2000)
    p.add_argument("--batch", type=int, default=32)
    a = p.parse_args(argv)
    base = Path(a.dir) if a.dir else Path.cwd()
    with tempfile.TemporaryDirectory(prefix="audit-bench-", dir=base) as d:
        run(Path(d), a.records, a.batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
