"""Frame accounting: every acquired frame ends exactly once as inspected, dropped or lost.

The supervisor feeds it the acquisition events and worker results, in whatever order the sockets
deliver them (a result can overtake its ``acquired`` event: they travel on different pipes), and
asks it which frames a dead worker held, or which frames were in transit from a dead acquisition
process. ``acquired == inspected + dropped + lost`` holds once the pipeline is drained.

Memory is bounded: only the last ``finished_memory`` ended frames are remembered (to recognise a
late duplicate or an overtaken ``acquired`` event), so a daemon that runs for months stays flat.
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
    generation: int | None = None  # of the acquisition process that dispatched it
    acquired: bool = False         # its ``acquired`` event arrived


@dataclass
class Ledger:
    finished_memory: int = 8192
    inflight: dict[int, FrameState] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"acquired": 0, **{o: 0 for o in OUTCOMES}})
    dead_workers: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _finished: OrderedDict[int, str] = field(default_factory=OrderedDict)
    _unacquired: set[int] = field(default_factory=set)  # ended before their ``acquired`` event arrived

    # ------------------------------------------------------------------ inputs
    def acquired(self, frame_id: int, meta: dict[str, Any]) -> None:
        self.counts["acquired"] += 1
        if frame_id in self._finished:  # its result overtook this event
            self._unacquired.discard(frame_id)
            return
        st = self.inflight.setdefault(frame_id, FrameState(frame_id))
        st.meta, st.acquired = meta, True

    def dispatched(self, frame_id: int, worker: str, generation: int | None = None) -> bool:
        """Record the assignment; False (frame must be declared lost) if that worker is already dead."""
        if frame_id in self._finished:
            return True
        st = self.inflight.setdefault(frame_id, FrameState(frame_id))
        st.worker, st.generation = worker, generation
        return worker not in self.dead_workers

    def finish(self, frame_id: int, outcome: str, meta: dict[str, Any] | None = None) -> FrameState | None:
        """Close a frame. Returns its state, or None if it was already closed (duplicate: ignore it)."""
        assert outcome in OUTCOMES
        if frame_id in self._finished:
            return None
        st = self.inflight.pop(frame_id, None) or FrameState(frame_id)
        if meta is not None:
            st.meta = meta
        if not st.acquired:
            self._unacquired.add(frame_id)
        self.counts[outcome] += 1
        self._finished[frame_id] = outcome
        if len(self._finished) > self.finished_memory:
            old, _ = self._finished.popitem(last=False)
            self._unacquired.discard(old)
        return st

    def worker_died(self, worker: str) -> list[FrameState]:
        """Frames the dead worker held (to be declared lost)."""
        self.dead_workers[worker] = None
        while len(self.dead_workers) > 1024:
            self.dead_workers.popitem(last=False)
        return [st for st in self.inflight.values() if st.worker == worker]

    def acquisition_gone(self) -> list[int]:
        """The acquisition process died and its events are drained: frames that ended (a worker
        inspected them) but whose ``acquired`` event died with the process are counted acquired now."""
        ids = sorted(self._unacquired)
        self.counts["acquired"] += len(ids)
        self._unacquired.clear()
        return ids

    def in_transit(self, worker: str, generation: int) -> list[FrameState]:
        """Frames sent to ``worker`` by an acquisition process older than ``generation`` that it never
        received (the worker reported idle for ``generation``: its results are all in)."""
        return [st for st in self.inflight.values()
                if st.worker == worker and st.generation is not None and st.generation < generation]

    # ------------------------------------------------------------------ queries
    def outstanding(self) -> list[FrameState]:
        return list(self.inflight.values())

    def balanced(self) -> bool:
        c = self.counts
        return c["acquired"] == c["inspected"] + c["dropped"] + c["lost"]

    def outcome_of(self, frame_id: int) -> str | None:
        return self._finished.get(frame_id)
