"""The supervisor's child processes: spawn, watch, restart — never sleeping in the supervisor's loop.

A child that exits is restarted after a back-off that is *scheduled* (the main loop keeps auditing,
publishing and answering health checks meanwhile). Every child is spawned with a snapshot of the run
state and, for the acquisition process, a new generation number.

Children are forked from a *fork server* that imported the daemon's modules once (Linux): a
restarted acquisition process or worker starts in tens of milliseconds instead of re-importing
numpy, pyzmq and harvesters (seconds on a busy line PC), and still shares nothing with the
supervisor's threads or sockets. Where there is no fork server, ``spawn`` is used.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from inspector.daemon.acquisition import run_acquisition
from inspector.daemon.worker import run_worker

log = logging.getLogger("inspector.supervisor")


@dataclass
class Child:
    process: Any
    name: str
    started: float


class Children:
    def __init__(self, workers: int, cfg_data: dict[str, Any], endpoints: dict[str, str],
                 snapshot: Callable[[], dict[str, Any]]):
        self.n_workers = workers
        self.cfg_data, self.endpoints, self.snapshot = cfg_data, endpoints, snapshot
        self.mp = _context()
        self.workers: dict[int, Child] = {}
        self.worker_generation: dict[int, int] = {}
        self.acq: Child | None = None
        self.acq_generation = -1
        self._restart_at: dict[str, float] = {}  # "w<i>" / "acq" -> monotonic time

    # ------------------------------------------------------------------ spawn
    def start_worker(self, index: int) -> str:
        gen = self.worker_generation.get(index, -1) + 1
        self.worker_generation[index] = gen
        name = f"w{index}-{gen}"
        p = self.mp.Process(target=run_worker, name=f"inspector-worker-{index}", daemon=True,
                            args=(self.cfg_data, self.endpoints, name, self.snapshot(), max(0, self.acq_generation),
                                  os.getpid()))
        p.start()
        self.workers[index] = Child(p, name, time.monotonic())
        self._restart_at.pop(f"w{index}", None)
        return name

    def start_acquisition(self) -> int:
        self.acq_generation += 1
        p = self.mp.Process(target=run_acquisition, name="inspector-acquisition", daemon=True,
                            args=(self.cfg_data, self.endpoints, self.snapshot(), self.acq_generation, os.getpid()))
        p.start()
        self.acq = Child(p, f"acq-{self.acq_generation}", time.monotonic())
        self._restart_at.pop("acq", None)
        return self.acq_generation

    # ------------------------------------------------------------------ watch
    def exited_workers(self) -> list[tuple[int, Child]]:
        return [(i, c) for i, c in self.workers.items()
                if c.process.exitcode is not None and f"w{i}" not in self._restart_at]

    def acquisition_exited(self) -> bool:
        return (self.acq is not None and self.acq.process.exitcode is not None
                and "acq" not in self._restart_at)

    def schedule(self, key: str, delay_s: float) -> None:
        self._restart_at[key] = time.monotonic() + delay_s

    def due(self) -> list[str]:
        now = time.monotonic()
        return [k for k, t in list(self._restart_at.items()) if t <= now]

    def pending_restart(self, key: str) -> bool:
        return key in self._restart_at

    def acquisition_running(self) -> bool:
        return self.acq is not None and self.acq.process.exitcode is None and "acq" not in self._restart_at

    def alive_workers(self) -> dict[str, int]:
        return {c.name: c.process.pid for c in self.workers.values() if c.process.exitcode is None}

    # ------------------------------------------------------------------ stop
    def all_processes(self) -> list[Any]:
        procs = [c.process for c in self.workers.values()]
        if self.acq is not None:
            procs.append(self.acq.process)
        return procs

    def kill_all(self) -> None:
        for p in self.all_processes():
            if p.is_alive():
                p.kill()
                p.join(2)


#: what the fork server imports once, before it forks any child
PRELOAD = ["numpy", "zmq", "cv2", "inspector.daemon.acquisition", "inspector.daemon.worker",
           "inspector.acquisition.genicam", "inspector.acquisition.synthetic", "inspector.acquisition.replay"]


def _context() -> Any:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")
