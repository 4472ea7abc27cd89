"""The PUB socket of the line: ``[topic, header_json(, payload)]`` on ``result.<inspection>.`` and
``gradcam.<inspection>.`` (see inspector.transport.topics). Headers carry ``schema`` for evolution."""

from __future__ import annotations

import json
from typing import Any

import zmq

from inspector.errors import ConfigError
from inspector.frame import FrameMeta
from inspector.transport import topics
from inspector.transport.messages import Decision

SCHEMA = 1


def result_header(meta: FrameMeta, d: Decision) -> dict[str, Any]:
    """The published header of one inspection's decision (the same decision the audit records)."""
    return {
        "schema": SCHEMA,
        "frame_id": meta.frame_id,
        "camera": meta.camera,
        "acquired_at": meta.acquired_at,
        "run_id": meta.run_id,
        "inspection": d.inspection,
        "verdict": d.verdict,
        "reason": d.reason,
        "scores": d.scores,
        "model": d.model,
        "latency_ms": d.latency_ms,
        "context": meta.context,
        "source": meta.source,
        "detail": d.detail,
    }


class Publisher:
    def __init__(self, ctx: zmq.Context, endpoint: str, *, secure=None):
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.SNDHWM, 10_000)
        if secure is not None:
            secure(self.sock)
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as e:
            self.sock.close(0)
            raise ConfigError(f"publish.endpoint: cannot bind {endpoint}: {e.strerror}") from None
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()

    def result(self, header: dict[str, Any]) -> None:
        self.sock.send_multipart([topics.topic(topics.RESULT, header["inspection"]),
                                  json.dumps(header, separators=(",", ":"), default=str).encode()])

    def attachment(self, kind: str, inspection: str, header: dict[str, Any], payload: bytes) -> None:
        body = {"schema": SCHEMA, "inspection": inspection, **header}
        self.sock.send_multipart([topics.topic(kind, inspection),
                                  json.dumps(body, separators=(",", ":"), default=str).encode(), payload])

    def close(self) -> None:
        self.sock.close()
