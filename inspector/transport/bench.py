"""One hop of a frame through the daemon's queue (encode → ZeroMQ → decode) vs numpy.copy, same process.

The broker side sends a frame with the daemon's wire format and credit protocol (ROUTER/DEALER,
READY = one credit); the worker side decodes it zero-copy and asks for the next one. The hop time is
READY-to-READY per frame. ``numpy.copy`` of the same frame is timed in the same run, so the printed
ratio is meaningful on a noisy machine.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time

import numpy as np
import zmq

from inspector.frame import Frame, FrameMeta
from inspector.transport import wire
from inspector.transport.messages import Ready


def _frame(width: int, height: int) -> Frame:
    px = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    return Frame(px, FrameMeta("bench0", 0, time.time(), width, height, "Mono8", run_id="bench"))


def run_transport_bench(width: int, height: int, frames: int, transport: str = "ipc",
                        warmup: int = 5, quiet: bool = False) -> dict[str, float]:
    frame = _frame(width, height)
    ctx = zmq.Context()
    tmp = tempfile.mkdtemp(prefix="inspector-bench-")
    endpoint = {"ipc": f"ipc://{tmp}/bench.sock", "tcp": "tcp://127.0.0.1:*", "inproc": "inproc://bench"}[transport]
    router = ctx.socket(zmq.ROUTER)
    router.bind(endpoint)
    endpoint = router.getsockopt(zmq.LAST_ENDPOINT).decode()
    total = frames + warmup
    checksum = [0]

    def worker() -> None:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, b"w0")
        dealer.connect(endpoint)
        for _ in range(total):
            dealer.send(Ready(0).to_wire())
            f = wire.decode_frame(dealer.recv_multipart(copy=False))
            checksum[0] += int(f.pixels[-1, -1])  # touch the far end of the buffer
        dealer.send(Ready(0).to_wire())
        dealer.close(0)

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    hops: list[float] = []
    ident, _ = router.recv_multipart()
    for i in range(total):
        t0 = time.perf_counter()
        router.send_multipart([ident, *wire.encode_frame(frame)], copy=False)
        ident, _ = router.recv_multipart()  # the worker decoded it and asks for the next
        if i >= warmup:
            hops.append(time.perf_counter() - t0)
    t.join(5)
    copies = []
    for i in range(total):
        t0 = time.perf_counter()
        np.copy(frame.pixels)
        if i >= warmup:
            copies.append(time.perf_counter() - t0)
    router.close(0)
    ctx.term()
    hop, cp = statistics.median(hops), statistics.median(copies)
    mb = frame.pixels.nbytes / 1e6
    out = {"hop_ms": hop * 1e3, "copy_ms": cp * 1e3, "ratio": hop / cp, "frame_mb": mb,
           "hop_gb_s": mb / 1e3 / hop}
    if not quiet:
        print(f"frame {width}x{height} Mono8 ({mb:.1f} MB), {frames} frames over {transport}")
        print(f"  one hop (encode, send, receive, decode):   median {out['hop_ms']:.3f} ms  ({out['hop_gb_s']:.2f} GB/s)")
        print(f"  numpy.copy of the same frame:              median {out['copy_ms']:.3f} ms")
        print(f"  ratio hop / numpy.copy:                    {out['ratio']:.2f}x")
    return out
