"""The ``audit:`` configuration block: validation, the default path, HMAC key files, retention."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from inspector.audit.settings import apply_retention, audit_config, db_path, gradcam_dir, load_hmac_key, open_store
from inspector.audit.store import AuditError
from inspector.config import load_config
from inspector.errors import ConfigError


def cfg_with(tmp_path: Path, text: str):
    p = tmp_path / "config.yaml"
    p.write_text(f"state_dir: {tmp_path / 'state'}\n" + text)
    return load_config(p, check_inspections=False)


def test_defaults_live_in_the_state_dir(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, "")
    assert db_path(cfg) == tmp_path / "state" / "audit.sqlite3"
    assert gradcam_dir(cfg) == tmp_path / "state" / "gradcam"
    with open_store(cfg) as store:
        assert store.path == tmp_path / "state" / "audit.sqlite3"
        assert apply_retention(store, cfg) is None  # no limits configured: nothing to do


@pytest.mark.parametrize("block, message", [
    ("audit: {retention: {max_age_days: -1}}", "audit.retention.max_age_days"),
    ("audit: {keep: forever}", "audit.keep: unknown key"),
    ("audit: {retention: [1]}", "audit.retention"),
])
def test_bad_audit_block_is_a_config_error(tmp_path: Path, block: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        audit_config(cfg_with(tmp_path, block + "\n"))


def test_hmac_key_file_from_the_config(tmp_path: Path, caplog) -> None:
    key = tmp_path / "audit.key"
    key.write_text("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n")
    os.chmod(key, 0o600)
    cfg = cfg_with(tmp_path, f"audit: {{hmac_key_file: {key}, db: {tmp_path / 'k.sqlite3'}}}\n")
    with open_store(cfg) as store:
        store.append("config", {"x": 1})
        assert store.verify().ok
    with pytest.raises(AuditError, match="HMAC-keyed"):
        open_store(cfg_with(tmp_path, f"audit: {{db: {tmp_path / 'k.sqlite3'}}}\n"))
    assert load_hmac_key(key) == key.read_bytes().strip()
    os.chmod(key, 0o644)
    with caplog.at_level(logging.WARNING):
        load_hmac_key(key)
    assert "chmod 600" in caplog.text


def test_bad_hmac_key_files(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="need at least 16"):
        load_hmac_key(short)
    with pytest.raises(ConfigError, match="cannot read"):
        load_hmac_key(tmp_path / "missing.key")


def test_apply_retention_prunes_by_the_configured_policy(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, "audit: {retention: {max_records: 3}}\n")
    with open_store(cfg) as store:
        store.append_many([("config", {"i": i}) for i in range(10)])
        rep = apply_retention(store, cfg)
        assert rep is not None and rep.pruned == 7
        assert store.verify().ok
