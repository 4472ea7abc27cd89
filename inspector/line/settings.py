"""The ``line:``, ``opcua:`` and ``operator:`` blocks of the configuration (line integration, issue 13).

```yaml
line:                                  # acknowledged reject delivery (off until an endpoint is set)
  reject_endpoint: null                # e.g. tcp://127.0.0.1:5562 (ROUTER; controllers connect a DEALER)
  deadline_ms: 500                     # an actionable decision not acknowledged by then is an alarm
  resend_ms: 100                       # resend an unacknowledged command this often until the deadline
  actionable: [reject]                 # verdicts that must reach the controller (pass | reject | error)
  require: any                         # any: one controller's ack settles it; all: every controller
                                       # connected when it was issued must ack
  controller_timeout_ms: 3000          # a controller silent this long (no hello/heartbeat/ack) is gone
opcua:                                 # OPC UA server (Machine Vision concepts, OPC 40100-1)
  enabled: false
  endpoint: opc.tcp://127.0.0.1:4840
  allow_anonymous_control: false       # SetLot / Pause / Resume need a user unless true
  users_file: null                     # YAML {username: sha256-hex of the password}
  security: [None]                     # None | Basic256Sha256_Sign | Basic256Sha256_SignAndEncrypt
  certificate: null                    # DER/PEM server certificate (needed for Basic256Sha256_*)
  private_key: null                    # PEM private key of that certificate
operator:                              # operator page on the metrics listener (/operator)
  enabled: true
  token_file: null                     # without it the page is locked (403) unless metrics.listen is loopback
  rejects: 12                          # reject gallery size
  thumbnail_px: 256                    # longest side of the per-frame thumbnail (0: no thumbnail)
```
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from inspector.config import Config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LineConfig(_Strict):
    reject_endpoint: str | None = None
    deadline_ms: float = Field(500.0, gt=0, le=600_000)
    resend_ms: float = Field(100.0, gt=0, le=60_000)
    actionable: list[Literal["pass", "reject", "error"]] = Field(default_factory=lambda: ["reject"], min_length=1)
    require: Literal["any", "all"] = "any"
    controller_timeout_ms: float = Field(3000.0, gt=0, le=600_000)

    @field_validator("reject_endpoint")
    @classmethod
    def _ep(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"expected a ZeroMQ endpoint tcp://HOST:PORT or ipc://PATH, got {v!r}")
        return v

    @model_validator(mode="after")
    def _resend(self) -> LineConfig:
        if self.resend_ms > self.deadline_ms:
            raise ValueError(f"resend_ms ({self.resend_ms:g}) must not exceed deadline_ms ({self.deadline_ms:g})")
        return self

    @property
    def enabled(self) -> bool:
        return self.reject_endpoint is not None


SECURITY_MODES = ("None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt")


class OpcUaConfig(_Strict):
    enabled: bool = False
    endpoint: str = "opc.tcp://127.0.0.1:4840"
    namespace: str = "urn:inspector:machinevision"
    allow_anonymous_control: bool = False
    users_file: str | None = None
    security: list[Literal["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"]] = \
        Field(default_factory=lambda: ["None"], min_length=1)
    certificate: str | None = None
    private_key: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _ep(cls, v: str) -> str:
        if not v.startswith("opc.tcp://") or ":" not in v[len("opc.tcp://"):]:
            raise ValueError(f"expected opc.tcp://HOST:PORT, got {v!r}")
        return v

    @model_validator(mode="after")
    def _certs(self) -> OpcUaConfig:
        signed = any(m != "None" for m in self.security)
        if signed and not (self.certificate and self.private_key):
            raise ValueError("Basic256Sha256 security needs certificate and private_key")
        for key in ("certificate", "private_key", "users_file"):
            path = getattr(self, key)
            if path and not Path(path).expanduser().is_file():
                raise ValueError(f"{key}: no such file {path}")
        return self


class OperatorConfig(_Strict):
    enabled: bool = True
    token_file: str | None = None
    rejects: int = Field(12, ge=1, le=200)
    thumbnail_px: int = Field(256, ge=0, le=1024)

    @field_validator("token_file")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).expanduser().is_file():
            raise ValueError(f"no such file {v}")
        return v


def line_config(cfg: Config) -> LineConfig:
    """Validate ``cfg.line``; raises ConfigError naming the bad key."""
    from inspector.config import validate_block

    return validate_block(LineConfig, cfg.line, "line")


def opcua_config(cfg: Config) -> OpcUaConfig:
    from inspector.config import validate_block

    return validate_block(OpcUaConfig, cfg.opcua, "opcua")


def operator_config(cfg: Config) -> OperatorConfig:
    from inspector.config import validate_block

    return validate_block(OperatorConfig, cfg.operator, "operator")


def validate_all(cfg: Config) -> None:
    """Validate the three blocks (``inspector config check`` and ``inspector run`` call this)."""
    line_config(cfg), opcua_config(cfg), operator_config(cfg)
