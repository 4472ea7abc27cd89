"""The sockets that connect the daemon's processes (ipc in the runtime directory by default)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Endpoints:
    frames: str    # acquisition ROUTER (bind) ← worker DEALERs (connect)
    events: str    # supervisor PULL (bind) ← acquisition + worker PUSH (connect)
    commands: str  # supervisor PUB (bind) → acquisition + worker SUB (connect)
    #: the same three for remote workers (tcp, CURVE), when transport.remote_listen is set
    remote: tuple[str, str, str] | None = None

    @staticmethod
    def remote_triplet(base: str) -> tuple[str, str, str]:
        """tcp://HOST:PORT -> (frames PORT, events PORT+1, commands PORT+2)."""
        host, _, port = base.rpartition(":")
        p = int(port)
        return f"{host}:{p}", f"{host}:{p + 1}", f"{host}:{p + 2}"

    @classmethod
    def for_remote_worker(cls, connect: str) -> Endpoints:
        frames, events, commands = cls.remote_triplet(connect)
        return cls(frames=frames, events=events, commands=commands)

    @classmethod
    def in_dir(cls, runtime_dir: Path, frames: str | None = None, remote_listen: str | None = None) -> Endpoints:
        return cls(
            frames=frames or f"ipc://{runtime_dir / 'frames.sock'}",
            events=f"ipc://{runtime_dir / 'events.sock'}",
            commands=f"ipc://{runtime_dir / 'commands.sock'}",
            remote=cls.remote_triplet(remote_listen) if remote_listen else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
