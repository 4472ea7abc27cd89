"""Acknowledged reject delivery with real processes: `inspector run` + `inspector line-controller`
subprocesses on loopback TCP. Whatever the controller does (slow, killed and restarted, absent,
garbage), every actionable decision ends acknowledged or alarmed in the audit — none silently lost."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import zmq

from daemon_helpers import start_daemon, wait_http, wait_ready
from line_helpers import (Daemon, audit_records, controller_events, line_config, metric, settle_report,
                          start_controller)

pytestmark = pytest.mark.timeout(180)


def _finish(proc, timeout: float = 60) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    return out


def test_slow_controller_acks_everything_and_latency_is_measured(tmp_path):
    cfg_path, cfg = line_config(tmp_path)
    ctl = start_controller(cfg["line"]["reject_endpoint"], "--delay-ms", "150")
    daemon = start_daemon(cfg_path, "--duration", "4")
    try:
        wait_ready(cfg, daemon)
        metrics = wait_http(f"http://{cfg['metrics']['listen']}/metrics").decode()
        assert metric(metrics, "inspector_line_controllers") == 1
        out = _finish(daemon)
    finally:
        ctl.send_signal(signal.SIGINT)
        ctl.wait(10)
    rep = settle_report(tmp_path / "state")
    assert len(rep["wanted"]) >= 10 and not rep["alarms"], out
    lat = [a["latency_ms"] for a in rep["acks"]]
    assert min(lat) >= 150, "an ack cannot arrive before the controller's delay"
    assert all(a["controller"] == "plc-1" for a in rep["acks"])
    # 150 ms delay, resend every 100 ms: most commands were resent once or twice, ejected once
    assert max(a["attempts"] for a in rep["acks"]) >= 2
    ev = controller_events(ctl)
    ejected = [e for e in ev if e["event"] == "reject" and not e["duplicate"]]
    assert sorted(e["frame_id"] for e in ejected) == rep["wanted"]
    assert any(e["duplicate"] for e in ev if e["event"] == "reject"), "resends reach the controller"


def _metrics(cfg: dict) -> str:
    return wait_http(f"http://{cfg['metrics']['listen']}/metrics").decode()


def _until(cfg: dict, name: str, pred, timeout: float = 60.0) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = metric(_metrics(cfg), name)
        if pred(v):
            return v
        time.sleep(0.2)
    raise TimeoutError(f"{name} never satisfied the condition")


def test_controller_killed_and_restarted_mid_run(tmp_path):
    cfg_path, cfg = line_config(tmp_path)
    ep = cfg["line"]["reject_endpoint"]
    ctl = start_controller(ep)
    daemon = Daemon(cfg_path)
    ctl2 = None
    try:
        wait_ready(cfg, daemon.proc)
        _until(cfg, "inspector_reject_acks_total", lambda v: v >= 3)
        os.kill(ctl.pid, signal.SIGKILL)  # the PLC dies without a goodbye
        ctl.wait(10)
        _until(cfg, "inspector_reject_deadline_missed_total", lambda v: v >= 3)  # rejects issued now alarm
        acked = metric(_metrics(cfg), "inspector_reject_acks_total")
        ctl2 = start_controller(ep)
        _until(cfg, "inspector_reject_acks_total", lambda v: v >= acked + 3)
    finally:
        out = daemon.stop()
        for p in (ctl, ctl2):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT)
                p.wait(10)
    assert daemon.proc.returncode == 0 and "Traceback" not in out, out
    rep = settle_report(tmp_path / "state")
    acked = {a["frame_id"] for a in rep["acks"]}
    alarmed = [a["frame_id"] for a in rep["alarms"]]
    assert any(f < min(alarmed) for f in acked) and any(f > max(alarmed) for f in acked), \
        "acks before the kill and after the restart"
    assert all(a["reason"] == "deadline" for a in rep["alarms"])
    states = [r["state"] for r in audit_records(tmp_path / "state", "line_controller")]
    assert states[:3] == ["connected", "gone", "connected"], states
    assert "ALARM reject not acknowledged" in out
    assert controller_events(ctl2), "the restarted controller received commands"


def test_no_controller_from_the_start_alarms_every_reject_on_audit_metrics_and_pub(tmp_path):
    cfg_path, cfg = line_config(tmp_path, line={"deadline_ms": 200, "resend_ms": 50})
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"alarm.reject_deadline.")
    sub.connect(cfg["publish"]["endpoint"])
    daemon = start_daemon(cfg_path, "--duration", "6")  # metrics are read while it still runs
    alarms_pub = []
    try:
        wait_ready(cfg, daemon)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            if sub.poll(100):
                topic, body = sub.recv_multipart()
                alarms_pub.append(json.loads(body))
        metrics = wait_http(f"http://{cfg['metrics']['listen']}/metrics").decode()
        out = _finish(daemon)
    finally:
        sub.close(0)
        ctx.term()
    rep = settle_report(tmp_path / "state")
    assert not rep["acks"] and len(rep["alarms"]) >= 5, out
    assert all(a["controllers_connected"] == 0 and a["attempts"] == 0 for a in rep["alarms"])
    assert alarms_pub and {a["seq"] for a in alarms_pub} <= {a["seq"] for a in rep["alarms"]}
    assert alarms_pub[0]["alarm"] == "reject_deadline" and "frame_id" in alarms_pub[0]
    missed = metric(metrics, "inspector_reject_deadline_missed_total")
    assert 1 <= missed <= len(rep["alarms"])
    assert metric(metrics, "inspector_reject_commands_total") >= missed


def test_garbage_from_a_peer_is_counted_and_all_must_ack(tmp_path):
    """Two controllers, require: all. One never acknowledges; a third peer sends garbage. Once both
    are connected, every command is alarmed naming the silent one; garbage is counted; the daemon goes on."""
    cfg_path, cfg = line_config(tmp_path, line={"require": "all"})
    ep = cfg["line"]["reject_endpoint"]
    good = start_controller(ep, name="plc-a")
    mute = start_controller(ep, "--never-ack", name="plc-b")
    ctx = zmq.Context()
    junk = ctx.socket(zmq.DEALER)
    junk.setsockopt(zmq.LINGER, 0)
    junk.connect(ep)
    daemon = Daemon(cfg_path)
    try:
        wait_ready(cfg, daemon.proc)
        _until(cfg, "inspector_line_controllers", lambda v: v == 2)
        both_from = metric(_metrics(cfg), "inspector_reject_commands_total")  # seqs after this: both connected
        for msg in ([b"\xff\xfe not json"], [b'{"v": 2, "kind": "ack", "seq": 1}'], [b'{"v": 1, "kind": "ack"}'],
                    [b'{"v": 1, "kind": "ack", "seq": -3}'], [b'{"v": 1, "kind": "launch"}'], [b"a", b"b"],
                    [b'{"v": 1, "kind": "hello", "controller": 7}'], [b"[" * 100_000]):
            junk.send_multipart(msg)
        _until(cfg, "inspector_reject_deadline_missed_total", lambda v: v >= both_from + 5)
        metrics = _metrics(cfg)
    finally:
        out = daemon.stop()
        junk.close(0)
        ctx.term()
        for p in (good, mute):
            p.send_signal(signal.SIGINT)
            p.wait(10)
    assert daemon.proc.returncode == 0 and "Traceback" not in out, out
    rep = settle_report(tmp_path / "state")
    later = [r for r in rep["acks"] + rep["alarms"] if r["seq"] > both_from]
    assert len(later) >= 5 and all("alarm" in r for r in later), \
        "with require: all, a controller that never acks fails every command"
    odd = [a for a in later if not (a["missing"] == ["plc-b"] and a["acked_by"] == ["plc-a"])]
    assert not odd, odd[:3]
    assert metric(metrics, 'inspector_bad_input_total{kind="line_malformed"}') >= 7
    assert "bad message from" in out
