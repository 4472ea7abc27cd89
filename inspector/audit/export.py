"""Export audit records as JSON Lines (one record per line, lossless) or CSV (one row per decision).

CSV columns flatten the frame record for spreadsheets: a frame with two inspections gives two rows
that share ``seq``; a frame without decisions (dropped, lost) gives one row with empty decision
columns; non-frame records give one row with their payload as JSON in ``payload``.
"""

from __future__ import annotations

import csv
import json
from typing import Any, Iterable, TextIO

from inspector.audit.chain import AuditRecord, canonical_json

FORMATS = ("csv", "jsonl")

CSV_COLUMNS = [
    "seq", "ts_iso", "kind", "run_id", "frame_id", "camera", "acquired_at", "outcome", "reason",
    "lot", "recipe", "config_sha256", "inspection", "verdict", "scores", "model_name", "model_version",
    "model_sha256", "latency_ms", "gradcam", "payload", "hash",
]


def write_jsonl(records: Iterable[AuditRecord], out: TextIO) -> int:
    """One canonical JSON object per record (``seq, ts, ts_iso, kind, payload, prev_hash, hash``):
    every digest can be recomputed from the export alone."""
    n = 0
    for rec in records:
        out.write(canonical_json(rec.as_dict()) + "\n")
        n += 1
    return n


def csv_rows(rec: AuditRecord) -> list[dict[str, Any]]:
    """The CSV rows for one record (see module docstring)."""
    p = rec.payload if isinstance(rec.payload, dict) else {}
    base: dict[str, Any] = {"seq": rec.seq, "ts_iso": rec.ts_iso, "kind": rec.kind, "hash": rec.hash}
    if rec.kind != "frame":
        base["payload"] = canonical_json(rec.payload)
        base["run_id"] = p.get("run_id", "")
        base["lot"] = p.get("lot", "")
        return [base]
    for key in ("run_id", "frame_id", "camera", "acquired_at", "outcome", "reason", "lot", "recipe", "config_sha256"):
        v = p.get(key)
        base[key] = "" if v is None else v
    decisions = p.get("decisions") or []
    if not decisions:
        return [base]
    rows = []
    for d in decisions:
        model = d.get("model") or {}
        rows.append({**base, "inspection": d.get("inspection", ""), "verdict": d.get("verdict", ""),
                     "scores": json.dumps(d.get("scores", {}), sort_keys=True),
                     "model_name": model.get("name", ""), "model_version": model.get("version", ""),
                     "model_sha256": model.get("sha256", ""),
                     "latency_ms": "" if d.get("latency_ms") is None else d.get("latency_ms"),
                     "gradcam": d.get("gradcam") or ""})
    return rows


def write_csv(records: Iterable[AuditRecord], out: TextIO) -> int:
    """CSV with a header row; returns the number of records (not rows) written."""
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    n = 0
    for rec in records:
        w.writerows(csv_rows(rec))
        n += 1
    return n


def export(records: Iterable[AuditRecord], out: TextIO, fmt: str) -> int:
    """Write ``records`` to ``out`` as ``csv`` or ``jsonl``; returns the record count."""
    if fmt == "jsonl":
        return write_jsonl(records, out)
    if fmt == "csv":
        return write_csv(records, out)
    raise ValueError(f"unknown export format {fmt!r} (expected one of {', '.join(FORMATS)})")
