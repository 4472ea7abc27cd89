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
import select
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
    """Ask the kernel to signal us when our parent process dies; True if armed. Exits at once if the
    supervisor is already gone (it may have died before the request was armed).

    Our parent is the supervisor (spawn) or its fork server, which exits when the supervisor does;
    either way the signal comes when the supervisor is gone."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
        except OSError as e:  # pragma: no cover - no libc
            log.debug("prctl unavailable: %s", e)
    if not _alive(parent_pid) or os.getppid() == 1:
        log.error("supervisor already gone; exiting")
        raise SystemExit(1)
    return armed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, owned by someone else
        return True
    return True


class ParentWatch:
    """Has the supervisor gone? A pidfd on it where Linux has them (readable once it exits), else
    whether we were re-parented. The main loops ask every iteration: the fallback for a child that
    PR_SET_PDEATHSIG could not reach."""

    def __init__(self, supervisor_pid: int | None = None) -> None:
        self.ppid = os.getppid()
        self.pidfd: int | None = None
        if supervisor_pid is not None and hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(supervisor_pid)
            except OSError:  # already gone, or no pidfd support in this kernel
                self.pidfd = None
                if not _alive(supervisor_pid):
                    raise SystemExit(1) from None

    def gone(self) -> bool:
        if self.pidfd is not None:
            return bool(select.select([self.pidfd], [], [], 0)[0])
        return os.getppid() != self.ppid


def _release_fork_server() -> None:
    """A child forked by multiprocessing's fork server holds the server's "alive" pipe, which keeps
    the server running after the supervisor dies — and with it, through PR_SET_PDEATHSIG's parent,
    this child. Drop it: then the server exits with the supervisor and the kernel signals us."""
    try:
        from multiprocessing import forkserver
    except ImportError:  # pragma: no cover
        return
    fs = getattr(forkserver, "_forkserver", None)
    fd = getattr(fs, "_forkserver_alive_fd", None)
    if isinstance(fd, int) and os.getppid() != 1:
        try:
            os.close(fd)
        except OSError:
            pass
        fs._forkserver_alive_fd = None


def child_setup(title: str, parent_pid: int) -> None:
    set_title(title)
    _release_fork_server()
    die_with_parent(parent_pid)
