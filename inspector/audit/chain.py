"""Hash chain primitives: canonical JSON, record digests, and the pure verification walk.

Every audit record is chained to its predecessor::

    hash(n) = H( canonical_json({"seq", "ts", "ts_iso", "kind", "payload", "prev_hash"}) )

where ``prev_hash`` is ``hash(n-1)`` (64 zeros for the first record ever, or the prune anchor once
old records have been pruned) and ``H`` is SHA-256, or HMAC-SHA-256 when the store is keyed.
Canonical JSON is ``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)`` encoded as UTF-8, so any implementation can recompute a digest.

This module is pure (no SQLite): :func:`walk_chain` checks an ordered stream of rows and is what
:meth:`inspector.audit.store.AuditStore.verify` runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from inspector.errors import InspectorError

GENESIS_HASH = "0" * 64

AUDIT_KINDS = (
    "frame", "config", "model_load", "model_reload", "model_refused", "lot_change",
    "control", "startup", "shutdown", "prune", "camera", "worker_restart", "lot_summary",
    "reject_ack", "alarm", "line_controller",  # line integration (inspector/line)
)

FRAME_OUTCOMES = ("inspected", "dropped", "lost", "error")


class AuditError(InspectorError):
    """The audit store cannot be opened or written, or a record is malformed."""


class DuplicateFrameError(AuditError):
    """A second 'frame' record for a (run_id, frame_id) that is already in the store."""


@dataclass(frozen=True)
class AuditRecord:
    """One stored record, as read back from the store."""

    seq: int
    ts: float
    ts_iso: str
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "ts_iso": self.ts_iso, "kind": self.kind,
                "payload": self.payload, "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass
class VerifyReport:
    """Result of a chain verification. ``first_bad_seq`` names the first record that fails."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""
    first_seq: int | None = None
    head_seq: int | None = None
    head_hash: str | None = None
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.ok:
            return (f"audit chain OK: {self.checked} records, seq {self.first_seq}..{self.head_seq}, "
                    f"head {self.head_seq}:{self.head_hash}")
        return f"audit chain BROKEN at seq {self.first_bad_seq}: {self.problem} ({self.checked} records checked)"


def utc_iso(ts: float) -> str:
    """UNIX seconds -> ISO 8601 UTC with microseconds, e.g. ``2026-11-22T01:26:42.123456+00:00``."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")


def normalize(obj: Any, _path: str = "record") -> Any:
    """Make ``obj`` canonical-JSON safe: tuples -> lists, numpy scalars -> Python numbers,
    non-finite floats -> the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no NaN).

    Raises AuditError naming the path of anything that is not plain data."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise AuditError(f"{_path}: keys must be strings, got {type(k).__name__} {k!r}")
            out[k] = normalize(v, f"{_path}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [normalize(v, f"{_path}[{i}]") for i, v in enumerate(obj)]
    item = getattr(obj, "item", None)  # numpy scalar (never imported here)
    if callable(item) and getattr(obj, "shape", None) == ():
        return normalize(item(), _path)
    raise AuditError(f"{_path}: cannot store a {type(obj).__name__} in the audit trail (plain JSON data only)")


def canonical_json(obj: Any) -> str:
    """The one serialization used for payloads and digests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_digest(seq: int, ts: float, ts_iso: str, kind: str, payload: Any, prev_hash: str,
                  key: bytes | None = None) -> str:
    """Hex digest of one record: SHA-256, or HMAC-SHA-256 with ``key``, over
    ``canonical_json({"seq", "ts", "ts_iso", "kind", "payload", "prev_hash"})``."""
    return digest_text(seq, ts, ts_iso, kind, canonical_json(payload), prev_hash, key)


def digest_text(seq: int, ts: float, ts_iso: str, kind: str, payload_text: str, prev_hash: str,
                key: bytes | None = None) -> str:
    """:func:`record_digest` from the payload's canonical JSON text (what the store keeps), without
    re-serializing it: the keys of the outer object are spliced in sorted order, which yields
    byte-for-byte the same canonical JSON."""
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(ts, float):
        raise TypeError("seq must be an int and ts a float")
    if not math.isfinite(ts):
        raise ValueError("ts must be finite")
    blob = ('{"kind":' + json.dumps(kind, ensure_ascii=False) + ',"payload":' + payload_text
            + ',"prev_hash":' + json.dumps(prev_hash, ensure_ascii=False) + ',"seq":' + str(seq)
            + ',"ts":' + float.__repr__(ts) + ',"ts_iso":' + json.dumps(ts_iso, ensure_ascii=False)
            + "}").encode("utf-8")
    if key is None:
        return hashlib.sha256(blob).hexdigest()
    return hmac.new(key, blob, hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A public fingerprint of an HMAC key (stored so a wrong key is reported as such)."""
    return hashlib.sha256(b"inspector-audit-key-id\x00" + key).hexdigest()[:16]


@dataclass(frozen=True)
class Anchor:
    """Where the stored chain starts: ``first_seq`` links to ``prev_hash``."""

    first_seq: int = 1
    prev_hash: str = GENESIS_HASH


@dataclass(frozen=True)
class Head:
    """The persisted head counter: the last appended seq and its hash (seq 0 = empty store)."""

    seq: int = 0
    hash: str = GENESIS_HASH


RawRow = tuple[int, float, str, str, str, str, str]  # seq, ts, ts_iso, kind, payload_text, prev_hash, hash


def walk_chain(rows: Iterable[RawRow], anchor: Anchor, head: Head, *, key: bytes | None = None,
               expect_head: tuple[int, str] | None = None) -> VerifyReport:
    """Check an ordered (by seq) stream of raw rows against the anchor and the head counter.

    Detects: a modified record (digest mismatch), a deleted or reordered record (seq gap or
    broken ``prev_hash`` link), rows before the anchor, a truncated tail (head counter ahead of the
    last row), oldest rows deleted without a prune record, and, with ``expect_head`` (an externally
    logged ``seq:hash``), truncation that also rewrote the head counter.
    """
    rep = VerifyReport(ok=True, checked=0, first_seq=None)
    expected_seq = anchor.first_seq
    prev = anchor.prev_hash
    last_seq, last_hash = anchor.first_seq - 1, anchor.prev_hash
    prune_anchor_confirmed = anchor.first_seq == 1 and anchor.prev_hash == GENESIS_HASH
    seen_hashes: dict[int, str] = {}

    def fail(seq: int | None, problem: str) -> VerifyReport:
        rep.ok, rep.first_bad_seq, rep.problem = False, seq, problem
        return rep

    for seq, ts, ts_iso, kind, payload_text, prev_hash, digest in rows:
        if rep.first_seq is None:
            rep.first_seq = seq
            if seq != anchor.first_seq:
                if seq < anchor.first_seq:
                    return fail(seq, f"record seq {seq} lies before the chain anchor (seq {anchor.first_seq})")
                return fail(anchor.first_seq, f"records {anchor.first_seq}..{seq - 1} are missing: the chain "
                                              f"should start at seq {anchor.first_seq}")
        if seq != expected_seq:
            return fail(expected_seq, f"record seq {expected_seq} is missing (next stored record is seq {seq})")
        if prev_hash != prev:
            return fail(seq, f"record seq {seq} does not link to its predecessor (prev_hash mismatch: "
                             "a record was deleted, reordered or replaced)")
        if kind not in AUDIT_KINDS:
            return fail(seq, f"record seq {seq} has an unknown kind {kind!r}")
        try:
            recomputed = digest_text(seq, ts, ts_iso, kind, payload_text, prev_hash, key)
        except (TypeError, ValueError, UnicodeEncodeError):
            return fail(seq, f"record seq {seq} has a malformed column (seq, ts, ts_iso or payload)")
        if not hmac.compare_digest(recomputed, str(digest)):
            return fail(seq, f"record seq {seq} was modified: its content does not match its hash")
        if kind == "prune":
            try:
                payload = json.loads(payload_text)
            except (TypeError, ValueError, RecursionError):
                return fail(seq, f"record seq {seq} has an unreadable payload")
            if (isinstance(payload, dict) and payload.get("pruned_through_seq") == anchor.first_seq - 1
                    and payload.get("anchor_hash") == anchor.prev_hash):
                prune_anchor_confirmed = True
        if expect_head is not None and seq == expect_head[0]:
            seen_hashes[seq] = digest
        rep.checked += 1
        prev, last_seq, last_hash = digest, seq, digest
        expected_seq += 1

    if not prune_anchor_confirmed:
        return fail(anchor.first_seq, f"the chain starts at seq {anchor.first_seq} but no prune record "
                                      f"explains records 1..{anchor.first_seq - 1}")
    if head.seq > last_seq:
        return fail(last_seq + 1, f"truncated: the head counter says seq {head.seq} but the last stored "
                                  f"record is seq {last_seq}")
    if head.seq < last_seq:
        return fail(head.seq + 1, f"records after the head counter (seq {head.seq}) were added outside the store")
    if head.hash != last_hash:
        return fail(last_seq, f"the head counter's hash does not match record seq {last_seq}")
    if expect_head is not None:
        eseq, ehash = expect_head
        if eseq < anchor.first_seq - 1:
            return fail(eseq, f"expected head seq {eseq} has been pruned (chain starts at seq "
                              f"{anchor.first_seq}); it can no longer be checked")
        if eseq == anchor.first_seq - 1:
            got = anchor.prev_hash
        elif eseq > last_seq:
            return fail(last_seq + 1, f"truncated: the externally logged head is seq {eseq} but the last "
                                      f"stored record is seq {last_seq}")
        else:
            got = seen_hashes.get(eseq, "")
        if not hmac.compare_digest(got, ehash.lower()):
            return fail(eseq, f"record seq {eseq} does not match the externally logged hash")
    rep.head_seq, rep.head_hash = last_seq, last_hash
    if rep.first_seq is None:
        rep.first_seq = anchor.first_seq
    return rep

