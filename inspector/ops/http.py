"""The daemon's one HTTP listener: ``/metrics``, ``/healthz`` and ``/readyz``.

Modelled on Triton's endpoints: liveness and readiness are separate, readiness says *why* not.

``GET /metrics``   the registry in the Prometheus text format (OpenMetrics when the scraper asks for
                   it), gzip-compressed when the client accepts it; ``?name[]=…`` restricts the output.
``GET /healthz``   200 ``{"status": "alive"}`` while the process serves HTTP (liveness).
``GET /readyz``    200 ``{"ready": true, "reasons": []}`` when camera, workers and models are ready,
                   503 ``{"ready": false, "reasons": ["camera not open", …]}`` otherwise.
``GET /operator…`` the operator page (inspector/ops/operator_page.py), mounted with
                   :meth:`HealthServer.add_route` when enabled.

Anything else is 404 (unknown path) or 405 (method other than GET/HEAD), with a JSON body. The
server runs in a daemon thread, one short-lived thread per request, with a socket timeout so that a
stuck client cannot pin a thread; a failing readiness callback is reported as not ready, never as a
crash. Request logging goes to the ``inspector.ops.http`` logger at DEBUG (the scraper hits it every
few seconds; the journal stays readable).
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from inspector.errors import InspectorError

log = logging.getLogger(__name__)

Readiness = Callable[[], tuple[bool, list[str]]]
#: an extra route: handler(path, query, request headers) -> (status, body, content type, extra headers)
RouteHandler = Callable[[str, str, Any], tuple[int, bytes, str, dict[str, str]]]
_Request = socket.socket | tuple[bytes, socket.socket]  # socketserver's request type

_JSON = "application/json; charset=utf-8"
_REQUEST_TIMEOUT_S = 10.0
_GZIP_MIN_BYTES = 1024


class HealthServerError(InspectorError):
    """The metrics/health listener could not be started (bad address, port in use…)."""

    exit_code = 2  # a configuration problem: the key and the address are named


def parse_listen(listen: str) -> tuple[str, int]:
    """``"HOST:PORT"`` or ``"[V6]:PORT"`` -> ``(host, port)``; port 0 picks a free one."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise HealthServerError(f"metrics.listen: expected HOST:PORT, got {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise HealthServerError(f"metrics.listen: missing host in {listen!r} (use 127.0.0.1 or 0.0.0.0)")
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily,
                 registry: CollectorRegistry, readiness: Readiness, max_connections: int):
        self.address_family = family
        self.registry = registry
        self.readiness = readiness
        self._slots = threading.BoundedSemaphore(max_connections)
        self.routes: dict[str, RouteHandler] = {}  # path prefix -> handler (mounted pages)
        super().__init__(address, _Handler)

    def process_request(self, request: _Request, client_address: Any) -> None:
        # One thread per connection, but a bounded number: a flood of idle connections cannot
        # exhaust the supervisor's threads; the excess is closed at once (the scraper retries).
        if not self._slots.acquire(blocking=False):
            log.debug("too many connections; closing %s", client_address)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: _Request, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # "[::]:9108" also serves IPv4 where the host allows it; "[::1]" stays loopback-only.
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:
                pass
        super().server_bind()

    def handle_error(self, request: _Request, client_address: Any) -> None:
        # A client that hangs up mid-response is not worth a traceback on stderr.
        log.debug("error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "inspector"
    protocol_version = "HTTP/1.1"
    # Malformed request lines are answered with a status line too (HTTP/0.9 would send a bare body).
    default_request_version = "HTTP/1.0"
    timeout = _REQUEST_TIMEOUT_S

    def version_string(self) -> str:
        return self.server_version

    # ---- routing ------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def _not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, _json({"error": f"method {self.command} not allowed"}),
                   _JSON, extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815 - http.server naming

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        try:
            if path == "/metrics":
                self._metrics(url.query, head)
            elif path == "/healthz":
                self._send(HTTPStatus.OK, _json({"status": "alive"}), _JSON, head=head)
            elif path == "/readyz":
                ready, reasons = self._readiness()
                body = _json({"ready": ready, "reasons": reasons})
                self._send(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE, body, _JSON, head=head)
            elif (route := self._mounted(path)) is not None:
                status, body, ctype, extra = route(path, url.query, self.headers)
                self._send(HTTPStatus(status), body, ctype, head=head, extra=extra)
            else:
                self._send(HTTPStatus.NOT_FOUND,
                           _json({"error": "not found", "endpoints": ["/metrics", "/healthz", "/readyz"]}),
                           _JSON, head=head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # never let one request take the listener down
            log.exception("error while serving %s", path)
            self.close_connection = True
            try:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, _json({"error": "internal error"}), _JSON, head=head)
            except OSError:
                pass

    def _mounted(self, path: str) -> RouteHandler | None:
        for prefix, handler in list(self.server.routes.items()):
            if path == prefix or path.startswith(prefix + "/"):
                return handler
        return None

    # ---- endpoints -------------------------------------------------------------------------
    def _readiness(self) -> tuple[bool, list[str]]:
        try:
            ready, reasons = self.server.readiness()
        except Exception as e:  # a readiness bug is "not ready", with the reason, not a 500
            log.warning("readiness check failed: %s", e, exc_info=True)
            return False, [f"readiness check failed: {type(e).__name__}: {e}"]
        return bool(ready), [str(r) for r in reasons]

    def _metrics(self, query: str, head: bool) -> None:
        names = parse_qs(query).get("name[]")
        source = self.server.registry.restricted_registry(names) if names else self.server.registry
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        body = encoder(source)  # type: ignore[arg-type]  # RestrictedRegistry duck-types collect()
        extra = {}
        if len(body) >= _GZIP_MIN_BYTES and _accepts_gzip(self.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body, compresslevel=5)
            extra["Content-Encoding"] = "gzip"
        self._send(HTTPStatus.OK, body, content_type, head=head, extra=extra)

    # ---- plumbing --------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, content_type: str, *, head: bool = False,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests (bad request line, oversized headers…) get a short JSON error."""
        self.close_connection = True
        try:
            body = _json({"error": message or HTTPStatus(code).phrase})
            self.send_response(code, message)
            self.send_header("Content-Type", _JSON)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        token, _, params = part.strip().partition(";")
        if token.strip().lower() == "gzip":
            q = params.strip()
            return not (q.startswith("q=") and _float(q[2:]) == 0.0)
    return False


def _float(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        return 1.0


class HealthServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one listener, served from a daemon thread.

    ``listen`` is ``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0 picks a free one, see :attr:`port`).
    ``readiness()`` returns ``(ready, reasons)``; it is called on every ``/readyz`` request from the
    server thread, so it must be cheap and thread-safe (read a few flags, no I/O). At most
    ``max_connections`` connections are served at once; further ones are closed immediately.
    """

    def __init__(self, listen: str, registry: CollectorRegistry, readiness: Readiness, *,
                 max_connections: int = 32):
        self.listen = listen
        self.max_connections = max_connections
        self._host, self._port = parse_listen(listen)
        self._registry = registry
        self._readiness = readiness
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def add_route(self, prefix: str, handler: RouteHandler) -> None:
        """Serve ``prefix`` and everything under it with ``handler`` (called from request threads:
        it must be thread-safe). Call after :meth:`start`."""
        if self._server is None:
            raise RuntimeError("add_route() before start()")
        self._server.routes[prefix.rstrip("/")] = handler

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the requested one, or the one the OS picked for port 0)."""
        return self._server.server_address[1] if self._server is not None else self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve in a daemon thread. Raises :class:`HealthServerError` if it cannot bind."""
        if self._server is not None:
            return
        try:
            infos = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as e:
            raise HealthServerError(f"metrics.listen {self.listen!r}: cannot resolve host: {e.strerror}") from None
        family, _, _, _, sockaddr = infos[0]
        try:
            address = (str(sockaddr[0]), int(sockaddr[1]))
            server = _Server(address, family, self._registry, self._readiness, self.max_connections)
        except OSError as e:
            raise HealthServerError(f"metrics.listen: cannot listen on {self.listen}: {e.strerror or e}") from None
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="inspector-http", daemon=True)
        self._thread.start()
        log.info("metrics and health endpoints on %s (/metrics /healthz /readyz)", self.url)

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
