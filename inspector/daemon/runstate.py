"""The run state and its one owner, the supervisor.

What the line has set — lot, recipe, expected excipient, pause — the next frame id, and the model
versions each inspection serves live here and nowhere else. Control commands change it in one place
(:meth:`RunState.set_lot`, :meth:`set_expected`, :meth:`set_paused`); every child process receives
a full :meth:`snapshot` when it is (re)spawned and again after every change (the ``state`` command),
and *replaces* its copy with it. So a restarted acquisition process continues with the lot and the
pause the operator set, not the configuration file's, and what the audit records is exactly what
``control status`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inspector.config import Config

CONTEXT_KEYS = ("lot", "recipe", "expected_excipient")


@dataclass(frozen=True, slots=True)
class LotContext:
    lot: str | None = None
    recipe: str | None = None
    expected_excipient: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The context stamped on frames (unset keys omitted)."""
        return {k: getattr(self, k) for k in CONTEXT_KEYS if getattr(self, k) is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LotContext:
        return cls(**{k: (None if d.get(k) is None else str(d[k])) for k in CONTEXT_KEYS})


@dataclass
class RunState:
    run_id: str
    context: LotContext = field(default_factory=LotContext)
    paused: bool = False
    next_frame_id: int = 0
    #: inspection -> {"name", "version", "sha256"} of the model it serves
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: inspection -> configured model version (hot reloads change it; respawned workers load it)
    model_versions: dict[str, str | None] = field(default_factory=dict)
    revision: int = 0
    #: why acquisition is held by the daemon itself (e.g. "audit store refuses writes"), else None
    held_by: str | None = None

    @classmethod
    def from_config(cls, cfg: Config, run_id: str) -> RunState:
        lot = cfg.lot
        return cls(run_id=run_id, context=LotContext(lot.id, lot.recipe, lot.expected_excipient))

    # ------------------------------------------------------------------ changes (supervisor only)
    def set_lot(self, lot: str, recipe: str | None) -> LotContext:
        """A new lot: its recipe is what was given (None when not given), never the previous lot's."""
        self.context = LotContext(lot, recipe, self.context.expected_excipient)
        self.revision += 1
        return self.context

    def set_expected(self, excipient: str | None) -> LotContext:
        self.context = LotContext(self.context.lot, self.context.recipe, excipient)
        self.revision += 1
        return self.context

    def set_paused(self, paused: bool) -> None:
        self.paused = bool(paused)
        self.revision += 1

    def set_hold(self, reason: str | None) -> bool:
        """Hold (or release) acquisition for a reason of the daemon's own; True if it changed."""
        if reason == self.held_by:
            return False
        self.held_by = reason
        self.revision += 1
        return True

    @property
    def acquiring(self) -> bool:
        return not self.paused and self.held_by is None

    def frame_seen(self, frame_id: int) -> None:
        if frame_id >= self.next_frame_id:
            self.next_frame_id = frame_id + 1

    def serve_model(self, inspection: str, info: dict[str, Any]) -> bool:
        """Record the model an inspection serves; False if it already was that one."""
        if self.models.get(inspection) == info:
            return False
        self.models[inspection] = dict(info)
        return True

    # ------------------------------------------------------------------ snapshots for children
    def snapshot(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "revision": self.revision, "paused": not self.acquiring,
                "context": self.context.to_dict(), "next_frame_id": self.next_frame_id,
                "model_versions": dict(self.model_versions)}

    def status(self) -> dict[str, Any]:
        """What ``control status`` shows (and what the audit records for new frames)."""
        return {"context": self.context.to_dict(), "paused": self.paused, "held_by": self.held_by,
                "models": dict(self.models),
                "next_frame_id": self.next_frame_id, "revision": self.revision}


@dataclass
class StateCopy:
    """A child's copy of the run state: replaced whole by each snapshot, never merged."""

    context: dict[str, Any] = field(default_factory=dict)
    paused: bool = False
    revision: int = -1
    next_frame_id: int = 0

    def apply(self, snap: dict[str, Any]) -> bool:
        """Take a snapshot; False if it is older than the one held (PUB/SUB keeps order, but a
        respawned child gets its first snapshot as an argument and then may see an older broadcast)."""
        rev = int(snap.get("revision", 0))
        if rev < self.revision:
            return False
        self.revision = rev
        self.context = LotContext.from_dict(snap.get("context") or {}).to_dict()
        self.paused = bool(snap.get("paused", False))
        self.next_frame_id = int(snap.get("next_frame_id", self.next_frame_id))
        return True
