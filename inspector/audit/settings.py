"""The ``audit:`` block of the configuration, and opening the configured store.

```yaml
audit:
  db: null                 # default <state_dir>/audit.sqlite3
  hmac_key_file: null      # optional: HMAC-SHA-256 chain (recomputing it needs the key)
  gradcam_dir: null        # default publish.gradcam_dir or <state_dir>/gradcam
  retention:
    max_age_days: 3650     # null = keep forever
    max_records: null
    max_bytes: null
```
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from inspector.errors import ConfigError

if TYPE_CHECKING:
    from inspector.audit.retention import PruneReport
    from inspector.audit.store import AuditStore
    from inspector.config import Config

log = logging.getLogger(__name__)

MIN_KEY_BYTES = 16


class RetentionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_age_days: float | None = Field(None, ge=0)
    max_records: int | None = Field(None, ge=0)
    max_bytes: int | None = Field(None, ge=0)

    def is_set(self) -> bool:
        return any(v is not None for v in (self.max_age_days, self.max_records, self.max_bytes))


class AuditConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    db: str | None = None
    hmac_key_file: str | None = None
    gradcam_dir: str | None = None
    retention: RetentionConfig = Field(default_factory=RetentionConfig)


def audit_config(cfg: Config) -> AuditConfig:
    """Validate ``cfg.audit``; raises ConfigError naming the bad key."""
    from inspector.config import validate_block

    return validate_block(AuditConfig, cfg.audit, "audit")


def db_path(cfg: Config, acfg: AuditConfig | None = None) -> Path:
    acfg = acfg or audit_config(cfg)
    return Path(os.path.expanduser(acfg.db)) if acfg.db else cfg.state_path() / "audit.sqlite3"


def gradcam_dir(cfg: Config, acfg: AuditConfig | None = None) -> Path:
    acfg = acfg or audit_config(cfg)
    d = acfg.gradcam_dir or cfg.publish.gradcam_dir
    return Path(os.path.expanduser(d)) if d else cfg.state_path() / "gradcam"


def load_hmac_key(path: str | Path) -> bytes:
    """Read an HMAC key file (its bytes, surrounding whitespace stripped; >= 16 bytes).

    Generate one with ``python -c "import secrets; print(secrets.token_hex(32))" > audit.key``
    and ``chmod 600 audit.key``. A key readable by group/others is accepted with a warning."""
    p = Path(path).expanduser()
    try:
        data = p.read_bytes().strip()
        mode = p.stat().st_mode
    except OSError as e:
        raise ConfigError(f"cannot read audit HMAC key file {p}: {e.strerror or e}") from None
    if len(data) < MIN_KEY_BYTES:
        raise ConfigError(f"audit HMAC key file {p} holds {len(data)} bytes; need at least {MIN_KEY_BYTES}")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("audit HMAC key file %s is readable by group/others; chmod 600 it", p)
    return data


def open_store(cfg: Config, *, create: bool = True, db: str | Path | None = None,
               hmac_key_file: str | Path | None = None) -> AuditStore:
    """Open the store the configuration names (``db``/``hmac_key_file`` override it)."""
    from inspector.audit.store import AuditStore

    acfg = audit_config(cfg)
    path = Path(db).expanduser() if db else db_path(cfg, acfg)
    keyfile = hmac_key_file or acfg.hmac_key_file
    key = load_hmac_key(keyfile) if keyfile else None
    return AuditStore(path, hmac_key=key, create=create)


def apply_retention(store: AuditStore, cfg: Config) -> PruneReport | None:
    """Prune ``store`` by ``audit.retention`` (None when no limit is configured). Grad-CAM snapshots
    of pruned frames are deleted from the configured Grad-CAM directory."""
    acfg = audit_config(cfg)
    r = acfg.retention
    if not r.is_set():
        return None
    return store.prune(max_age_s=None if r.max_age_days is None else r.max_age_days * 86400.0,
                       max_records=r.max_records, max_bytes=r.max_bytes, gradcam_dir=gradcam_dir(cfg, acfg))
