"""Registry of inline inspections: name -> "module:Class", imported lazily (no TF in the daemon core)."""

from __future__ import annotations

import importlib

from inspector.errors import ConfigError
from inspector.inspections.base import Inspection

REGISTRY: dict[str, str] = {
    "quality": "inspector.inspections.quality:QualityGate",
    "tablet_defect": "inspector.inspections.tablet_defect:TabletDefect",
    "excipient_identity": "inspector.inspections.excipient_identity:ExcipientIdentity",
}


def inspection_class(name: str) -> type[Inspection]:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown inspection {name!r} (known: {', '.join(sorted(REGISTRY))})"
        ) from None
    module, _, cls = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ConfigError(f"inspection {name!r} is not available in this build: {e}") from None
    return getattr(mod, cls)
