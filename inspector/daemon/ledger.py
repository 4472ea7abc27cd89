"""Frame accounting: every acquired frame ends exactly once as inspected, dropped or lost.

The supervisor feeds it the acquisition events and worker results, in whatever order the sockets
deliver them (a result can overtake its ``acquired`` event: they travel on different pipes), and
asks it which frames a dead worker held. ``acquired == inspected + dropped + lost`` holds once the
pipeline is drained.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("inspected", "dropped", "lost")


@dataclass
class FrameState:
    frame_id: int
    meta: dict[str, Any] | None = None
    worker: str | None = None


@dataclass
class Ledger:
    finished_memory: int = 100_000
    inflight: dict[int, FrameState] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"acquired": 0, **{o: 0 for o in OUTCOMES}})
    dead_workers: set[str] = field(default_factory=set)
    _finished: OrderedDict[int, str] = field(default_factory=OrderedDict)

    # ------------------------------------------------------------------ inputs
    def acquired(self, frame_id: int, meta: dict[str, Any]) -> None:
        self.counts["acquired"] += 1
        if frame_id in self._finished:  # its result overtook this event
            return
        st = self.inflight.setdefault(frame_id, FrameState(frame_id))
        st.meta = meta

    def dispatched(self, frame_id: int, worker: str) -> bool:
        """Record the assignment; False (frame must be declared lost) if that worker is already dead."""
        if frame_id in self._finished:
            return True
        st = self.inflight.setdefault(frame_id, FrameState(frame_id))
        st.worker = worker
        return worker not in self.dead_workers

    def finish(self, frame_id: int, outcome: str, meta: dict[str, Any] | None = None) -> FrameState | None:
        """Close a frame. Returns its state, or None if it was already closed (duplicate: ignore it)."""
        assert outcome in OUTCOMES
        if frame_id in self._finished:
            return None
        st = self.inflight.pop(frame_id, None) or FrameState(frame_id)
        if meta is not None:
            st.meta = meta
        self.counts[outcome] += 1
        self._finished[frame_id] = outcome
        if len(self._finished) > self.finished_memory:
            self._finished.popitem(last=False)
        return st

    def worker_died(self, worker: str) -> list[FrameState]:
        """Frames the dead worker held (to be declared lost)."""
        self.dead_workers.add(worker)
        return [st for st in self.inflight.values() if st.worker == worker]

    # ------------------------------------------------------------------ queries
    def outstanding(self) -> list[FrameState]:
        return list(self.inflight.values())

    def balanced(self) -> bool:
        c = self.counts
        return c["acquired"] == c["inspected"] + c["dropped"] + c["lost"]

    def outcome_of(self, frame_id: int) -> str | None:
        return self._finished.get(frame_id)
