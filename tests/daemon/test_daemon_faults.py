"""Fault tolerance: workers killed under load, the daemon killed, the control channel, CURVE."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import zmq

from daemon_helpers import audit_frames, control, run_cli, start_daemon, wait_ready, write_config


class _Subscriber(threading.Thread):
    """A line controller: records every result (frame id, arrival time)."""

    def __init__(self, endpoint: str, topic: bytes = b"result.", curve: tuple[bytes, bytes, bytes] | None = None):
        super().__init__(daemon=True)
        self.endpoint, self.topic, self.curve = endpoint, topic, curve
        self.got: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        if curve:
            self.sock.curve_publickey, self.sock.curve_secretkey, self.sock.curve_serverkey = curve
        self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        self.sock.connect(endpoint)

    def run(self) -> None:
        while not self.stop.is_set():
            if self.sock.poll(100):
                parts = self.sock.recv_multipart()
                self.got.append((json.loads(parts[1])["frame_id"], time.monotonic()))
        self.sock.close(0)
        self.ctx.term()


def _counts(out: str) -> tuple[int, int, int, int]:
    m = re.search(r"acquired (\d+), inspected (\d+), dropped (\d+), lost (\d+)", out)
    return tuple(map(int, m.groups()))


def test_kill_workers_20_times_under_load_nothing_unaccounted(tmp_path):
    cfg_path, cfg = write_config(tmp_path, workers=2, camera={"fps": 40},
                                 supervisor={"restart_backoff_s": 0.05})
    sub = _Subscriber(cfg["publish"]["endpoint"])
    sub.start()
    proc = start_daemon(cfg_path)
    kills, gaps = 0, []
    try:
        wait_ready(cfg, proc)
        while kills < 20:
            st = control(cfg, "status")["result"]
            pids = sorted(st["workers"].values())
            if not pids:
                time.sleep(0.1)
                continue
            t_kill = time.monotonic()
            os.kill(pids[kills % len(pids)], signal.SIGKILL)
            kills += 1
            n0 = len(sub.got)
            end = time.monotonic() + 30
            while len(sub.got) == n0 and time.monotonic() < end:  # results flow again
                time.sleep(0.01)
            assert len(sub.got) > n0, "no result after a worker kill"
            gaps.append(sub.got[n0][1] - t_kill)
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        sub.stop.set()
        sub.join(5)
    assert proc.returncode == 0, out
    acquired, inspected, dropped, lost = _counts(out)
    assert acquired == inspected + dropped + lost
    frames = audit_frames(tmp_path / "state")
    assert len(frames) == acquired == len({f["frame_id"] for f in frames})
    by_outcome = {o: [f for f in frames if f["outcome"] == o] for o in ("inspected", "dropped", "lost")}
    assert len(by_outcome["lost"]) == lost and all(f["reason"] for f in by_outcome["lost"])
    assert {f["reason"] for f in by_outcome["lost"]} <= {"worker_died", "shutdown"}
    # the line received exactly the inspected frames, in order
    ids = [i for i, _ in sub.got]
    assert ids == sorted(ids) and set(ids) == {f["frame_id"] for f in by_outcome["inspected"]}
    print(f"recovery after a worker kill: median {sorted(gaps)[len(gaps) // 2] * 1000:.0f} ms, "
          f"max {max(gaps) * 1000:.0f} ms")


def test_daemon_sigkill_then_restart_audit_consistent_and_acknowledged_kept(tmp_path):
    cfg_path, cfg = write_config(tmp_path, camera={"fps": 30})
    sub = _Subscriber(cfg["publish"]["endpoint"])
    sub.start()
    proc = start_daemon(cfg_path)
    try:
        wait_ready(cfg, proc)
        end = time.monotonic() + 30
        while len(sub.got) < 20 and time.monotonic() < end:
            time.sleep(0.05)
        run_id = control(cfg, "status")["result"]["run_id"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        sub.stop.set()
        sub.join(5)
    acknowledged = {i for i, _ in sub.got}
    assert len(acknowledged) >= 20
    r = run_cli("audit", "verify", "--config", str(cfg_path))
    assert r.returncode == 0, r.stdout + r.stderr
    recorded = {f["frame_id"] for f in audit_frames(tmp_path / "state") if f["outcome"] == "inspected"}
    assert acknowledged <= recorded  # everything the line saw is on record (audit before publish)
    # the orphaned children notice their supervisor is gone and exit
    time.sleep(2)
    # restart on the same state: the store opens, the unclosed run is named in the startup record
    proc = start_daemon(cfg_path, "--duration", "1")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    r = run_cli("audit", "verify", "--config", str(cfg_path))
    assert r.returncode == 0, r.stdout + r.stderr
    import sqlite3

    con = sqlite3.connect(tmp_path / "state" / "audit.sqlite3")
    startups = [json.loads(p) for (p,) in con.execute("SELECT payload FROM audit WHERE kind='startup' ORDER BY seq")]
    con.close()
    assert run_id in startups[-1]["unclosed_runs"]


def test_control_channel_pause_resume_and_lot_are_acknowledged_and_audited(tmp_path):
    cfg_path, cfg = write_config(tmp_path, camera={"fps": 30})
    proc = start_daemon(cfg_path)
    try:
        wait_ready(cfg, proc)
        assert control(cfg, "pause")["ok"]
        time.sleep(0.5)
        a = control(cfg, "status")["result"]["counts"]["acquired"]
        time.sleep(1.0)
        assert control(cfg, "status")["result"]["counts"]["acquired"] == a  # nothing acquired while paused
        assert control(cfg, "set_lot", lot="LOT-77", recipe="R2")["result"]["context"]["lot"] == "LOT-77"
        assert control(cfg, "resume")["ok"]
        end = time.monotonic() + 20
        while control(cfg, "status")["result"]["counts"]["acquired"] <= a + 5 and time.monotonic() < end:
            time.sleep(0.2)
        bad = control(cfg, "reload_model", inspection="quality")
        assert not bad["ok"] and "no model" in bad["error"]
        r = run_cli("control", "status", "--endpoint", cfg["control"]["endpoint"])
        assert r.returncode == 0 and '"ready": true' in r.stdout
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    frames = audit_frames(tmp_path / "state")
    assert any(f.get("lot") == "LOT-77" and f.get("recipe") == "R2" for f in frames)
    import sqlite3

    con = sqlite3.connect(tmp_path / "state" / "audit.sqlite3")
    kinds = [k for (k,) in con.execute("SELECT kind FROM audit ORDER BY seq")]
    controls = [json.loads(p) for (p,) in con.execute("SELECT payload FROM audit WHERE kind='control'")]
    con.close()
    assert "lot_change" in kinds
    assert [c["cmd"] for c in controls if c["cmd"] != "status"] == ["pause", "set_lot", "resume", "reload_model"]


def test_curve_publisher_unknown_client_key_gets_nothing(tmp_path):
    keys = tmp_path / "keys"
    for name in ("server", "line", "intruder"):
        assert run_cli("keys", "generate", str(keys / name), "--name", name).returncode == 0
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "line.key").write_bytes((keys / "line" / "line.key").read_bytes())
    security = {"curve_server_secret_key_file": str(keys / "server" / "server.key_secret"),
                "curve_allowed_clients_dir": str(allowed)}
    cfg_path, cfg = write_config(tmp_path, security=security)
    import zmq.auth

    server_pub, _ = zmq.auth.load_certificate(keys / "server" / "server.key")
    line = _Subscriber(cfg["publish"]["endpoint"],
                       curve=(*zmq.auth.load_certificate(keys / "line" / "line.key_secret"), server_pub))
    intruder = _Subscriber(cfg["publish"]["endpoint"],
                           curve=(*zmq.auth.load_certificate(keys / "intruder" / "intruder.key_secret"), server_pub))
    plain = _Subscriber(cfg["publish"]["endpoint"])
    for s in (line, intruder, plain):
        s.start()
    proc = start_daemon(cfg_path, "--duration", "3")
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
        for s in (line, intruder, plain):
            s.stop.set()
            s.join(5)
    assert proc.returncode == 0, out
    assert len(line.got) > 10
    assert intruder.got == [] and plain.got == []
