"""systemd service notifications (``sd_notify(3)``) in a few lines on the socket, no dependency.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for an
abstract socket) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` / ``WATCHDOG_PID``. Outside systemd
(a terminal, a test, a container) every call is a silent no-op, so the daemon calls the notifier
unconditionally.

Protocol: one datagram per notification, ``KEY=VALUE`` lines separated by newlines. The daemon sends
``READY=1`` once the camera is open, the workers are up and the models are loaded; ``STATUS=`` lines
that ``systemctl status`` shows; ``WATCHDOG=1`` from the loop that proves frames flow (at least every
:attr:`Notifier.watchdog_interval_s`, half of ``WatchdogSec=``); ``STOPPING=1`` when it begins to
drain; ``RELOADING=1`` (with ``MONOTONIC_USEC=``) when it reloads models or configuration.

Notifications never raise: a failure to notify must not take the line down. The first failure is
logged at WARNING, later ones at DEBUG.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

_ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _socket_address(value: str) -> str | bytes | None:
    """``NOTIFY_SOCKET`` -> an AF_UNIX address: ``@name`` is the abstract socket ``\\0name``."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    # systemd also knows vsock:CID:PORT (VMs); a line PC never uses it.
    log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket; notifications disabled", value)
    return None


def _watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between watchdog pings (half of ``WatchdogSec=``), or None when not requested of us."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
        return None
    if value <= 0:
        return None
    wd_pid = env.get("WATCHDOG_PID", "")
    if wd_pid:
        try:
            if int(wd_pid) != pid:  # the variable was inherited: the watchdog is someone else's
                return None
        except ValueError:
            log.warning("ignoring malformed WATCHDOG_PID=%r", wd_pid)
            return None
    return value / 2e6


class Notifier:
    """Sends service notifications to systemd; a no-op when ``NOTIFY_SOCKET`` is unset.

    ``environ`` defaults to :data:`os.environ`. With ``unset_environment=True`` the three variables
    are removed from it after reading, so that worker processes started later do not inherit them
    (systemd ignores their messages under ``NotifyAccess=main`` anyway, but they would otherwise
    believe they own the watchdog).
    """

    def __init__(self, environ: MutableMapping[str, str] | None = None, *,
                 unset_environment: bool = False, pid: int | None = None):
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        #: Seconds between watchdog pings (half of ``WatchdogSec=``); None when no watchdog is set.
        self.watchdog_interval_s: float | None = _watchdog_interval(env, os.getpid() if pid is None else pid)
        if unset_environment:
            for k in _ENV_KEYS:
                env.pop(k, None)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._warned = False
        self._last_watchdog: float | None = None

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notification socket."""
        return self._address is not None

    # ---- the notifications ----------------------------------------------------------------
    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: startup finished (camera open, workers up, models loaded)."""
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        """``STATUS=…``: one line shown by ``systemctl status`` (newlines are replaced by spaces)."""
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the pipeline is alive. Call it from the loop that sees frames flow."""
        self._last_watchdog = time.monotonic()
        return self.send("WATCHDOG=1")

    def watchdog_if_due(self, now: float | None = None) -> bool:
        """Ping the watchdog if :attr:`watchdog_interval_s` has passed since the last ping.

        Cheap enough to call for every frame. Returns True when a ping was sent.
        """
        if self.watchdog_interval_s is None or self._address is None:
            return False
        now = time.monotonic() if now is None else now
        if self._last_watchdog is not None and now - self._last_watchdog < self.watchdog_interval_s:
            return False
        sent = self.send("WATCHDOG=1")
        self._last_watchdog = now
        return sent

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown has begun (workers draining)."""
        return self.send("STOPPING=1")

    def reloading(self) -> bool:
        """``RELOADING=1``: reloading models/configuration; send :meth:`ready` again when done."""
        mono_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={mono_usec}")

    def extend_timeout(self, seconds: float) -> bool:
        """``EXTEND_TIMEOUT_USEC=``: ask for more time to start or stop (slow camera, big models)."""
        return self.send(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1e6))}")

    # ---- transport ------------------------------------------------------------------------
    def send(self, *lines: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines. Returns True when it was delivered."""
        if self._address is None:
            return False
        payload = "\n".join(lines).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(payload, self._address)
                return True
            except OSError as e:
                level = logging.DEBUG if self._warned else logging.WARNING
                self._warned = True
                log.log(level, "sd_notify %s failed: %s", lines[0] if lines else "", e)
                self._close_locked()
                return False

    def close(self) -> None:
        """Close the socket (it is re-opened on the next notification)."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __repr__(self) -> str:
        return f"Notifier(enabled={self.enabled}, watchdog_interval_s={self.watchdog_interval_s})"


def _one_line(text: str) -> str:
    return " ".join(str(text).split("\n")).replace("\r", " ").strip()
