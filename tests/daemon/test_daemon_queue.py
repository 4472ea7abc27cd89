"""The bounded queue in the acquisition process: block / drop_oldest / drop_newest, every drop reported."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from inspector.config import Config
from inspector.daemon.acquisition import Broker
from inspector.daemon.endpoints import Endpoints
from inspector.transport import wire
from inspector.transport.messages import Command, Event, Ready


def _run_broker(tmp_path, when_full: str, capacity: int = 4, wait_s: float = 1.5):
    """Camera at 200 fps, no worker for wait_s, then one worker takes everything queued."""
    ep = Endpoints.in_dir(tmp_path)
    ctx = zmq.Context()
    events = ctx.socket(zmq.PULL)
    events.bind(ep.events)
    commands = ctx.socket(zmq.PUB)
    commands.bind(ep.commands)
    cfg = Config(camera={"driver": "synthetic", "scene": "noise", "width": 64, "height": 48, "fps": 200},
                 queue={"capacity": capacity, "when_full": when_full})
    broker = Broker(cfg, ep, {"run_id": "run-q", "revision": 0, "next_frame_id": 0}, generation=0)
    t = threading.Thread(target=broker.run, daemon=True)
    t.start()
    evs = []

    def drain_events(until: float) -> None:
        while time.monotonic() < until:
            if events.poll(50):
                e = Event.from_wire(events.recv_multipart())
                evs.append({"event": e.name, **e.fields})

    drain_events(time.monotonic() + wait_s)
    # freeze the camera (a run-state snapshot that pauses), then look at what is queued
    commands.send(Command("state", {"state": {"revision": 1, "paused": True}}).to_wire())
    drain_events(time.monotonic() + 0.5)
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, b"w0-0")
    dealer.connect(ep.frames)
    got = []
    for _ in range(capacity + 5):
        dealer.send(Ready(0).to_wire())
        if not dealer.poll(1000):
            break
        gen, *parts = dealer.recv_multipart()
        assert gen == b"0"
        got.append(wire.decode_frame(parts).meta.frame_id)
    drain_events(time.monotonic() + 0.5)
    commands.send(Command("stop", {"target": "acquisition", "drain_s": 0.1}).to_wire())
    t.join(10)
    for s in (dealer, events, commands):
        s.close(0)
    ctx.term()
    acquired = [e["frame_id"] for e in evs if e["event"] == "acquired"]
    dropped = [e["frame_id"] for e in evs if e["event"] == "dropped" and e["reason"] == "queue_full"]
    return acquired, dropped, got


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_drop_policies_keep_capacity_and_report_every_drop(tmp_path, policy):
    acquired, dropped, got = _run_broker(tmp_path, policy)
    assert len(acquired) > 10 and len(got) <= 4
    # accounting: every acquired frame was either delivered, dropped, or is still queued at stop
    assert set(dropped) | set(got) <= set(acquired) and not set(dropped) & set(got)
    assert len(dropped) >= len(acquired) - 4 - len(got) - 2  # the camera pipe may hold 1–2 frames
    if policy == "drop_oldest":
        assert min(got) > max(dropped), "drop_oldest keeps the newest frames"
    else:
        assert max(got) < min(dropped), "drop_newest keeps the oldest frames"
    assert got == sorted(got)


def test_block_policy_drops_nothing_and_holds_the_camera(tmp_path):
    acquired, dropped, got = _run_broker(tmp_path, "block")
    assert dropped == []
    # the camera was held back: only the queue (and the camera pipe) filled up in 1.5 s at 200 fps
    assert len(acquired) <= 4 + 3
    assert got == acquired[: len(got)]
