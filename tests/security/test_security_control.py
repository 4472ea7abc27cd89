"""Control channel: protocol validation, the REP server's robustness, auditing, the client and the CLI."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import zmq

from cli_helpers import run_plugin_cli
from inspector.audit.store import AuditStore
from inspector.control import cli as control_cli
from inspector.control.client import ControlError, send_command
from inspector.control.protocol import (
    MAX_MESSAGE_BYTES,
    ControlRequest,
    SetLotArgs,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from inspector.control.server import ControlServer
from inspector.errors import ConfigError, InspectorError, WireError


def req(cmd: str = "status", args: Any = None, user: Any = "op1", **extra: Any) -> bytes:
    msg = {"v": 1, "cmd": cmd, "args": {} if args is None else args, "user": user, **extra}
    return json.dumps(msg).encode()


# ---- protocol ----------------------------------------------------------------------------------
def test_decode_valid_requests() -> None:
    r = decode_request(req("set_lot", {"lot": "L-42", "recipe": "R9"}))
    assert r.cmd == "set_lot" and isinstance(r.args, SetLotArgs) and r.args.lot == "L-42" and r.user == "op1"
    assert r.audit_payload() == {"cmd": "set_lot", "args": {"lot": "L-42", "recipe": "R9"}, "user": "op1"}
    assert decode_request(req("reload_model", {"inspection": "identity"})).args.version is None
    assert decode_request(req("pause")).cmd == "pause"
    assert decode_request(json.dumps({"v": 1, "cmd": "status", "user": "u"}).encode()).cmd == "status"


@pytest.mark.parametrize("data, message", [
    (b"\xff\xfe", "not UTF-8"),
    (b"{", "not valid JSON"),
    (b"[1]", "must be a JSON object"),
    (b'{"v": 1, "v": 1}', "duplicate key"),
    (b'{"v": NaN}', "NaN is not valid JSON"),
    (b"[" * 50_000 + b"]" * 50_000, "bytes, over the"),
    (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
    (b'{"v": 1' + b"9" * 5000 + b"}", "not valid JSON"),
    (req(v=2), "unsupported protocol version"),
    (json.dumps({"v": True, "cmd": "status", "user": "u"}).encode(), "unsupported protocol version"),
    (req("format_disk"), "unknown command"),
    (req("set_lot", {}), "args.lot: Field required"),
    (req("set_lot", {"lot": 7}), "args.lot"),
    (req("set_lot", {"lot": "x\n y"}), "args.lot"),
    (req("set_lot", {"lot": "x" * 201}), "args.lot"),
    (req("set_expected", {"excipient": "mcc", "extra": 1}), "args.extra: unknown key"),
    (req("pause", {"force": True}), "unknown key"),
    (req("status", []), "args must be an object"),
    (req(user=""), "request.user"),
    (req(user=None), "request.user"),
    (req(sneaky=1), "request.sneaky: unknown key"),
    (b'"\\ud800"', "must be a JSON object"),
])
def test_malformed_requests_raise_wire_error_with_reason(data: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        decode_request(data)


def test_oversized_request_is_refused_before_parsing() -> None:
    with pytest.raises(WireError, match=f"over the {MAX_MESSAGE_BYTES}-byte limit"):
        decode_request(req("set_lot", {"lot": "x" * MAX_MESSAGE_BYTES}))


def test_reply_encoding_round_trip_and_unserializable_results() -> None:
    r = decode_reply(encode_reply(True, {"paused": False, "lot": "L"}))
    assert (r.ok, r.error, r.result) == (True, None, {"paused": False, "lot": "L"})
    bad = decode_reply(encode_reply(True, {"x": object()}))
    assert not bad.ok and "not JSON data" in bad.error
    nan = decode_reply(encode_reply(True, {"x": float("nan")}))
    assert not nan.ok
    with pytest.raises(WireError):
        decode_reply(b'{"v": 1, "ok": "yes please"}')


def test_encode_request_validates_before_sending() -> None:
    assert decode_request(encode_request("set_expected", {"excipient": "lactose"}, user="me")).args.excipient == "lactose"
    with pytest.raises(WireError, match="args.lot"):
        encode_request("set_lot", {}, user="me")


# ---- server ------------------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.calls: list[ControlRequest] = []
        self.bad: list[str] = []
        self.state: dict[str, Any] = {"paused": False, "lot": None}

    def handler(self, r: ControlRequest) -> dict:
        self.calls.append(r)
        if r.cmd == "reload_model" and r.args.inspection == "nope":
            raise InspectorError("no inspection named 'nope'")
        if r.cmd == "set_expected" and r.args.excipient == "boom":
            raise RuntimeError("bug in the handler")
        if r.cmd == "pause":
            self.state["paused"] = True
        if r.cmd == "set_lot":
            self.state["lot"] = r.args.lot
        return dict(self.state)


@contextmanager
def serving(handler: Callable[[ControlRequest], dict], *, endpoint: str = "tcp://127.0.0.1:0", **kw: Any
            ) -> Iterator[ControlServer]:
    ctx = zmq.Context()
    server = ControlServer(ctx, endpoint, handler, **kw)
    stop = threading.Event()

    def loop() -> None:
        poller = zmq.Poller()
        poller.register(server.socket, zmq.POLLIN)
        while not stop.is_set():
            if poller.poll(20):
                server.handle_one()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield server
    finally:
        stop.set()
        t.join(5)
        server.close()
        ctx.term()


def raw_request(endpoint: str, *frames: bytes, timeout_ms: int = 3000) -> dict:
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.linger = 0
    s.rcvtimeo = timeout_ms
    s.connect(endpoint)
    try:
        s.send_multipart(list(frames))
        return json.loads(s.recv())
    finally:
        s.close()
        ctx.term()


def test_commands_are_handled_acknowledged_and_audited(tmp_path: Path) -> None:
    rec = Recorder()
    with AuditStore(tmp_path / "audit.sqlite3") as store, serving(rec.handler, audit=store) as srv:
        r = send_command(srv.endpoint, "set_lot", {"lot": "LOT-9", "recipe": None}, user="alice")
        assert r == {"v": 1, "ok": True, "error": None, "result": {"paused": False, "lot": "LOT-9"}}
        r = send_command(srv.endpoint, "reload_model", {"inspection": "nope"}, user="bob")
        assert r["ok"] is False and r["error"] == "no inspection named 'nope'"
        r = send_command(srv.endpoint, "set_expected", {"excipient": "boom"}, user="carol")
        assert r["ok"] is False and "internal error: RuntimeError" in r["error"]
        assert send_command(srv.endpoint, "status", user="dave")["ok"]  # the channel survived
        audited = [x.payload for x in store.records(kind="control")]
        assert store.verify().ok
    assert [(a["cmd"], a["user"], a["ok"]) for a in audited] == [
        ("set_lot", "alice", True), ("reload_model", "bob", False), ("set_expected", "carol", False),
        ("status", "dave", True)]
    assert audited[0]["args"] == {"lot": "LOT-9", "recipe": None}
    assert audited[1]["error"] == "no inspection named 'nope'"
    assert audited[0]["peer_address"] == "127.0.0.1"
    assert [c.cmd for c in rec.calls] == ["set_lot", "reload_model", "set_expected", "status"]


def test_bad_messages_get_an_error_reply_and_a_metric_and_never_reach_the_handler() -> None:
    rec = Recorder()
    with serving(rec.handler, on_bad_message=rec.bad.append) as srv:
        r = raw_request(srv.endpoint, b"not json")
        assert r["ok"] is False and "not valid JSON" in r["error"]
        r = raw_request(srv.endpoint, req("set_lot", {"lot": "x" * (MAX_MESSAGE_BYTES + 10)}))
        assert r["ok"] is False and "exceeds" in r["error"]
        r = raw_request(srv.endpoint, req(), b"second frame")
        assert r["ok"] is False and "one frame" in r["error"]
        r = raw_request(srv.endpoint, req("rm_rf"))
        assert r["ok"] is False and "unknown command" in r["error"]
        assert raw_request(srv.endpoint, req("pause"))["ok"] is True  # REP is still in a good state
    assert rec.bad == ["control_malformed", "control_oversized", "control_malformed", "control_malformed"]
    assert [c.cmd for c in rec.calls] == ["pause"]


def test_messages_over_the_hard_limit_are_dropped_by_libzmq_and_the_server_keeps_going() -> None:
    rec = Recorder()
    with serving(rec.handler, on_bad_message=rec.bad.append) as srv:
        with pytest.raises(zmq.Again):
            raw_request(srv.endpoint, b"x" * (4 * MAX_MESSAGE_BYTES + 1), timeout_ms=500)
        assert raw_request(srv.endpoint, req("resume"))["ok"] is True
    assert [c.cmd for c in rec.calls] == ["resume"]


def test_a_failing_audit_store_turns_the_ack_into_an_error() -> None:
    class Broken:
        def append(self, kind: str, record: dict) -> int:
            raise OSError("disk full")

    rec = Recorder()
    with serving(rec.handler, audit=Broken()) as srv:
        r = send_command(srv.endpoint, "pause", user="op")
    assert r["ok"] is False and "could not be audited" in r["error"] and "disk full" in r["error"]


def test_a_failing_metric_callback_does_not_break_the_channel() -> None:
    def bad_metric(kind: str) -> None:
        raise ValueError("metrics down")

    with serving(Recorder().handler, on_bad_message=bad_metric) as srv:
        assert raw_request(srv.endpoint, b"{}")["ok"] is False
        assert raw_request(srv.endpoint, req())["ok"] is True


def test_handle_one_without_a_message_returns_immediately() -> None:
    ctx = zmq.Context()
    srv = ControlServer(ctx, "inproc://control-idle", Recorder().handler)
    try:
        srv.handle_one()  # nothing waiting: no exception, no blocking
    finally:
        srv.close()
        ctx.term()


def test_server_refuses_plain_text_on_a_network_interface_and_bad_binds() -> None:
    ctx = zmq.Context()
    taken = ctx.socket(zmq.REP)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        with pytest.raises(ConfigError, match="CURVE is not configured"):
            ControlServer(ctx, "tcp://0.0.0.0:5599", Recorder().handler)
        with pytest.raises(InspectorError, match="cannot bind"):
            ControlServer(ctx, f"tcp://127.0.0.1:{port}", Recorder().handler)
    finally:
        taken.close(linger=0)
        ctx.term()


def test_client_times_out_with_a_clear_error() -> None:
    ctx = zmq.Context()
    silent = ctx.socket(zmq.REP)  # bound, never answers
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    try:
        with pytest.raises(ControlError, match="no reply from .* within 0.3 s"):
            send_command(f"tcp://127.0.0.1:{port}", "status", timeout_s=0.3)
    finally:
        silent.close(linger=0)
        ctx.term()


def test_client_rejects_an_unreadable_reply() -> None:
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")

    def answer() -> None:
        rep.recv()
        rep.send(b"\x80\x04pickle?")

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        with pytest.raises(ControlError, match="unreadable reply"):
            send_command(f"tcp://127.0.0.1:{port}", "status", timeout_s=3)
    finally:
        t.join(5)
        rep.close(linger=0)
        ctx.term()


# ---- CLI ---------------------------------------------------------------------------------------
def cli(argv: list[str]) -> int:
    return run_plugin_cli(control_cli.register, argv)


def test_control_cli_sends_each_command_and_prints_the_reply(capsys) -> None:
    rec = Recorder()
    with serving(rec.handler) as srv:
        ep = ["--endpoint", srv.endpoint, "--user", "cli-user"]
        assert cli(["control", "set-lot", "LOT-1", "--recipe", "R2", *ep]) == 0
        assert json.loads(capsys.readouterr().out)["result"]["lot"] == "LOT-1"
        assert cli(["control", "pause", *ep]) == 0
        assert cli(["control", "set-expected", "mannitol", *ep]) == 0
        assert cli(["control", "reload", "nope", "--version", "3", *ep]) == 1  # refused: exit 1, reply printed
        assert json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")["ok"] is False
        assert cli(["control", "status", *ep, "--timeout", "0"]) == 2
    got = [(c.cmd, c.args.model_dump(), c.user) for c in rec.calls]
    assert got == [("set_lot", {"lot": "LOT-1", "recipe": "R2"}, "cli-user"), ("pause", {}, "cli-user"),
                   ("set_expected", {"excipient": "mannitol"}, "cli-user"),
                   ("reload_model", {"inspection": "nope", "version": "3"}, "cli-user")]


def test_control_cli_reads_the_endpoint_from_the_config(tmp_path: Path, capsys) -> None:
    rec = Recorder()
    with serving(rec.handler) as srv:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"control: {{endpoint: '{srv.endpoint}', timeout_s: 3}}\n")
        assert cli(["control", "status", "--config", str(cfg)]) == 0
    assert rec.calls[0].cmd == "status"
    cfg.write_text("control: {endpoint: 'http://x', bogus: 1}\n")
    assert cli(["control", "status", "--config", str(cfg)]) == 2
    assert "control.endpoint" in capsys.readouterr().out
