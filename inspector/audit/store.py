"""Append-only, hash-chained audit store on SQLite (WAL, ``synchronous=FULL``).

Guarantees (see docs/audit-trail.md for the threat model):

* ``append``/``append_many`` are one transaction each; when they return, the records are on disk
  (fsynced WAL) and survive ``kill -9`` of the writer and a power loss.
* every record carries ``hash = H(seq, ts, ts_iso, kind, payload, prev_hash)``; :meth:`verify`
  re-walks the chain and names the first bad seq (modified, deleted, reordered, truncated).
* a persisted head counter (table ``head``) makes tail truncation detectable; an externally logged
  ``seq:hash`` (``verify(expect_head=...)``) also catches truncation that rewrote the head counter.
* SQLite triggers reject UPDATE and DELETE of records (DELETE only through :meth:`prune`, which
  arms a guard flag inside its own transaction) and inserts that do not extend the head.
* a ``frame`` record per ``(run_id, frame_id)`` at most once (UNIQUE partial index).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from inspector.audit import retention
from inspector.audit.chain import (
    AUDIT_KINDS,
    GENESIS_HASH,
    Anchor,
    AuditError,
    AuditRecord,
    DuplicateFrameError,
    Head,
    VerifyReport,
    canonical_json,
    key_id,
    normalize,
    digest_text,
    utc_iso,
    walk_chain,
)
from inspector.audit.records import is_safe_relative_path, validate_record
from inspector.audit.retention import PruneReport

__all__ = ["AUDIT_KINDS", "AuditError", "AuditRecord", "AuditStore", "DuplicateFrameError",
           "PruneReport", "VerifyReport"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
_PAGE = 1000  # rows fetched per query when streaming

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq       INTEGER PRIMARY KEY,
    ts        REAL    NOT NULL,
    ts_iso    TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    payload   TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    run_id    TEXT    GENERATED ALWAYS AS
              (CASE WHEN kind = 'frame' THEN json_extract(payload, '$.run_id') END) VIRTUAL,
    frame_id  INTEGER GENERATED ALWAYS AS
              (CASE WHEN kind = 'frame' THEN json_extract(payload, '$.frame_id') END) VIRTUAL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_frame_once ON audit (run_id, frame_id) WHERE kind = 'frame';
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
CREATE TABLE IF NOT EXISTS head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS anchor (id INTEGER PRIMARY KEY CHECK (id = 1), first_seq INTEGER NOT NULL,
                                   prev_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prune_guard (id INTEGER PRIMARY KEY CHECK (id = 1), armed INTEGER NOT NULL);
"""

_TRIGGERS = {
    "audit_no_update": "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
                       "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;",
    "audit_no_delete": "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
                       "WHEN (SELECT armed FROM prune_guard WHERE id = 1) IS NOT 1 "
                       "BEGIN SELECT RAISE(ABORT, 'audit records can only be removed by prune()'); END;",
    "audit_insert_at_head": "CREATE TRIGGER IF NOT EXISTS audit_insert_at_head BEFORE INSERT ON audit "
                            "WHEN NEW.seq IS NOT COALESCE((SELECT MAX(seq) FROM audit), "
                            "(SELECT seq FROM head WHERE id = 1)) + 1 "
                            "BEGIN SELECT RAISE(ABORT, 'audit records must extend the head'); END;",
    "head_forward_only": "CREATE TRIGGER IF NOT EXISTS head_forward_only BEFORE UPDATE ON head "
                         "WHEN NEW.seq <= OLD.seq BEGIN SELECT RAISE(ABORT, 'the head only moves forward'); END;",
    "head_no_delete": "CREATE TRIGGER IF NOT EXISTS head_no_delete BEFORE DELETE ON head "
                      "BEGIN SELECT RAISE(ABORT, 'the head cannot be deleted'); END;",
}


class AuditStore:
    """The audit trail. One instance per process; thread-safe (one lock around the connection).

    ``hmac_key``: when given, digests are HMAC-SHA-256 so recomputing the chain needs the key; a
    store is keyed (or not) at creation and must always be opened the same way.
    ``create=False``: open an existing store only (CLI verify/export), never create one.
    """

    def __init__(self, path: str | Path, *, hmac_key: bytes | None = None, create: bool = True):
        self.path = Path(path).expanduser()
        self._key = hmac_key
        self._lock = threading.Lock()
        if not create and not self.path.is_file():
            raise AuditError(f"no audit store at {self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0,
                                         check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise AuditError(f"cannot open audit store {self.path}: {e}") from None
        try:
            self._setup(create)
        except sqlite3.DatabaseError as e:
            self._conn.close()
            raise AuditError(f"{self.path} is not a usable audit store: {e}") from None
        except AuditError:
            self._conn.close()
            raise

    # ---- setup -------------------------------------------------------------------------------
    def _setup(self, create: bool) -> None:
        c = self._conn
        fresh = c.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
        if fresh:
            if not create:
                raise AuditError(f"{self.path} is empty, not an audit store")
            c.execute("PRAGMA auto_vacuum = INCREMENTAL")  # must precede the first table
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise AuditError(f"cannot switch {self.path} to WAL mode (got {mode!r})")
        c.execute("PRAGMA synchronous = FULL")
        c.execute("PRAGMA foreign_keys = ON")
        if fresh:
            c.execute("BEGIN IMMEDIATE")
            try:
                fresh = c.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'meta'").fetchone()[0] == 0
            except BaseException:
                c.execute("ROLLBACK")
                raise
            if not fresh:  # another process created it meanwhile
                c.execute("COMMIT")
        if fresh:
            try:
                for stmt in _TABLES.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                for sql in _TRIGGERS.values():
                    c.execute(sql)
                meta = {"schema": SCHEMA_VERSION, "algorithm": "hmac-sha256" if self._key else "sha256",
                        "key_id": key_id(self._key) if self._key else "", "created": utc_iso(time.time())}
                c.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
                c.execute("INSERT INTO head (id, seq, hash) VALUES (1, 0, ?)", (GENESIS_HASH,))
                c.execute("INSERT INTO anchor (id, first_seq, prev_hash) VALUES (1, 1, ?)", (GENESIS_HASH,))
                c.execute("INSERT INTO prune_guard (id, armed) VALUES (1, 0)")
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema") != SCHEMA_VERSION:
            raise AuditError(f"{self.path}: unsupported audit schema {meta.get('schema')!r} (expected {SCHEMA_VERSION})")
        if meta.get("algorithm") == "hmac-sha256":
            if self._key is None:
                raise AuditError(f"{self.path} is HMAC-keyed: give its key file (audit.hmac_key_file / --hmac-key-file)")
            if key_id(self._key) != meta.get("key_id"):
                raise AuditError(f"{self.path}: the HMAC key does not match the key this store was created with")
        elif self._key is not None:
            raise AuditError(f"{self.path} was created without an HMAC key; refusing to mix keyed records into it")
        if create:
            missing = self.missing_triggers()
            if missing:
                log.warning("audit store %s: protective triggers were missing (%s); recreating them",
                            self.path, ", ".join(missing))
                for name in missing:
                    c.execute(_TRIGGERS[name])

    def missing_triggers(self) -> list[str]:
        have = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        return [n for n in _TRIGGERS if n not in have]

    # ---- writing -----------------------------------------------------------------------------
    def append(self, kind: str, record: dict[str, Any]) -> int:
        """Append one record in its own transaction; returns its seq once it is durable."""
        return self.append_many([(kind, record)])[0]

    def append_many(self, items: list[tuple[str, dict[str, Any]]]) -> list[int]:
        """Append records in one transaction (all or none); returns their seqs in order.

        Raises DuplicateFrameError (nothing written) when a frame record repeats a (run_id, frame_id)."""
        prepared: list[tuple[str, Any, str]] = []
        for kind, record in items:
            if kind == "prune":
                raise AuditError("prune records are written by AuditStore.prune() only")
            validate_record(kind, record)
            payload = normalize(record)
            text = canonical_json(payload)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise AuditError(f"{kind} record holds a string that is not valid Unicode (lone surrogate)") from None
            prepared.append((kind, payload, text))
        if not prepared:
            return []
        with self._lock:
            return self._append_locked(prepared)

    def _append_locked(self, prepared: list[tuple[str, Any, str]]) -> list[int]:
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise AuditError(f"audit store {self.path} is not writable: {e}") from None
        try:
            seq, prev = c.execute("SELECT seq, hash FROM head WHERE id = 1").fetchone()
            seqs = []
            for kind, payload, text in prepared:
                seq += 1
                ts = time.time()
                iso = utc_iso(ts)
                digest = digest_text(seq, ts, iso, kind, text, prev, self._key)
                try:
                    c.execute("INSERT INTO audit (seq, ts, ts_iso, kind, payload, prev_hash, hash) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?)", (seq, ts, iso, kind, text, prev, digest))
                except sqlite3.IntegrityError as e:
                    if kind == "frame" and "UNIQUE" in str(e):
                        raise DuplicateFrameError(
                            f"frame {payload.get('frame_id')} of run {payload.get('run_id')!r} is already "
                            "in the audit trail (every frame is recorded exactly once)") from None
                    raise
                seqs.append(seq)
                prev = digest
            c.execute("UPDATE head SET seq = ?, hash = ? WHERE id = 1", (seq, prev))
            c.execute("COMMIT")
            return seqs
        except BaseException as e:
            try:
                c.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(e, sqlite3.Error):
                raise AuditError(f"audit write to {self.path} failed: {e}") from None
            raise

    # ---- reading -----------------------------------------------------------------------------
    def records(self, *, since: float | None = None, until: float | None = None,
                kind: str | None = None) -> Iterator[AuditRecord]:
        """Records in seq order, optionally with ``since <= ts < until`` and of one kind.

        Streams in pages (no read transaction held between pages)."""
        if kind is not None and kind not in AUDIT_KINDS:
            raise AuditError(f"unknown audit record kind {kind!r}")
        where, params = ["seq > ?"], []
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        if until is not None:
            where.append("ts < ?")
            params.append(until)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = ("SELECT seq, ts, ts_iso, kind, payload, prev_hash, hash FROM audit WHERE "
               + " AND ".join(where) + f" ORDER BY seq LIMIT {_PAGE}")
        last = 0
        while True:
            with self._lock:
                rows = self._conn.execute(sql, (last, *params)).fetchall()
            for seq, ts, iso, k, text, prev, digest in rows:
                yield AuditRecord(seq, ts, iso, k, _loads(text, seq), prev, digest)
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    def head(self) -> Head:
        with self._lock:
            seq, digest = self._conn.execute("SELECT seq, hash FROM head WHERE id = 1").fetchone()
        return Head(int(seq), str(digest))

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                return int(self._conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0])
            return int(self._conn.execute("SELECT COUNT(*) FROM audit WHERE kind = ?", (kind,)).fetchone()[0])

    def frame_ids(self, run_id: str) -> set[int]:
        """Frame ids of ``run_id`` that already have a record (restart reconciliation)."""
        with self._lock:
            rows = self._conn.execute("SELECT frame_id FROM audit WHERE kind = 'frame' AND run_id = ?", (run_id,))
            return {int(r[0]) for r in rows}

    def frame_gaps(self, run_id: str) -> list[tuple[int, int]]:
        """Inclusive ranges of frame ids missing between the first and last recorded frame of
        ``run_id``. Frame ids are consecutive within a run, so a gap is a frame that was acquired
        but never recorded (empty = complete)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT frame_id + 1, nxt - 1 FROM (SELECT frame_id, LEAD(frame_id) OVER (ORDER BY frame_id) AS nxt "
                "FROM audit WHERE kind = 'frame' AND run_id = ?) WHERE nxt > frame_id + 1", (run_id,)).fetchall()
        return [(int(a), int(b)) for a, b in rows]

    def runs(self) -> list[dict[str, Any]]:
        """Per run: number of frame records, first/last frame id, records per outcome."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT run_id, COUNT(*), MIN(frame_id), MAX(frame_id), "
                "SUM(json_extract(payload, '$.outcome') = 'inspected'), MIN(ts) FROM audit WHERE kind = 'frame' "
                "GROUP BY run_id ORDER BY MIN(ts)").fetchall()
        return [{"run_id": r, "frames": int(n), "first_frame_id": int(lo), "last_frame_id": int(hi),
                 "inspected": int(ok or 0)} for r, n, lo, hi, ok, _ in rows]

    def unclosed_runs(self) -> list[str]:
        """run_ids with a ``startup`` record and no ``shutdown`` record (the daemon died: record it)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT json_extract(payload, '$.run_id') AS r FROM audit WHERE kind = 'startup' AND r IS NOT NULL "
                "EXCEPT SELECT json_extract(payload, '$.run_id') FROM audit WHERE kind = 'shutdown'").fetchall()
        return sorted(str(r[0]) for r in rows)

    # ---- verification ------------------------------------------------------------------------
    def verify(self, *, expect_head: tuple[int, str] | None = None, progress: bool = False) -> VerifyReport:
        """Re-walk the whole chain in one consistent snapshot. Never raises on tampering: the
        report says what is wrong (``ok``, ``first_bad_seq``, ``problem``)."""
        with self._lock:
            c = self._conn
            c.execute("BEGIN")  # one read snapshot for head, anchor and rows
            try:
                try:
                    h = c.execute("SELECT seq, hash FROM head WHERE id = 1").fetchone()
                    a = c.execute("SELECT first_seq, prev_hash FROM anchor WHERE id = 1").fetchone()
                    total = c.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
                except sqlite3.DatabaseError as e:
                    return VerifyReport(ok=False, checked=0, problem=f"store structure damaged: {e}")
                if h is None or a is None:
                    return VerifyReport(ok=False, checked=0, first_bad_seq=1,
                                        problem="the head counter or chain anchor row was deleted")
                rows: Any = c.execute("SELECT seq, ts, ts_iso, kind, payload, prev_hash, hash FROM audit ORDER BY seq")
                if progress:
                    from tqdm import tqdm

                    rows = tqdm(rows, total=total, unit="rec", desc="verify", leave=False)
                rep = walk_chain(rows, Anchor(int(a[0]), str(a[1])), Head(int(h[0]), str(h[1])),
                                 key=self._key, expect_head=expect_head)
            finally:
                c.execute("COMMIT")
            missing = self.missing_triggers()
        if missing:
            rep.warnings.append(f"protective triggers missing: {', '.join(missing)} (someone edited the file)")
        return rep

    # ---- retention ---------------------------------------------------------------------------
    def prune(self, *, max_age_s: float | None = None, max_records: int | None = None,
              max_bytes: int | None = None, gradcam_dir: str | Path | None = None,
              now: float | None = None) -> PruneReport:
        """Delete the oldest records beyond the policy and append a ``prune`` record that anchors
        the chain (hash of the last pruned record, counts, seq and time range, lots), so
        :meth:`verify` still passes and the gap is explained. With ``gradcam_dir``, Grad-CAM
        snapshots referenced by pruned frame records are deleted after the commit."""
        try:
            retention.check_limits(max_age_s, max_records, max_bytes)
        except ValueError as e:
            raise AuditError(f"prune: {e}") from None
        now = time.time() if now is None else now
        criteria = {"max_age_s": max_age_s, "max_records": max_records, "max_bytes": max_bytes}
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                cutoff = retention.prune_cutoff(c, now=now, max_age_s=max_age_s,
                                                max_records=max_records, max_bytes=max_bytes)
                if cutoff is None:
                    c.execute("COMMIT")
                    return PruneReport()
                rep = retention.summarize(c, cutoff)
                snapshots = retention.gradcam_paths(c, cutoff) if gradcam_dir is not None else []
                anchor_hash = c.execute("SELECT hash FROM audit WHERE seq = ?", (cutoff,)).fetchone()[0]
                c.execute("UPDATE prune_guard SET armed = 1 WHERE id = 1")
                c.execute("DELETE FROM audit WHERE seq <= ?", (cutoff,))
                c.execute("UPDATE prune_guard SET armed = 0 WHERE id = 1")
                c.execute("UPDATE anchor SET first_seq = ?, prev_hash = ? WHERE id = 1", (cutoff + 1, anchor_hash))
                payload = normalize(retention.prune_payload(rep, anchor_hash=anchor_hash, criteria=criteria,
                                                            gradcam_files=len(snapshots)))
                seq, prev = c.execute("SELECT seq, hash FROM head WHERE id = 1").fetchone()
                seq += 1
                ts = time.time()
                iso = utc_iso(ts)
                text = canonical_json(payload)
                digest = digest_text(seq, ts, iso, "prune", text, prev, self._key)
                c.execute("INSERT INTO audit (seq, ts, ts_iso, kind, payload, prev_hash, hash) "
                          "VALUES (?, ?, ?, 'prune', ?, ?, ?)", (seq, ts, iso, text, prev, digest))
                c.execute("UPDATE head SET seq = ?, hash = ? WHERE id = 1", (seq, digest))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            rep.prune_seq = seq
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            c.execute("PRAGMA incremental_vacuum")
        if gradcam_dir is not None:
            rep.gradcam_deleted, rep.gradcam_missing = _delete_snapshots(Path(gradcam_dir), snapshots)
        log.info("audit %s", rep.summary())
        return rep

    # ---- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:  # pragma: no cover - closing twice or a dead handle
                pass

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditStore({str(self.path)!r})"


def _loads(text: str, seq: int) -> dict[str, Any]:
    try:
        return json.loads(text)
    except ValueError:
        raise AuditError(f"audit record seq {seq} has an unreadable payload (run `inspector audit verify`)") from None


def _delete_snapshots(base: Path, rel_paths: list[str]) -> tuple[int, int]:
    """Delete snapshot files (only safe relative paths inside ``base``); returns (deleted, missing)."""
    deleted = missing = 0
    root = base.expanduser().resolve()
    for rel in rel_paths:
        if not is_safe_relative_path(rel):
            log.warning("audit prune: not deleting unsafe Grad-CAM path %r", rel)
            continue
        p = (root / rel).resolve()
        if root not in p.parents:
            continue
        try:
            p.unlink()
            deleted += 1
        except FileNotFoundError:
            missing += 1
        except OSError as e:
            log.warning("audit prune: cannot delete %s: %s", p, e)
    return deleted, missing
