"""The Inspection interface every inline inspection implements (runs inside a worker process)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from inspector.frame import Frame

Verdict = Literal["pass", "reject", "error"]
VERDICTS: tuple[str, ...] = ("pass", "reject", "error")


class InspectionParams(BaseModel):
    """Base of each inspection's `params:` block; unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(slots=True)
class ModelInfo:
    name: str
    version: str
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(slots=True)
class Attachment:
    """An extra message published beside the result, e.g. a Grad-CAM snapshot on gradcam.<name>."""

    kind: str  # topic kind: "gradcam"
    header: dict[str, Any]
    payload: bytes = b""


@dataclass(slots=True)
class InspectionResult:
    verdict: Verdict
    scores: dict[str, float] = field(default_factory=dict)
    #: seconds spent per stage, keys among preprocess / infer / gradcam
    stages: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    #: why a reject or an error: machine-readable code(s) (``out_of_focus``, ``unknown_material``,
    #: ``no_tablet``…), several as a list; audited and published as one string joined by ``+``
    reason: str | list[str] | None = None

    def reason_code(self) -> str | None:
        r = self.reason
        if isinstance(r, (list, tuple)):
            return "+".join(str(x) for x in r) or None
        if r:
            return str(r)
        legacy = self.detail.get("reason")  # an inspection that wrote its code into detail
        if isinstance(legacy, str) and legacy:
            return legacy
        if self.verdict != "pass":  # every reject and error says why
            return "unspecified"
        return None


@dataclass(slots=True)
class InspectionContext:
    """What the daemon hands an inspection when it builds it."""

    state_dir: Path
    models_dir: Path
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("inspector.inspection"))
    worker: str = ""
    #: where Grad-CAM snapshots go (paths in results/audit are relative to it); None: <state_dir>/gradcam
    gradcam_dir: Path | None = None


class Inspection(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[InspectionParams]] = InspectionParams

    def __init__(self, params: InspectionParams, ctx: InspectionContext):
        self.params = params
        self.ctx = ctx

    @classmethod
    def validate_static(cls, params: InspectionParams, config: Any) -> None:
        """Checks at config time that need the whole config or the model repository (raise ConfigError)."""

    @abstractmethod
    def inspect(self, frame: Frame) -> InspectionResult: ...

    def model_info(self) -> ModelInfo | None:
        return None

    def reload(self, version: str | None = None) -> ModelInfo | None:
        """Load another model version; verify it fully before releasing the current one."""
        return self.model_info()

    def close(self) -> None:
        pass
