"""Configuration: a YAML file plus ``INSPECTOR_…`` environment overrides (nested with ``__``).

Precedence: environment > YAML file > embedded defaults (``inspector/defaults/config.yaml`` is the
demo configuration used when no file is given). Validation errors name the key and the value.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from inspector.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).parent / "defaults" / "config.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CameraConfig(_Strict):
    driver: Literal["genicam", "replay", "synthetic"] = "synthetic"
    id: str | None = Field(None, description="camera id in metadata; default derived from the driver")
    # genicam
    cti: str | None = Field(None, description="GenTL producer (.cti); null = simulated producer in the genicam wheel")
    device: int | str = Field(0, description="device index, or serial number / id")
    width: int | None = Field(640, gt=0)
    height: int | None = Field(480, gt=0)
    pixel_format: Literal["Mono8", "Mono16", "RGB8", "RGBa8"] | None = "Mono8"
    fps: float = Field(10.0, gt=0, le=1000)
    fetch_timeout_s: float = Field(1.0, gt=0, le=60)
    reconnect_backoff_s: tuple[float, float] = (0.5, 10.0)
    # replay
    path: str | None = Field(None, description="replay: a folder or a glob of image files")
    loop: bool = True
    # synthetic
    scene: Literal["sem", "tablet", "noise"] = "sem"
    classes: list[str] = Field(default_factory=list, description="synthetic: classes to cycle through (empty = all)")
    seed: int = 0
    lot: int = 0

    @model_validator(mode="after")
    def _check_driver(self) -> CameraConfig:
        if self.driver == "replay" and not self.path:
            raise ValueError("camera.path is required when camera.driver is 'replay'")
        lo, hi = self.reconnect_backoff_s
        if not 0 < lo <= hi:
            raise ValueError("camera.reconnect_backoff_s must be (min, max) with 0 < min <= max")
        return self


class QueueConfig(_Strict):
    capacity: int = Field(32, ge=1, le=100_000)
    when_full: Literal["block", "drop_oldest", "drop_newest"] = "drop_oldest"


class PublishConfig(_Strict):
    endpoint: str = "tcp://127.0.0.1:5560"
    gradcam_dir: str | None = Field(None, description="where Grad-CAM snapshots are saved; default <state_dir>/gradcam")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        return _check_endpoint(v)


class MetricsConfig(_Strict):
    listen: str = "127.0.0.1:9108"
    enabled: bool = True

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT, got {v!r}")
        return v


class InspectionSpec(_Strict):
    name: str
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict)


class LotConfig(_Strict):
    id: str | None = None
    recipe: str | None = None
    expected_excipient: str | None = None


class LogConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    results: bool = Field(True, description="log one line per result (the demo's scrolling output)")
    json_lines: bool = False


class TransportConfig(_Strict):
    frames_endpoint: str | None = Field(None, description="acquisition -> workers; default ipc in runtime_dir")
    max_message_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    remote_listen: str | None = Field(None, description=(
        "accept remote inspection workers (`inspector worker --connect tcp://HOST:PORT`) on tcp://ADDR:PORT: "
        "frames on PORT, results/events on PORT+1, commands on PORT+2; CURVE required off loopback"))
    remote_timeout_s: float = Field(3.0, gt=0.5, le=60, description="a remote worker silent this long is gone")

    @field_validator("frames_endpoint")
    @classmethod
    def _ep(cls, v: str | None) -> str | None:
        return None if v is None else _check_endpoint(v)

    @field_validator("remote_listen")
    @classmethod
    def _remote(cls, v: str | None) -> str | None:
        if v is None:
            return None
        _check_endpoint(v)
        host, sep, port = v[len("tcp://"):].rpartition(":") if v.startswith("tcp://") else ("", "", "")
        if not sep or not port.isdigit() or not 0 < int(port) < 65534:
            raise ValueError(f"expected tcp://ADDRESS:PORT (PORT..PORT+2 are used), got {v!r}")
        return v


class SupervisorConfig(_Strict):
    drain_timeout_s: float = Field(5.0, gt=0, le=60)
    restart_backoff_s: float = Field(0.2, ge=0, le=60)
    stall_timeout_s: float = Field(1.5, gt=0.1, le=600, description=(
        "frames acquired but none inspected for this long: not ready, watchdog withheld (set it above "
        "the slowest frame's inspection time)"))


def _check_endpoint(v: str) -> str:
    if not (v.startswith("tcp://") or v.startswith("ipc://") or v.startswith("inproc://")):
        raise ValueError(f"expected a ZeroMQ endpoint tcp://HOST:PORT or ipc://PATH, got {v!r}")
    return v


class Config(BaseSettings):
    """The whole daemon configuration."""

    model_config = SettingsConfigDict(env_prefix="INSPECTOR_", env_nested_delimiter="__", extra="forbid")

    camera: CameraConfig = Field(default_factory=CameraConfig)
    workers: int = Field(2, ge=1, le=64)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    inspections: list[InspectionSpec] = Field(default_factory=lambda: [InspectionSpec(name="quality")])
    lot: LotConfig = Field(default_factory=LotConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    transport: TransportConfig = Field(default_factory=TransportConfig)
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig)
    state_dir: str = Field("~/.local/state/inspector", description="audit store, Grad-CAM snapshots, TensorRT cache")
    runtime_dir: str | None = Field(None, description="ipc sockets, metrics files; default a private temp dir")
    models_dir: str | None = Field(None, description="model repository (relative paths: to the config file, then "
                                                     "CWD); default: the checkout's models/ folder, else ./models")
    # extension blocks owned by later issues (validated by their own modules)
    audit: dict[str, Any] = Field(default_factory=dict)
    control: dict[str, Any] = Field(default_factory=dict)
    security: dict[str, Any] = Field(default_factory=dict)
    line: dict[str, Any] = Field(default_factory=dict)       # inspector/line/settings.py
    opcua: dict[str, Any] = Field(default_factory=dict)      # inspector/line/settings.py
    operator: dict[str, Any] = Field(default_factory=dict)   # inspector/line/settings.py

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # env beats the file (the file's values arrive as init kwargs)
        return (env_settings, init_settings)

    @field_validator("inspections")
    @classmethod
    def _unique(cls, v: list[InspectionSpec]) -> list[InspectionSpec]:
        names = [s.name for s in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"inspection listed twice: {', '.join(sorted(dup))}")
        return v

    # ---- derived helpers -------------------------------------------------
    def enabled_inspections(self) -> list[InspectionSpec]:
        return [s for s in self.inspections if s.enabled]

    def state_path(self) -> Path:
        return Path(os.path.expanduser(self.state_dir))

    def models_path(self) -> Path:
        if self.models_dir:
            return Path(os.path.expanduser(self.models_dir))
        bundled = Path(__file__).resolve().parents[1] / "models"  # a source checkout / editable install
        return bundled if bundled.is_dir() else Path("models")

    def lot_context(self) -> dict[str, Any]:
        """Frame context stamped at acquisition: lot, recipe, expected excipient (unset keys omitted)."""
        ctx = {"lot": self.lot.id, "recipe": self.lot.recipe, "expected_excipient": self.lot.expected_excipient}
        return {k: v for k, v in ctx.items() if v is not None}

    def camera_id(self) -> str:
        return self.camera.id or f"{self.camera.driver}0"

    def sha256(self) -> str:
        return config_sha256(self)


def config_sha256(cfg: Config) -> str:
    """sha256 of the effective configuration, canonical JSON (sorted keys)."""
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _format_validation_error(e: ValidationError, source: str) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        val = err.get("input")
        shown = "" if isinstance(val, dict) else f" (got {val!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return f"invalid configuration in {source}: " + "; ".join(lines)


def validate_block(model: type[BaseModel], data: Any, key: str) -> Any:
    """Validate an extension block (``audit:``, ``control:``, ``security:``) with its own model;
    raises ConfigError naming ``key.sub.key`` and the problem."""
    try:
        return model(**data)
    except ValidationError as e:
        errs = "; ".join(f"{key}.{'.'.join(str(p) for p in err['loc'])}: "
                         f"{'unknown key' if err['type'] == 'extra_forbidden' else err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid configuration: {errs}") from None
    except TypeError as e:
        raise ConfigError(f"invalid configuration: {key}: {e}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {p}: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must be a mapping of keys, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, *, overrides: dict[str, Any] | None = None,
                check_inspections: bool = True) -> Config:
    """Load, merge with the environment, and validate. Raises ConfigError naming the bad key."""
    source = str(path) if path else f"{DEFAULT_CONFIG} (embedded default)"
    data = read_yaml(path or DEFAULT_CONFIG)
    if overrides:
        data = _deep_merge(data, overrides)
    base = Path(path).resolve().parent if path else Path.cwd()
    try:
        cfg = Config(**data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None
    except (ValueError, TypeError) as e:  # env values that are not valid JSON for nested keys
        raise ConfigError(f"invalid configuration in {source} or INSPECTOR_* environment: {e}") from None
    # relative models_dir: relative to the config file if it exists there, else to the CWD
    md = Path(os.path.expanduser(cfg.models_dir or "."))
    if cfg.models_dir and not md.is_absolute() and path and (base / md).exists():
        cfg.models_dir = str(base / md)
    if cfg.camera.driver == "replay" and cfg.camera.path and path:
        rp = Path(os.path.expanduser(cfg.camera.path))
        if not rp.is_absolute() and not any(c in cfg.camera.path for c in "*?[") and (base / rp).exists():
            cfg.camera.path = str(base / rp)
    if check_inspections:
        validate_inspections(cfg)
    return cfg


def validate_inspections(cfg: Config) -> dict[str, Any]:
    """Validate every inspection's params with its own model. Returns name -> params object."""
    from inspector.inspections import inspection_class

    out = {}
    if not cfg.enabled_inspections():
        raise ConfigError("inspections: no inspection is enabled")
    for i, spec in enumerate(cfg.inspections):
        cls = inspection_class(spec.name)
        try:
            params = cls.Params(**spec.params)
        except ValidationError as e:
            lines = []
            for err in e.errors():
                loc = ".".join(str(p) for p in err["loc"])
                msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                lines.append(f"inspections.{i}.params.{loc}: {msg} (got {err.get('input')!r})")
            raise ConfigError(f"invalid configuration for inspection {spec.name!r}: " + "; ".join(lines)) from None
        if spec.enabled:
            cls.validate_static(params, cfg)
        out[spec.name] = params
    return out


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out
