"""Acknowledgement latency of the reject channel on loopback, against a raw ZeroMQ round trip.

Both runs talk to the reference line controller (`inspector line-controller`, a separate process)
over tcp://127.0.0.1, in this one process:

* reference: a bare ROUTER sends one reject message and waits for its ack (ping-pong round trip);
* channel:   the daemon's RejectChannel (queue + wake-up hand-over to its thread, resend/deadline
             bookkeeping, ack matching), commands issued at --rate per second like a line would.

Latency = issue to acknowledgement as the channel records it (the same value that goes into the
``reject_ack`` audit record and ``inspector_reject_ack_latency_seconds``). Prints p50/p90/p99/max
and the channel/reference ratios (timings on a shared machine are noisy; compare ratios).

    PYTHONPATH=. python bench/bench_line_ack.py --commands 2000 --rate 200
"""

from __future__ import annotations

import argparse
import json
import queue
import socket
import statistics
import subprocess
import sys
import time

import numpy as np
import zmq
from tqdm import tqdm

from inspector.line import protocol
from inspector.line.reject import RejectChannel
from inspector.line.settings import LineConfig


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _controller(endpoint: str, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inspector", "line-controller", "--endpoint", endpoint,
                             "--name", name, "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def reference(n: int) -> list[float]:
    ep = f"tcp://127.0.0.1:{_port()}"
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.bind(ep)
    proc = _controller(ep, "ref")
    try:
        ident, _ = router.recv_multipart()  # its hello
        out = []
        for seq in tqdm(range(1, n + 1), desc="reference round trips", unit="msg"):
            now = time.time()
            msg = protocol.encode("reject", seq=seq, run_id="bench", frame_id=seq, camera="c", acquired_at=now,
                                  issued_at=now, deadline=now + 1, decisions=[], attempt=1)
            t0 = time.perf_counter()
            router.send_multipart([ident, msg])
            while True:
                _, data = router.recv_multipart()
                if protocol.decode_from_controller(data)["kind"] == "ack":
                    break
            out.append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        proc.terminate()
        proc.wait(10)
        router.close(0)
        ctx.term()


def channel(n: int, rate: float) -> tuple[list[float], int, int]:
    ep = f"tcp://127.0.0.1:{_port()}"
    ctx = zmq.Context()
    ch = RejectChannel(ctx, LineConfig(reject_endpoint=ep, deadline_ms=500, resend_ms=100), None, "bench")
    proc = _controller(ep, "plc-bench")
    lat, alarms, resent = [], 0, 0
    try:
        end = time.monotonic() + 30
        while not ch.controllers() and time.monotonic() < end:
            time.sleep(0.05)
        period = 1.0 / rate
        t_next = time.perf_counter()
        for i in tqdm(range(n), desc=f"channel at {rate:g}/s", unit="cmd"):
            while time.perf_counter() < t_next:
                time.sleep(min(0.001, max(0.0, t_next - time.perf_counter())))
            ch.issue({"frame_id": i, "camera": "c", "acquired_at": time.time()},
                     [{"inspection": "quality", "verdict": "reject", "reason": "bench"}])
            t_next += period
        ch.close()
        while True:
            try:
                kind, rec = ch.outcomes.get_nowait()
            except queue.Empty:
                break
            if kind == "ack":
                lat.append(rec["latency_ms"])
                resent += rec["attempts"] > 1
            elif kind == "alarm":
                alarms += 1
        return lat, alarms, resent
    finally:
        proc.terminate()
        proc.wait(10)
        ctx.term()


def _stats(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs)
    return {"n": len(xs), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max()), "mean": statistics.fmean(xs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--commands", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=200.0, help="commands per second on the channel")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    ref = _stats(reference(args.commands))
    lat, alarms, resent = channel(args.commands, args.rate)
    ch = _stats(lat)
    print(f"\n{'':<28}{'n':>6}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, s in (("raw ROUTER round trip", ref), (f"reject channel @ {args.rate:g}/s", ch)):
        print(f"{name:<28}{s['n']:>6}{s['p50']:>10.3f}{s['p90']:>10.3f}{s['p99']:>10.3f}{s['max']:>10.3f}")
    print(f"ratio channel/reference: p50 {ch['p50'] / ref['p50']:.2f}x, p99 {ch['p99'] / ref['p99']:.2f}x; "
          f"acked after a resend: {resent}; alarms (deadline 500 ms missed): {alarms} of {args.commands}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"reference": ref, "channel": ch, "alarms": alarms, "resent": resent, "rate": args.rate}, f, indent=2)
    return 0 if alarms == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
