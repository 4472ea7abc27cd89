"""The sockets that connect the daemon's processes (ipc in the runtime directory by default)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Endpoints:
    frames: str    # acquisition ROUTER (bind) ← worker DEALERs (connect)
    events: str    # supervisor PULL (bind) ← acquisition + worker PUSH (connect)
    commands: str  # supervisor PUB (bind) → acquisition + worker SUB (connect)

    @classmethod
    def in_dir(cls, runtime_dir: Path, frames: str | None = None) -> Endpoints:
        return cls(
            frames=frames or f"ipc://{runtime_dir / 'frames.sock'}",
            events=f"ipc://{runtime_dir / 'events.sock'}",
            commands=f"ipc://{runtime_dir / 'commands.sock'}",
        )

    def to_dict(self) -> dict[str, str]:
        return asdict(self)
