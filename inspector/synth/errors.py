"""Errors raised by the synthetic-scene generators (one-line messages, shown without a traceback)."""

from __future__ import annotations

from inspector.errors import InspectorError


class SynthError(InspectorError):
    """Bad generator input: unknown class, bad seed, severity or frame size."""
