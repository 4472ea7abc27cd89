"""ZeroMQ CURVE security: server/client socket setup, the ZAP allow-list, and the endpoint policy.

* CURVE is enabled when the server key files are configured (``security:`` block, see
  docs/security.md); clients must then present a key listed in ``curve_allowed_clients_dir``
  (one ``*.key`` public certificate per client, as written by ``inspector keys generate``).
  A client with an unknown key completes no handshake: it gets nothing, and sends nothing.
* Without keys, only loopback TCP and ipc/inproc endpoints are allowed
  (:func:`require_secure_for_tcp`): plain text never leaves the machine.
* The ZAP handler is pyzmq's :class:`zmq.auth.thread.ThreadAuthenticator`, one per context,
  started on first use and stopped by :func:`stop_authenticator`.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from inspector.errors import ConfigError

if TYPE_CHECKING:
    import zmq
    from zmq.auth.thread import ThreadAuthenticator

    from inspector.config import Config

log = logging.getLogger(__name__)

_LOOPBACK_NAMES = {"localhost", "lo", "ip6-localhost"}


class SecurityConfig(BaseModel):
    """The ``security:`` configuration block (all paths to files written by ``inspector keys generate``)."""

    model_config = ConfigDict(extra="forbid")

    curve_server_secret_key_file: str | None = None
    curve_server_public_key_file: str | None = None
    curve_allowed_clients_dir: str | None = None
    curve_client_secret_key_file: str | None = None

    @property
    def enabled(self) -> bool:
        """CURVE is on for servers when the server's key is configured."""
        return bool(self.curve_server_secret_key_file or self.curve_server_public_key_file)


def security_config(cfg: Config) -> SecurityConfig:
    """Validate ``cfg.security``; raises ConfigError naming the bad key."""
    from inspector.config import validate_block

    return validate_block(SecurityConfig, cfg.security, "security")


# ---- keys ----------------------------------------------------------------------------------------
def _load_cert(path: str | None, what: str, *, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    if not path:
        raise ConfigError(f"security.{what} is not set")
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"security.{what}: no such key file {p}")
    try:
        public, secret_key = zmq.auth.load_certificate(str(p))
    except (ValueError, OSError) as e:
        raise ConfigError(f"security.{what}: {p} is not a ZeroMQ certificate ({e})") from None
    if secret and not secret_key:
        raise ConfigError(f"security.{what}: {p} holds no secret key (use the .key_secret file)")
    return public, secret_key


def load_public_key(path: str | Path) -> bytes:
    """The Z85 public key from a ``.key`` or ``.key_secret`` certificate file."""
    return _load_cert(str(path), "curve_server_public_key_file", secret=False)[0]


# ---- authenticator -------------------------------------------------------------------------------
_auth_lock = threading.Lock()
_authenticators: dict[int, tuple[Any, ThreadAuthenticator]] = {}


def _authenticator(ctx: zmq.Context, allowed_dir: str) -> ThreadAuthenticator:
    """One started ThreadAuthenticator per context (configured with the allow-list directory)."""
    from zmq.auth.thread import ThreadAuthenticator

    d = Path(allowed_dir).expanduser()
    if not d.is_dir():
        raise ConfigError(f"security.curve_allowed_clients_dir: no such directory {d}")
    if not any(d.glob("*.key")):
        log.warning("CURVE allow-list %s holds no *.key client certificate: every client will be refused", d)
    with _auth_lock:
        entry = _authenticators.get(id(ctx))
        if entry is not None and entry[0] is ctx:
            auth = entry[1]
        else:
            auth = ThreadAuthenticator(ctx, log=logging.getLogger("inspector.zap"))
            auth.start()
            _authenticators[id(ctx)] = (ctx, auth)
        # (re)load the allow-list: clients added to the directory are picked up here
        auth.configure_curve(domain="*", location=str(d))
        return auth


def stop_authenticator(ctx: zmq.Context) -> None:
    """Stop the context's ZAP handler (call before ``ctx.term()``); a no-op when none runs."""
    with _auth_lock:
        entry = _authenticators.pop(id(ctx), None)
    if entry is not None and entry[0] is ctx:
        entry[1].stop()


# ---- sockets -------------------------------------------------------------------------------------
def secure_server(sock: zmq.Socket, cfg: SecurityConfig | None, ctx: zmq.Context) -> None:
    """Make ``sock`` a CURVE server with the ZAP allow-list when ``cfg`` is enabled (before bind).

    Raises ConfigError when keys are half-configured or unreadable. A no-op without keys."""
    if cfg is None or not cfg.enabled:
        return
    import zmq

    if not zmq.has("curve"):
        raise ConfigError("security: this libzmq was built without CURVE support")
    if not cfg.curve_allowed_clients_dir:
        raise ConfigError("security.curve_allowed_clients_dir is required with CURVE keys "
                          "(without an allow-list any client key would be accepted)")
    public, secret = _load_cert(cfg.curve_server_secret_key_file, "curve_server_secret_key_file", secret=True)
    _authenticator(ctx, cfg.curve_allowed_clients_dir)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def secure_client(sock: zmq.Socket, cfg: SecurityConfig | None, server_public_key: bytes | None = None) -> None:
    """Make ``sock`` a CURVE client (before connect) when a server key is known.

    ``server_public_key`` defaults to ``cfg.curve_server_public_key_file``. Needs
    ``cfg.curve_client_secret_key_file``. A no-op when neither a server key nor config is given."""
    if server_public_key is None:
        if cfg is None or not cfg.curve_server_public_key_file:
            return
        server_public_key = load_public_key(cfg.curve_server_public_key_file)
    if cfg is None or not cfg.curve_client_secret_key_file:
        raise ConfigError("security.curve_client_secret_key_file is required to talk to a CURVE server")
    public, secret = _load_cert(cfg.curve_client_secret_key_file, "curve_client_secret_key_file", secret=True)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public_key


# ---- policy --------------------------------------------------------------------------------------
def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on a loopback address (127.0.0.0/8, ::1, localhost)."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    rest = endpoint[len("tcp://"):]
    if ";" in rest:  # tcp://source;dest: the destination decides
        rest = rest.split(";", 1)[1]
    host, sep, _port = rest.rpartition(":")
    if not sep:
        return False
    host = host.strip("[]")
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', an interface name, a host name: assume reachable from the network


def require_secure_for_tcp(endpoint: str, cfg: SecurityConfig | None) -> None:
    """Policy: a tcp endpoint that is not loopback needs CURVE keys; raises ConfigError otherwise."""
    if is_loopback_endpoint(endpoint):
        return
    if cfg is not None and cfg.enabled:
        return
    raise ConfigError(f"endpoint {endpoint} is reachable from the network but CURVE is not configured: "
                      "set the security.curve_* key files (see docs/security.md) or bind to 127.0.0.1 / ipc://")
