"""sd_notify against a fake NOTIFY_SOCKET that records what systemd would receive."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from inspector.ops.sdnotify import Notifier


class FakeSystemd:
    """A bound AF_UNIX datagram socket standing in for systemd's notification socket."""

    def __init__(self, address: str | bytes):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(2.0)

    def recv(self) -> dict[str, str]:
        data = self.sock.recv(65536).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def pending(self) -> int:
        self.sock.setblocking(False)
        n = 0
        try:
            while True:
                self.sock.recv(65536)
                n += 1
        except BlockingIOError:
            return n
        finally:
            self.sock.settimeout(2.0)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake_path(tmp_path: Path):
    path = str(tmp_path / "notify.sock")
    fake = FakeSystemd(path)
    yield path, fake
    fake.close()


def test_messages_reach_a_filesystem_socket(fake_path):
    path, fake = fake_path
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready(status="camera open, 2 workers, models loaded")
    assert fake.recv() == {"READY": "1", "STATUS": "camera open, 2 workers, models loaded"}
    assert n.status("running: 9.8 frames/s\nsecond line")
    assert fake.recv() == {"STATUS": "running: 9.8 frames/s second line"}  # one line, protocol intact
    assert n.watchdog()
    assert fake.recv() == {"WATCHDOG": "1"}
    assert n.stopping()
    assert fake.recv() == {"STOPPING": "1"}
    assert n.extend_timeout(12.5)
    assert fake.recv() == {"EXTEND_TIMEOUT_USEC": "12500000"}


def test_reloading_carries_the_monotonic_timestamp(fake_path):
    path, fake = fake_path
    n = Notifier({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    msg = fake.recv()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert msg["RELOADING"] == "1"
    assert before <= int(msg["MONOTONIC_USEC"]) <= after


def test_abstract_socket():
    name = f"inspector-test-{uuid.uuid4().hex}"
    fake = FakeSystemd(b"\0" + name.encode())
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert fake.recv() == {"READY": "1"}
    finally:
        fake.close()


def test_no_socket_is_a_silent_noop():
    n = Notifier({})
    assert not n.enabled
    assert n.watchdog_interval_s is None
    assert n.ready() is False and n.status("x") is False and n.watchdog() is False
    assert n.stopping() is False and n.reloading() is False
    assert n.watchdog_if_due() is False


def test_unsupported_socket_address_disables_notifications():
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_vanished_socket_does_not_raise(tmp_path: Path, caplog):
    path = str(tmp_path / "gone.sock")
    fake = FakeSystemd(path)
    n = Notifier({"NOTIFY_SOCKET": path})
    fake.close()
    os.unlink(path)
    assert n.watchdog() is False
    assert n.watchdog() is False
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1  # logged once, not per frame
    # systemd comes back (socket re-created): the notifier recovers
    fake = FakeSystemd(path)
    try:
        assert n.ready()
        assert fake.recv() == {"READY": "1"}
    finally:
        fake.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),  # inherited from a parent
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "banana"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env, expected):
    n = Notifier({"NOTIFY_SOCKET": "/run/x", **env}, pid=4242)
    assert n.watchdog_interval_s == expected


def test_watchdog_pid_defaults_to_this_process():
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(env).watchdog_interval_s == 1.0


def test_watchdog_if_due_pings_at_the_interval(fake_path):
    path, fake = fake_path
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}, pid=1)  # 10 s -> ping every 5 s
    assert n.watchdog_interval_s == 5.0
    sent = [n.watchdog_if_due(now=t) for t in (100.0, 101.0, 104.9, 105.0, 105.1, 110.0)]
    assert sent == [True, False, False, True, False, True]
    assert fake.pending() == 3


def test_unset_environment_keeps_children_out(fake_path):
    path, fake = fake_path
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "7", "OTHER": "kept"}
    n = Notifier(env, unset_environment=True, pid=7)
    assert env == {"OTHER": "kept"}
    assert n.watchdog_interval_s == 0.5
    assert n.ready()  # still notifies itself
    assert fake.recv() == {"READY": "1"}


def test_reads_os_environ_by_default(fake_path, monkeypatch):
    path, fake = fake_path
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    n = Notifier()
    assert n.enabled and n.watchdog_interval_s is None
    n.status("hello")
    assert fake.recv() == {"STATUS": "hello"}
