"""The ``control:`` block of the configuration.

```yaml
control:
  endpoint: tcp://127.0.0.1:5561   # REP socket of the supervisor; non-loopback tcp needs CURVE keys
  timeout_s: 5.0                   # client-side reply timeout
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator


if TYPE_CHECKING:
    from inspector.config import Config

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5561"


class ControlConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = DEFAULT_ENDPOINT
    timeout_s: float = Field(5.0, gt=0, le=600)

    @field_validator("endpoint")
    @classmethod
    def _ep(cls, v: str) -> str:
        if not v.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"expected a ZeroMQ endpoint tcp://HOST:PORT or ipc://PATH, got {v!r}")
        return v


def control_config(cfg: Config) -> ControlConfig:
    """Validate ``cfg.control``; raises ConfigError naming the bad key."""
    from inspector.config import validate_block

    return validate_block(ControlConfig, cfg.control, "control")
