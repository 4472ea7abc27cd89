"""The reject channel under CURVE (as any non-loopback deployment runs it), in-process: the daemon's
RejectChannel and the reference controller's loop in a thread, real sockets on tcp. An allowed
controller key is served and acknowledges; an unknown key completes no handshake, so the command alarms."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import zmq
import zmq.auth

from inspector.line.controller import run_controller
from inspector.line.reject import RejectChannel
from inspector.line.settings import LineConfig
from inspector.transport.security import SecurityConfig, stop_authenticator


def _keys(d: Path) -> dict[str, Path]:
    allowed = d / "allowed"
    allowed.mkdir()
    out = {}
    for name in ("server", "plc", "mallory"):
        pub, sec = zmq.auth.create_certificates(str(d), name)
        out[name], out[f"{name}_secret"] = Path(pub), Path(sec)
    (allowed / "plc.key").write_bytes(out["plc"].read_bytes())
    out["allowed"] = allowed
    return out


def _outcomes(ch: RejectChannel) -> list[tuple[str, dict]]:
    out = []
    while True:
        try:
            out.append(ch.outcomes.get_nowait())
        except queue.Empty:
            return out


def test_curve_controller_acks_and_unknown_key_alarms(tmp_path):
    k = _keys(tmp_path)
    server = SecurityConfig(curve_server_secret_key_file=str(k["server_secret"]),
                            curve_allowed_clients_dir=str(k["allowed"]))
    ctx = zmq.Context()
    ch = RejectChannel(ctx, LineConfig(reject_endpoint="tcp://127.0.0.1:0", deadline_ms=800, resend_ms=100),
                       server, "run-curve")
    stop = threading.Event()
    results = {}

    def controller(who: str) -> None:
        client = SecurityConfig(curve_server_public_key_file=str(k["server"]),
                                curve_client_secret_key_file=str(k[f"{who}_secret"]))
        results[who] = run_controller(ch.endpoint, name=who, security=client, stop=stop)

    try:
        intruder = threading.Thread(target=controller, args=("mallory",), daemon=True, name="ctl-mallory")
        intruder.start()
        time.sleep(1.5)
        assert ch.controllers() == [], "an unknown CURVE key must not even say hello"
        ch.issue({"frame_id": 1, "camera": "c"}, [{"inspection": "q", "verdict": "reject", "reason": None}])
        time.sleep(1.2)  # past the deadline with only the intruder around
        plc = threading.Thread(target=controller, args=("plc",), daemon=True, name="ctl-plc")
        plc.start()
        end = time.monotonic() + 10
        while ch.controllers() != ["plc"] and time.monotonic() < end:
            time.sleep(0.05)
        assert ch.controllers() == ["plc"]
        ch.issue({"frame_id": 2, "camera": "c"}, [{"inspection": "q", "verdict": "reject", "reason": None}])
        end = time.monotonic() + 10
        seen: list[tuple[str, dict]] = []
        while not any(kind == "ack" for kind, _ in seen) and time.monotonic() < end:
            seen += _outcomes(ch)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threading.enumerate():
            if t.name.startswith("ctl-"):
                t.join(5)
        ch.close()
        seen_after = _outcomes(ch)
        stop_authenticator(ctx)
        ctx.term()
    seen += seen_after
    alarms = [r for kind, r in seen if kind == "alarm"]
    acks = [r for kind, r in seen if kind == "ack"]
    assert [a["frame_id"] for a in alarms] == [1] and alarms[0]["controllers_connected"] == 0
    assert [(a["frame_id"], a["controller"]) for a in acks] == [(2, "plc")]
    assert results.get("plc") == 1 and results.get("mallory") == 0
