"""What every child process of the daemon does first: a title ``ps`` can read, and a death signal.

* ``setproctitle``: ``ps``/``top``/``systemctl status`` show ``inspector: supervisor``,
  ``inspector: acquisition genicam0``, ``inspector: worker 1`` instead of five identical
  ``python … spawn_main`` lines.
* ``PR_SET_PDEATHSIG`` (Linux): the kernel sends SIGTERM to the child the moment the supervisor dies,
  even by SIGKILL, so no orphan keeps the camera or a socket. Elsewhere the children still poll
  ``getppid()`` (the fallback the main loops keep).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys

log = logging.getLogger("inspector.proc")

_PR_SET_PDEATHSIG = 1


def set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:  # optional on exotic platforms: only cosmetics are lost
        return
    setproctitle.setproctitle(f"inspector: {title}")


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to signal us when the parent dies; True if armed. Exits at once if the parent
    is already gone (it may have died before the request was armed)."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
        except OSError as e:  # pragma: no cover - no libc
            log.debug("prctl unavailable: %s", e)
    if os.getppid() != parent_pid:
        log.error("supervisor already gone; exiting")
        raise SystemExit(1)
    return armed


def child_setup(title: str, parent_pid: int) -> None:
    set_title(title)
    die_with_parent(parent_pid)
