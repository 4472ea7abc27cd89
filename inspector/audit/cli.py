"""``inspector audit verify|export|prune`` (plugin module: ``inspector.audit.cli``)."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inspector.errors import ConfigError, InspectorError

_HALF_US = 5e-7
_HEAD_RE = re.compile(r"^(\d+):([0-9a-fA-F]{64})$")


def register(sub: Any, groups: dict[str, Any]) -> None:
    audit = sub.add_parser("audit", help="audit trail: verify the hash chain, export, prune")
    verbs = audit.add_subparsers(dest="audit_cmd", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", help="audit store file (default: <state_dir>/audit.sqlite3 from the config)")
        p.add_argument("--config", help="configuration file (default: the embedded demo configuration)")
        p.add_argument("--hmac-key-file", help="HMAC key of a keyed store (default: audit.hmac_key_file)")

    v = verbs.add_parser("verify", help="check the whole hash chain; exit 1 if anything was tampered with")
    common(v)
    v.add_argument("--expect-head", metavar="SEQ:HASH",
                   help="an externally logged head (printed by an earlier verify): detects tail truncation "
                        "that also rewrote the head counter")
    v.set_defaults(func=_verify)

    e = verbs.add_parser("export", help="export records as CSV or JSON Lines")
    common(e)
    e.add_argument("--from", dest="since", metavar="ISO", help="first record time, ISO 8601 (naive = UTC)")
    e.add_argument("--to", dest="until", metavar="ISO", help="end time (exclusive), ISO 8601 (naive = UTC)")
    e.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    e.add_argument("--out", help="output file (default: stdout)")
    e.add_argument("--kind", help="only this record kind (frame, control, prune, …)")
    e.set_defaults(func=_export)

    p = verbs.add_parser("prune", help="delete the oldest records (the gap is recorded and anchored)")
    common(p)
    p.add_argument("--max-age", type=float, metavar="DAYS", help="delete records older than DAYS")
    p.add_argument("--max-records", type=int, metavar="N", help="keep the newest N records")
    p.add_argument("--max-bytes", type=int, metavar="N", help="keep the newest records up to ~N payload bytes")
    p.set_defaults(func=_prune)


def _open(args: argparse.Namespace, *, create: bool = False):  # -> (AuditStore, Config | None)
    from inspector.audit.settings import load_hmac_key, open_store
    from inspector.audit.store import AuditStore

    if args.db and not args.config:
        key = load_hmac_key(args.hmac_key_file) if args.hmac_key_file else None
        return AuditStore(args.db, hmac_key=key, create=create), None
    from inspector.config import load_config

    cfg = load_config(args.config, check_inspections=False)
    return open_store(cfg, create=create, db=args.db, hmac_key_file=args.hmac_key_file), cfg


def parse_time(text: str | None, flag: str) -> float | None:
    """ISO 8601 date or date-time -> UNIX seconds (naive times are UTC)."""
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{flag}: expected an ISO 8601 time like 2026-11-22T08:00:00Z, got {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def parse_head(text: str) -> tuple[int, str]:
    m = _HEAD_RE.match(text.strip())
    if not m:
        raise ConfigError(f"--expect-head: expected SEQ:HASH (64 hex digits), got {text!r}")
    return int(m.group(1)), m.group(2).lower()


def _verify(args: argparse.Namespace) -> int:
    expect = parse_head(args.expect_head) if args.expect_head else None
    store, _ = _open(args)
    try:
        rep = store.verify(expect_head=expect, progress=sys.stderr.isatty())
        if rep.ok:  # completeness: every acquired frame id of a run appears (exactly once: UNIQUE index)
            for run in store.runs():
                gaps = store.frame_gaps(run["run_id"])
                missing = sum(b - a + 1 for a, b in gaps)
                print(f"run {run['run_id']}: frames {run['first_frame_id']}..{run['last_frame_id']}, "
                      f"{run['frames']} records ({run['inspected']} inspected), "
                      + ("complete" if not gaps else f"{missing} frame ids without a record: "
                         + ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in gaps[:10])
                         + (" …" if len(gaps) > 10 else "")))
                if gaps:
                    rep.warnings.append(f"run {run['run_id']}: {missing} acquired frame ids have no record")
    finally:
        store.close()
    for w in rep.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not rep.ok:
        print(f"error: {rep.summary()}", file=sys.stderr)
        return 1
    print(rep.summary())
    print(f"head {rep.head_seq}:{rep.head_hash}   (log this line outside the machine; "
          "check it later with --expect-head)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from inspector.audit.chain import AUDIT_KINDS
    from inspector.audit.export import export

    if args.kind is not None and args.kind not in AUDIT_KINDS:
        raise ConfigError(f"--kind: unknown record kind {args.kind!r} (one of {', '.join(AUDIT_KINDS)})")
    since, until = parse_time(args.since, "--from"), parse_time(args.until, "--to")
    # ISO times have microsecond resolution: a record whose ts_iso equals --from is included
    since = None if since is None else since - _HALF_US
    until = None if until is None else until - _HALF_US
    if since is not None and until is not None and until <= since:
        raise ConfigError("--to must be after --from")
    store, _ = _open(args)
    try:
        recs = tqdm(store.records(since=since, until=until, kind=args.kind), unit="rec", desc="export",
                    disable=not sys.stderr.isatty() or not args.out, leave=False)
        if args.out:
            out = Path(args.out)
            tmp = out.with_name(out.name + ".part")
            try:
                with open(tmp, "w", encoding="utf-8", newline="") as f:
                    n = export(recs, f, args.format)
                tmp.replace(out)
            except OSError as e:
                raise InspectorError(f"cannot write {out}: {e.strerror or e}") from None
            print(f"exported {n} records to {out}", file=sys.stderr)
        else:
            n = export(recs, sys.stdout, args.format)
    finally:
        store.close()
    return 0


def _prune(args: argparse.Namespace) -> int:
    from inspector.audit.settings import audit_config, gradcam_dir

    store, cfg = _open(args)
    try:
        age_days, max_records, max_bytes = args.max_age, args.max_records, args.max_bytes
        snapshots = None
        if cfg is not None:
            acfg = audit_config(cfg)
            snapshots = gradcam_dir(cfg, acfg)
            if age_days is None and max_records is None and max_bytes is None:
                r = acfg.retention
                age_days, max_records, max_bytes = r.max_age_days, r.max_records, r.max_bytes
        if age_days is None and max_records is None and max_bytes is None:
            raise ConfigError("prune: give --max-age DAYS, --max-records N or --max-bytes N "
                              "(or set audit.retention in the configuration)")
        rep = store.prune(max_age_s=None if age_days is None else age_days * 86400.0,
                          max_records=max_records, max_bytes=max_bytes, gradcam_dir=snapshots)
    finally:
        store.close()
    print(rep.summary())
    return 0
