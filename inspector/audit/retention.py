"""Retention policy: which oldest records to prune, and a summary of what they contained.

Pure SQL helpers over the store's connection; :meth:`AuditStore.prune` runs them inside its own
write transaction and appends a ``prune`` record that anchors the chain.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

#: rough per-row overhead (columns, index entries) added to the payload length for ``max_bytes``
ROW_OVERHEAD_BYTES = 256
#: at most this many distinct lot ids are listed in a prune record
MAX_LOTS_LISTED = 1000


@dataclass
class PruneReport:
    """What :meth:`AuditStore.prune` removed (``pruned == 0``: nothing matched, nothing appended)."""

    pruned: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    from_ts: float | None = None
    to_ts: float | None = None
    by_kind: dict[str, int] = field(default_factory=dict)
    lots: list[str] = field(default_factory=list)
    prune_seq: int | None = None
    gradcam_deleted: int = 0
    gradcam_missing: int = 0

    def summary(self) -> str:
        if not self.pruned:
            return "nothing to prune"
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.by_kind.items()))
        return (f"pruned {self.pruned} records (seq {self.first_seq}..{self.last_seq}; {kinds}); "
                f"prune record seq {self.prune_seq}; {self.gradcam_deleted} Grad-CAM snapshots deleted")


def check_limits(max_age_s: float | None, max_records: int | None, max_bytes: int | None) -> None:
    """Raise ValueError on a nonsensical policy (the caller turns it into its own error type)."""
    if max_age_s is None and max_records is None and max_bytes is None:
        raise ValueError("give at least one of max_age_s, max_records, max_bytes")
    if max_age_s is not None and not max_age_s >= 0:
        raise ValueError(f"max_age_s must be >= 0, got {max_age_s}")
    if max_records is not None and max_records < 0:
        raise ValueError(f"max_records must be >= 0, got {max_records}")
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")


def prune_cutoff(conn: sqlite3.Connection, *, now: float, max_age_s: float | None,
                 max_records: int | None, max_bytes: int | None) -> int | None:
    """The last seq to delete (every record with seq <= cutoff goes), or None when nothing is due.

    Criteria combine: a record is pruned when it is too old OR beyond the newest ``max_records``
    OR beyond the newest ``max_bytes`` (payload length + a fixed per-row overhead)."""
    cutoffs: list[int] = []
    if max_age_s is not None:
        row = conn.execute("SELECT MAX(seq) FROM audit WHERE ts < ?", (now - max_age_s,)).fetchone()
        if row[0] is not None:
            cutoffs.append(int(row[0]))
    if max_records is not None:
        row = conn.execute("SELECT seq FROM audit ORDER BY seq DESC LIMIT 1 OFFSET ?", (max_records,)).fetchone()
        if row is not None:
            cutoffs.append(int(row[0]))
    if max_bytes is not None:
        row = conn.execute(
            "SELECT seq FROM (SELECT seq, SUM(length(CAST(payload AS BLOB)) + ?) OVER (ORDER BY seq DESC) AS cum "
            "FROM audit) WHERE cum > ? ORDER BY seq DESC LIMIT 1", (ROW_OVERHEAD_BYTES, max_bytes)).fetchone()
        if row is not None:
            cutoffs.append(int(row[0]))
    return max(cutoffs) if cutoffs else None


def summarize(conn: sqlite3.Connection, last_seq: int) -> PruneReport:
    """Describe the records with seq <= last_seq (counts per kind, time range, lots)."""
    rep = PruneReport()
    row = conn.execute("SELECT COUNT(*), MIN(seq), MAX(seq), MIN(ts), MAX(ts) FROM audit WHERE seq <= ?",
                       (last_seq,)).fetchone()
    rep.pruned, rep.first_seq, rep.last_seq, rep.from_ts, rep.to_ts = int(row[0]), row[1], row[2], row[3], row[4]
    rep.by_kind = {k: int(n) for k, n in conn.execute(
        "SELECT kind, COUNT(*) FROM audit WHERE seq <= ? GROUP BY kind", (last_seq,))}
    rep.lots = [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT json_extract(payload, '$.lot') AS lot FROM audit WHERE seq <= ? AND kind = 'frame' "
        "AND lot IS NOT NULL ORDER BY lot LIMIT ?", (last_seq, MAX_LOTS_LISTED))]
    return rep


def gradcam_paths(conn: sqlite3.Connection, last_seq: int) -> list[str]:
    """Relative Grad-CAM snapshot paths referenced by frame records with seq <= last_seq."""
    rows = conn.execute(
        "SELECT json_extract(d.value, '$.gradcam') FROM audit, json_each(audit.payload, '$.decisions') AS d "
        "WHERE audit.seq <= ? AND audit.kind = 'frame' AND json_extract(d.value, '$.gradcam') IS NOT NULL",
        (last_seq,))
    return [str(r[0]) for r in rows]


def prune_payload(rep: PruneReport, *, anchor_hash: str, criteria: dict[str, Any], gradcam_files: int) -> dict[str, Any]:
    """The payload of the ``prune`` record that anchors the chain after the deletion."""
    return {
        "pruned_from_seq": rep.first_seq,
        "pruned_through_seq": rep.last_seq,
        "anchor_hash": anchor_hash,
        "count": rep.pruned,
        "from_ts": rep.from_ts,
        "to_ts": rep.to_ts,
        "by_kind": rep.by_kind,
        "lots": rep.lots,
        "lots_truncated": len(rep.lots) >= MAX_LOTS_LISTED,
        "gradcam_files": gradcam_files,
        "criteria": criteria,
    }
