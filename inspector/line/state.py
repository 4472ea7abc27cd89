"""The ONE place line integration reads the supervisor's run state (lot, recipe, expected excipient,
paused, readiness, counts, models). The OPC UA server, the operator page and the reject channel all
go through :func:`snapshot`, so a change to where the supervisor keeps its run state is one edit here."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inspector.daemon.supervisor import Supervisor


def snapshot(sup: Supervisor) -> dict[str, Any]:
    """Plain data (safe to hand to another thread): the run state as of now."""
    ready, reasons = sup.readiness()
    st = sup.state.status()  # the run state's one owner
    ctx = dict(st["context"])
    return {
        "time": time.time(),
        "run_id": sup.run_id,
        "ready": bool(ready),
        "reasons": list(reasons),
        "paused": bool(st["paused"] or st["held_by"]),
        "held_by": st["held_by"],
        "stopping": bool(getattr(sup, "stopping", False)),
        "lot": ctx.get("lot"),
        "recipe": ctx.get("recipe"),
        "expected_excipient": ctx.get("expected_excipient"),
        "context": ctx,
        "counts": dict(sup.ledger.counts),
        "models": {k: dict(v) for k, v in st["models"].items()},
    }


def machine_state(snap: dict[str, Any]) -> str:
    """OPC 40100-1 system state from a snapshot: Preoperational (starting, not ready yet), Operational
    (ready, inspecting), Halted (paused by an operator, or shutting down), Error (frames were already
    inspected in this run and readiness was lost: camera gone, workers down)."""
    if snap["stopping"] or snap["paused"]:
        return "Halted"
    if snap["ready"]:
        return "Operational"
    if snap["counts"].get("inspected", 0) > 0:
        return "Error"
    return "Preoperational"
