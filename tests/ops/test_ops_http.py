"""The HTTP listener: /metrics, /healthz, /readyz, and what it does with bad requests."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inspector.errors import InspectorError
from inspector.ops.http import HealthServer, HealthServerError, parse_listen
from inspector.ops.metrics import Metrics


class Readiness:
    """A readiness callback the test flips, counting its calls."""

    def __init__(self) -> None:
        self.ready, self.reasons, self.calls, self.error = False, ["camera not open"], 0, None

    def __call__(self) -> tuple[bool, list[str]]:
        self.calls += 1
        if self.error:
            raise self.error
        return self.ready, list(self.reasons)


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics()
    m.frames_acquired.labels(camera="synthetic0").inc(7)
    m.results.labels("quality", "pass").inc(5)
    m.results.labels("quality", "reject").inc(2)
    m.stage_seconds.labels(stage="infer").observe(0.012)
    m.set_model("excipient_identity", "identity-resnet50", "3", "ab" * 32)
    return m


@pytest.fixture
def served(metrics):
    readiness = Readiness()
    server = HealthServer("127.0.0.1:0", metrics.registry, readiness)
    server.start()
    yield server, readiness, metrics
    server.stop()


def request(server: HealthServer, method: str, path: str, headers: dict[str, str] | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_metrics_text_format(served):
    server, _, _ = served
    assert server.port > 0
    status, headers, body = request(server, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert int(headers["content-length"]) == len(body)
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    acquired = families["inspector_frames_acquired"].samples
    assert any(s.name == "inspector_frames_acquired_total" and s.labels == {"camera": "synthetic0"} and s.value == 7
               for s in acquired)
    results = {(s.labels["inspection"], s.labels["verdict"]): s.value
               for s in families["inspector_results"].samples if s.name.endswith("_total")}
    assert results == {("quality", "pass"): 5, ("quality", "reject"): 2}
    model = [s for s in families["inspector_model_info"].samples]
    assert model[0].labels == {"inspection": "excipient_identity", "name": "identity-resnet50",
                               "version": "3", "sha256": "ab" * 32}
    infer = [s for s in families["inspector_stage_duration_seconds"].samples
             if s.name.endswith("_count") and s.labels["stage"] == "infer"]
    assert infer[0].value == 1


def test_metrics_reflect_updates_between_scrapes(served):
    server, _, m = served
    m.frames_acquired.labels(camera="synthetic0").inc(3)
    _, _, body = request(server, "GET", "/metrics")
    assert 'inspector_frames_acquired_total{camera="synthetic0"} 10.0' in body.decode()


def test_metrics_openmetrics_and_gzip(served):
    server, _, _ = served
    status, headers, body = request(server, "GET", "/metrics", {
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        "Accept-Encoding": "gzip, deflate"})
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert headers["content-encoding"] == "gzip"
    text = gzip.decompress(body).decode()
    assert text.rstrip().endswith("# EOF")
    assert "inspector_results_total" in text


def test_no_gzip_unless_accepted(served):
    server, _, _ = served
    for enc in ("", "identity", "gzip;q=0"):
        _, headers, body = request(server, "GET", "/metrics", {"Accept-Encoding": enc})
        assert "content-encoding" not in headers
        assert body.startswith(b"#")


def test_metrics_name_filter(served):
    server, _, _ = served
    _, _, body = request(server, "GET", "/metrics?name[]=inspector_ready&name[]=inspector_queue_depth")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert names == {"inspector_ready", "inspector_queue_depth"}


def test_healthz(served):
    server, readiness, _ = served
    status, headers, body = request(server, "GET", "/healthz")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"status": "alive"}
    assert readiness.calls == 0  # liveness never depends on readiness


def test_readyz_reports_reasons_then_ready(served):
    server, readiness, _ = served
    readiness.reasons = ["camera not open", "worker 1 not up"]
    status, _, body = request(server, "GET", "/readyz")
    assert status == 503
    assert json.loads(body) == {"ready": False, "reasons": ["camera not open", "worker 1 not up"]}
    readiness.ready, readiness.reasons = True, []
    status, _, body = request(server, "GET", "/readyz/")
    assert status == 200
    assert json.loads(body) == {"ready": True, "reasons": []}


def test_readiness_callback_error_is_not_ready_not_a_crash(served):
    server, readiness, _ = served
    readiness.error = RuntimeError("supervisor state unavailable")
    status, _, body = request(server, "GET", "/readyz")
    assert status == 503
    doc = json.loads(body)
    assert doc["ready"] is False
    assert "RuntimeError: supervisor state unavailable" in doc["reasons"][0]
    assert request(server, "GET", "/healthz")[0] == 200


def test_head_has_headers_and_no_body(served):
    server, _, _ = served
    status, headers, body = request(server, "HEAD", "/metrics")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_unknown_path_and_method(served):
    server, _, _ = served
    status, _, body = request(server, "GET", "/admin")
    assert status == 404 and json.loads(body)["error"] == "not found"
    status, headers, _ = request(server, "POST", "/metrics")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, _, _ = request(server, "DELETE", "/readyz")
    assert status == 405


def _raw(server: HealthServer, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(payload)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize("payload", [
    b"garbage\r\n\r\n",
    b"GET /metrics HTTP/9.9\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(200)),  # a TLS ClientHello
    b"GET /healthz HTTP/1.1\r\n" + b"X-Long: " + b"b" * 70000 + b"\r\n\r\n",
])
def test_malformed_requests_get_an_error_and_the_server_survives(served, payload):
    server, _, _ = served
    reply = _raw(server, payload)
    if reply:  # 400 / 414 / 431 / 505 with a JSON body, or the connection is simply closed
        status_line, _, rest = reply.partition(b"\r\n")
        code = int(status_line.split(b" ", 2)[1])
        assert code in (400, 414, 431, 505), status_line
        assert b"Content-Type: application/json" in rest
    assert request(server, "GET", "/healthz")[0] == 200


def test_keep_alive_serves_several_requests_on_one_connection(served):
    server, _, _ = served
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for path in ("/healthz", "/metrics", "/readyz"):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status in (200, 503)
    finally:
        conn.close()


def test_a_silent_client_does_not_block_others(served):
    server, _, _ = served
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        idle.sendall(b"GET /metrics HTTP/1.1\r\n")  # never finishes its headers
        results = []
        threads = [threading.Thread(target=lambda: results.append(request(server, "GET", "/healthz")[0]))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == [200] * 8
    finally:
        idle.close()


def test_connection_flood_is_bounded_and_recovers(metrics):
    server = HealthServer("127.0.0.1:0", metrics.registry, lambda: (True, []), max_connections=4)
    with server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
        try:
            for s in idle:
                s.sendall(b"GET /healthz HTTP/1.1\r\n")  # holds a slot: headers never finish
            time.sleep(0.3)
            with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
                request(server, "GET", "/healthz")  # the fifth is closed without an answer
        finally:
            for s in idle:
                s.close()
        wait = time.monotonic() + 10
        while True:  # the slots come back once the idle clients are gone
            try:
                assert request(server, "GET", "/healthz")[0] == 200
                break
            except (ConnectionError, http.client.HTTPException):
                assert time.monotonic() < wait, "slots never released"
                time.sleep(0.1)


def test_stop_releases_the_port_and_is_idempotent(metrics):
    server = HealthServer("127.0.0.1:0", metrics.registry, lambda: (True, []))
    server.start()
    port = server.port
    assert request(server, "GET", "/healthz")[0] == 200
    server.stop()
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    again = HealthServer(f"127.0.0.1:{port}", metrics.registry, lambda: (True, []))
    with again:  # the same port can be bound again right away (daemon restart)
        assert request(again, "GET", "/healthz")[0] == 200


def test_port_in_use_is_a_clear_error(metrics):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = HealthServer(f"127.0.0.1:{port}", metrics.registry, lambda: (True, []))
        with pytest.raises(HealthServerError, match=rf"metrics.listen: cannot listen on 127.0.0.1:{port}"):
            server.start()
    assert issubclass(HealthServerError, InspectorError)


@pytest.mark.parametrize("listen", ["9108", "localhost:http", ":9108", "127.0.0.1:99999", ""])
def test_bad_listen_address(listen):
    with pytest.raises(HealthServerError, match=r"metrics\.listen"):
        parse_listen(listen)


def test_unresolvable_host(metrics):
    server = HealthServer("no-such-host.invalid:0", metrics.registry, lambda: (True, []))
    with pytest.raises(HealthServerError, match="cannot resolve host"):
        server.start()


def test_parse_listen_ipv6():
    assert parse_listen("[::1]:9108") == ("::1", 9108)
    assert parse_listen("0.0.0.0:0") == ("0.0.0.0", 0)


def test_ipv6_loopback(metrics):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python build")
    server = HealthServer("[::1]:0", metrics.registry, lambda: (True, []))
    try:
        server.start()
    except HealthServerError as e:
        pytest.skip(f"no IPv6 loopback on this host: {e}")
    try:
        assert server.url == f"http://[::1]:{server.port}"
        conn = http.client.HTTPConnection("::1", server.port, timeout=5)
        conn.request("GET", "/readyz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.stop()


def test_concurrent_scrapes_while_metrics_change(served):
    server, _, m = served
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            m.stage_seconds.labels(stage="preprocess").observe(0.001 * (i % 50))
            m.results.labels("quality", "pass").inc()
            i += 1
            time.sleep(0)

    t = threading.Thread(target=churn)
    t.start()
    try:
        statuses = []

        def scrape() -> None:
            for _ in range(5):
                status, _, body = request(server, "GET", "/metrics")
                list(text_string_to_metric_families(body.decode()))  # parses: never a torn output
                statuses.append(status)

        scrapers = [threading.Thread(target=scrape) for _ in range(4)]
        for s in scrapers:
            s.start()
        for s in scrapers:
            s.join(30)
        assert statuses == [200] * 20
    finally:
        stop.set()
        t.join()
