"""Validation of record payloads before they enter the chain (cheap, explicit, one-line errors).

A ``frame`` record (filled by the supervisor) looks like::

    {"run_id": str, "frame_id": int, "camera": str, "acquired_at": float,
     "outcome": "inspected" | "dropped" | "lost" | "error", "reason": str | None,
     "decisions": [{"inspection", "verdict", "scores", "model": {"name", "version", "sha256"} | None,
                    "latency_ms", "gradcam": "relative/path.png" | None}],
     "config_sha256": str, "lot": str | None, "recipe": str | None}

Extra keys are kept. Every outcome other than ``inspected`` must carry a non-empty ``reason``.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from inspector.audit.chain import AUDIT_KINDS, FRAME_OUTCOMES, AuditError


def _need(rec: dict[str, Any], key: str, types: type | tuple[type, ...], what: str) -> Any:
    if key not in rec:
        raise AuditError(f"{what} record is missing {key!r}")
    v = rec[key]
    if isinstance(v, bool) or not isinstance(v, types):
        raise AuditError(f"{what} record: {key!r} has the wrong type ({type(v).__name__})")
    return v


def validate_record(kind: str, record: Any) -> None:
    """Raise AuditError when ``record`` cannot be stored as ``kind``."""
    if kind not in AUDIT_KINDS:
        raise AuditError(f"unknown audit record kind {kind!r} (expected one of {', '.join(AUDIT_KINDS)})")
    if not isinstance(record, dict):
        raise AuditError(f"{kind} record must be a dict, got {type(record).__name__}")
    if kind == "frame":
        validate_frame(record)


def validate_frame(rec: dict[str, Any]) -> None:
    _need(rec, "run_id", str, "frame")
    fid = _need(rec, "frame_id", int, "frame")
    if fid < 0:
        raise AuditError(f"frame record: frame_id must be >= 0, got {fid}")
    _need(rec, "camera", str, "frame")
    _need(rec, "acquired_at", (int, float), "frame")
    outcome = rec.get("outcome")
    if outcome not in FRAME_OUTCOMES:
        raise AuditError(f"frame record {fid}: outcome must be one of {', '.join(FRAME_OUTCOMES)}, got {outcome!r}")
    reason = rec.get("reason")
    if outcome != "inspected" and not (isinstance(reason, str) and reason.strip()):
        raise AuditError(f"frame record {fid}: outcome {outcome!r} needs a reason")
    decisions = rec.get("decisions", [])
    if not isinstance(decisions, list):
        raise AuditError(f"frame record {fid}: decisions must be a list")
    for d in decisions:
        if not isinstance(d, dict) or not isinstance(d.get("inspection"), str):
            raise AuditError(f"frame record {fid}: each decision needs an 'inspection' name")
        g = d.get("gradcam")
        if g is not None and not is_safe_relative_path(g):
            raise AuditError(f"frame record {fid}: gradcam must be a relative path inside the snapshot dir, got {g!r}")


def is_safe_relative_path(p: Any) -> bool:
    """A relative POSIX path with no ``..`` component (so it cannot escape its base directory)."""
    if not isinstance(p, str) or not p or "\x00" in p or "\\" in p:
        return False
    pp = PurePosixPath(p)
    return not pp.is_absolute() and ".." not in pp.parts
