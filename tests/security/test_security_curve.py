"""ZeroMQ CURVE with a ZAP allow-list: an unknown client key gets nothing; the endpoint policy; key files."""

from __future__ import annotations

import logging
import shutil
import stat
import threading
from pathlib import Path

import pytest
import zmq
import zmq.auth

from cli_helpers import run_plugin_cli
from inspector.audit.store import AuditStore
from inspector.config import load_config
from inspector.control import cli as control_cli
from inspector.control.client import ControlError, send_command
from inspector.control.protocol import ControlRequest
from inspector.control.server import ControlServer
from inspector.errors import ConfigError
from inspector.transport.security import (
    SecurityConfig,
    is_loopback_endpoint,
    require_secure_for_tcp,
    secure_client,
    secure_server,
    security_config,
    stop_authenticator,
)

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    out: dict[str, Path] = {}
    for name in ("server", "alice", "mallory"):
        pub, sec = zmq.auth.create_certificates(str(d), name)
        out[name], out[name + "_secret"] = Path(pub), Path(sec)
    allowed = d / "allowed"
    allowed.mkdir()
    shutil.copy(out["alice"], allowed)
    out["allowed"] = allowed
    return out


def server_cfg(keys: dict[str, Path]) -> SecurityConfig:
    return SecurityConfig(curve_server_secret_key_file=str(keys["server_secret"]),
                          curve_allowed_clients_dir=str(keys["allowed"]))


def client_cfg(keys: dict[str, Path], who: str) -> SecurityConfig:
    return SecurityConfig(curve_server_public_key_file=str(keys["server"]),
                          curve_client_secret_key_file=str(keys[f"{who}_secret"]))


class CurveServer:
    """A CURVE ControlServer polled in a thread; records what reached the handler."""

    def __init__(self, keys: dict[str, Path], audit: AuditStore | None = None):
        self.calls: list[ControlRequest] = []
        self.ctx = zmq.Context()
        self.server = ControlServer(self.ctx, "tcp://127.0.0.1:0", self._handle, server_cfg(keys), audit=audit)
        self.endpoint = self.server.endpoint
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _handle(self, r: ControlRequest) -> dict:
        self.calls.append(r)
        return {"cmd": r.cmd}

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.server.socket.poll(20):
                self.server.handle_one()

    def close(self) -> None:
        self._stop.set()
        self._t.join(5)
        self.server.close()
        stop_authenticator(self.ctx)
        self.ctx.term()


@pytest.fixture()
def curve_server(keys: dict[str, Path], tmp_path: Path):
    store = AuditStore(tmp_path / "audit.sqlite3")
    srv = CurveServer(keys, audit=store)
    srv.store = store  # type: ignore[attr-defined]
    yield srv
    srv.close()
    store.close()


def test_allowed_client_is_served_and_its_key_is_audited(curve_server, keys) -> None:
    r = send_command(curve_server.endpoint, "pause", user="alice", security=client_cfg(keys, "alice"), timeout_s=5)
    assert r["ok"] and r["result"] == {"cmd": "pause"}
    (rec,) = curve_server.store.records(kind="control")
    alice_public = zmq.auth.load_certificate(str(keys["alice"]))[0].decode()
    assert rec.payload["peer_key"] == alice_public and rec.payload["user"] == "alice"


def test_client_with_an_unknown_key_gets_nothing(curve_server, keys) -> None:
    with pytest.raises(ControlError, match="no reply"):
        send_command(curve_server.endpoint, "pause", user="mallory", security=client_cfg(keys, "mallory"),
                     timeout_s=0.5)
    assert curve_server.calls == []
    assert curve_server.store.count() == 0


def test_plain_text_client_gets_nothing(curve_server) -> None:
    with pytest.raises(ControlError, match="no reply"):
        send_command(curve_server.endpoint, "status", user="anon", timeout_s=0.5)
    assert curve_server.calls == []


def test_client_pinned_to_the_wrong_server_key_gets_nothing(curve_server, keys) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.linger, s.rcvtimeo = 0, 500
    secure_client(s, client_cfg(keys, "alice"), server_public_key=zmq.auth.load_certificate(str(keys["mallory"]))[0])
    s.connect(curve_server.endpoint)
    s.send(b'{"v":1,"cmd":"status","args":{},"user":"x"}')
    try:
        with pytest.raises(zmq.Again):
            s.recv()
    finally:
        s.close()
        ctx.term()
    assert curve_server.calls == []


def test_curve_server_may_listen_on_all_interfaces(keys) -> None:
    require_secure_for_tcp("tcp://0.0.0.0:5561", server_cfg(keys))  # no error: keys configured
    with pytest.raises(ConfigError, match="CURVE is not configured"):
        require_secure_for_tcp("tcp://0.0.0.0:5561", None)


@pytest.mark.parametrize("endpoint, loopback", [
    ("ipc:///run/inspector/control", True), ("inproc://x", True), ("tcp://127.0.0.1:5561", True),
    ("tcp://127.9.9.9:1", True), ("tcp://localhost:5561", True), ("tcp://[::1]:5561", True),
    ("tcp://lo:5561", True), ("tcp://10.0.0.1;127.0.0.1:5561", True),
    ("tcp://*:5561", False), ("tcp://0.0.0.0:5561", False), ("tcp://192.168.1.20:5561", False),
    ("tcp://[::]:5561", False), ("tcp://eth0:5561", False), ("tcp://line-pc.example:5561", False),
    ("tcp://127.0.0.1", False), ("udp://127.0.0.1:1", False), ("pgm://x", False),
])
def test_loopback_policy(endpoint: str, loopback: bool) -> None:
    assert is_loopback_endpoint(endpoint) is loopback
    if loopback:
        require_secure_for_tcp(endpoint, None)
    else:
        with pytest.raises(ConfigError, match=endpoint.replace("*", r"\*").replace("[", r"\[").replace("]", r"\]")):
            require_secure_for_tcp(endpoint, SecurityConfig())


def test_half_configured_or_unreadable_keys_are_config_errors(keys, tmp_path: Path, caplog) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    try:
        with pytest.raises(ConfigError, match="curve_allowed_clients_dir is required"):
            secure_server(sock, SecurityConfig(curve_server_secret_key_file=str(keys["server_secret"])), ctx)
        with pytest.raises(ConfigError, match="holds no secret key"):
            secure_server(sock, SecurityConfig(curve_server_secret_key_file=str(keys["server"]),
                                               curve_allowed_clients_dir=str(keys["allowed"])), ctx)
        with pytest.raises(ConfigError, match="no such key file"):
            secure_server(sock, SecurityConfig(curve_server_secret_key_file=str(tmp_path / "nope"),
                                               curve_allowed_clients_dir=str(keys["allowed"])), ctx)
        with pytest.raises(ConfigError, match="no such directory"):
            secure_server(sock, SecurityConfig(curve_server_secret_key_file=str(keys["server_secret"]),
                                               curve_allowed_clients_dir=str(tmp_path / "nodir")), ctx)
        garbage = tmp_path / "garbage.key_secret"
        garbage.write_text("not a certificate\n")
        with pytest.raises(ConfigError, match="holds no secret key|not a ZeroMQ certificate"):
            secure_server(sock, SecurityConfig(curve_server_secret_key_file=str(garbage),
                                               curve_allowed_clients_dir=str(keys["allowed"])), ctx)
        with pytest.raises(ConfigError, match="curve_client_secret_key_file is required"):
            secure_client(sock, SecurityConfig(curve_server_public_key_file=str(keys["server"])))
        empty = tmp_path / "empty-allow"
        empty.mkdir()
        with caplog.at_level(logging.WARNING, logger="inspector.transport.security"):
            secure_server(sock, SecurityConfig(curve_server_secret_key_file=str(keys["server_secret"]),
                                               curve_allowed_clients_dir=str(empty)), ctx)
        assert "every client will be refused" in caplog.text
        secure_server(sock, None, ctx)  # no keys: a no-op
        secure_client(sock, None)
    finally:
        sock.close(linger=0)
        stop_authenticator(ctx)
        stop_authenticator(ctx)  # idempotent
        ctx.term()


def test_security_block_is_validated_from_the_config(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("security: {curve_server_secret_key_file: /k/server.key_secret, curve_allowed_clients_dir: /k/ok}\n")
    sc = security_config(load_config(p, check_inspections=False))
    assert sc.enabled and sc.curve_allowed_clients_dir == "/k/ok"
    p.write_text("security: {curve_secret: x}\n")
    with pytest.raises(ConfigError, match="security.curve_secret: unknown key"):
        security_config(load_config(p, check_inspections=False))
    assert not SecurityConfig().enabled


def _keys_cli(argv: list[str]) -> int:
    return run_plugin_cli(control_cli.register, argv)


def test_keys_generate_writes_a_usable_pair_and_never_overwrites(tmp_path: Path, capsys) -> None:
    d = tmp_path / "keys"
    assert _keys_cli(["keys", "generate", str(d), "--name", "line1"]) == 0
    pub, sec = d / "line1.key", d / "line1.key_secret"
    assert stat.S_IMODE(sec.stat().st_mode) == 0o600
    public, secret = zmq.auth.load_certificate(str(sec))
    assert secret and zmq.auth.load_certificate(str(pub)) == (public, None)
    before = sec.read_bytes()
    assert _keys_cli(["keys", "generate", str(d), "--name", "line1"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().out and sec.read_bytes() == before
    assert _keys_cli(["keys", "generate", str(d), "--name", "../evil"]) == 2
