"""Typed messages between the daemon's processes, validated once when decoded.

Every message is a dataclass with ``to_wire()`` (multipart parts) and ``from_wire(parts)`` (raises
:class:`~inspector.errors.WireError`, and only that, on anything malformed). The JSON header and the
frame message themselves are defined in :mod:`inspector.transport.wire`; this module defines what
travels *about* frames:

=============  ===========================================  ====================================
message        route                                        content
=============  ===========================================  ====================================
``Result``     worker PUSH → supervisor PULL                frame meta + one ``Decision`` per
                                                            inspection + attachment payloads
``Event``      acquisition / worker PUSH → supervisor PULL  a named event with checked fields
``Command``    supervisor PUB → children SUB                an operation with checked fields
``Ready``      worker DEALER → acquisition ROUTER           one credit for one frame, tagged with
                                                            the acquisition generation it is for
=============  ===========================================  ====================================

Schemas are tables of ``field -> type`` checked in one place (:func:`_check_fields`); the
supervisor, the audit recorder and the publisher read the decoded dataclasses, never raw dicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

from inspector.errors import WireError
from inspector.frame import FrameMeta
from inspector.transport.wire import _buf, _check_meta, decode_header, encode_header

VERDICTS = ("pass", "reject", "error")
_NUM = (int, float)


def _is(value: Any, typ: Any) -> bool:
    if typ is float:
        return isinstance(value, _NUM) and not isinstance(value, bool) and math.isfinite(value)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(typ, tuple):
        return any(_is(value, t) for t in typ)
    if typ is None:
        return value is None
    return isinstance(value, typ)


def _check_fields(what: str, data: dict[str, Any], required: dict[str, Any], optional: dict[str, Any]) -> None:
    for name, typ in required.items():
        if name not in data:
            raise WireError(f"{what}: missing field {name!r}")
        if not _is(data[name], typ):
            raise WireError(f"{what}: field {name!r} has the wrong type ({type(data[name]).__name__})")
    for name, typ in optional.items():
        if name in data and data[name] is not None and not _is(data[name], typ):
            raise WireError(f"{what}: field {name!r} has the wrong type ({type(data[name]).__name__})")


# ---------------------------------------------------------------------------------------- decisions
@dataclass(slots=True)
class AttachmentRef:
    """An attachment of a decision: its topic kind, header, and the index of its payload part."""

    kind: str
    header: dict[str, Any]
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "header": self.header, "index": self.index}


@dataclass(slots=True)
class Decision:
    """One inspection's verdict on one frame: what is audited and published.

    ``reason`` is a machine-readable code (``out_of_focus``, ``image_quality``, ``unknown_material``,
    ``timeout``…; several joined by ``+``), set for every ``reject`` and ``error``; ``detail`` holds the
    inspection's own explanation.
    """

    inspection: str
    verdict: str
    reason: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)
    model: dict[str, Any] | None = None
    latency_ms: float = 0.0
    attachments: list[AttachmentRef] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"inspection": self.inspection, "verdict": self.verdict, "reason": self.reason,
                "scores": self.scores, "detail": self.detail, "stages": self.stages, "model": self.model,
                "latency_ms": self.latency_ms, "attachments": [a.to_dict() for a in self.attachments]}

    @classmethod
    def from_dict(cls, d: Any, n_payloads: int) -> Decision:
        if not isinstance(d, dict):
            raise WireError("decision is not an object")
        _check_fields("decision", d, {"inspection": str, "verdict": str},
                      {"reason": str, "scores": dict, "detail": dict, "stages": dict, "model": dict,
                       "latency_ms": float, "attachments": list})
        if d["verdict"] not in VERDICTS:
            raise WireError(f"decision verdict {d['verdict']!r} is not pass|reject|error")
        stages = d.get("stages") or {}
        if not all(isinstance(k, str) and _is(v, float) for k, v in stages.items()):
            raise WireError("decision stages must map names to seconds")
        model = d.get("model")
        if model is not None:
            _check_fields("decision model", model, {"name": str, "version": str}, {"sha256": str})
        refs = []
        for a in d.get("attachments") or []:
            if not isinstance(a, dict):
                raise WireError("decision attachment is not an object")
            _check_fields("decision attachment", a, {"kind": str, "header": dict, "index": int}, {})
            if not 0 <= a["index"] < n_payloads:
                raise WireError("decision attachment refers to a missing payload")
            refs.append(AttachmentRef(a["kind"], a["header"], a["index"]))
        return cls(inspection=d["inspection"], verdict=d["verdict"], reason=d.get("reason"),
                   scores=dict(d.get("scores") or {}), detail=dict(d.get("detail") or {}), stages=dict(stages),
                   model=model, latency_ms=float(d.get("latency_ms") or 0.0), attachments=refs)


@dataclass(slots=True)
class Result:
    """Worker → supervisor: the decisions on one frame, with attachment payloads (Grad-CAM PNGs…)."""

    meta: FrameMeta
    worker: str
    decisions: list[Decision]
    payloads: list[bytes] = field(default_factory=list)
    queue_s: float = 0.0
    #: a small picture of the frame for the operator page (never published on the line PUB)
    thumbnail: AttachmentRef | None = None

    def to_wire(self) -> list[bytes]:
        extra = {"thumbnail": self.thumbnail.to_dict()} if self.thumbnail is not None else {}
        head = encode_header("result", meta=self.meta.to_dict(), worker=self.worker, queue_s=self.queue_s,
                             results=[d.to_dict() for d in self.decisions], **extra)
        return [head, *self.payloads]

    @classmethod
    def from_wire(cls, parts: Sequence[Any]) -> Result:
        if not parts:
            raise WireError("empty result message")
        head = decode_header(_buf(parts[0]), expect="result")
        meta = _check_meta(head.get("meta"))
        _check_fields("result", head, {"worker": str, "results": list}, {"queue_s": float, "thumbnail": dict})
        payloads = [bytes(_buf(p)) for p in parts[1:]]
        decisions = [Decision.from_dict(r, len(payloads)) for r in head["results"]]
        thumb = None
        if head.get("thumbnail") is not None:
            t = head["thumbnail"]
            _check_fields("result thumbnail", t, {"kind": str, "header": dict, "index": int}, {})
            if not 0 <= t["index"] < len(payloads):
                raise WireError("result thumbnail refers to a missing payload")
            thumb = AttachmentRef(t["kind"], t["header"], t["index"])
        return cls(meta=meta, worker=head["worker"], decisions=decisions, payloads=payloads,
                   queue_s=float(head.get("queue_s") or 0.0), thumbnail=thumb)


# ---------------------------------------------------------------------------------------- events
#: event name -> (required fields, optional fields)
EVENT_SCHEMAS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # acquisition → supervisor
    "acquired": ({"frame_id": int, "acquired_at": float, "camera": str, "meta": dict, "generation": int},
                 {"acquire_s": float}),
    "dispatched": ({"frame_id": int, "worker": str, "generation": int}, {}),
    "dropped": ({"frame_id": int, "reason": str}, {"generation": int}),
    "stats": ({"queue_depth": int}, {"idle_workers": int, "stopped": bool, "generation": int}),
    "camera": ({"state": str}, {"error": str, "generation": int}),
    "bad_input": ({"input_kind": str, "message": str}, {"frame_id": int, "worker": str}),
    "broker_ready": ({"generation": int}, {}),
    # worker → supervisor
    "worker_ready": ({"worker": str, "ok": bool}, {"error": str, "models": dict}),
    "worker_idle": ({"worker": str, "generation": int}, {}),
    "worker_heartbeat": ({"worker": str}, {}),
    "model": ({"worker": str, "inspection": str, "ok": bool}, {"request_id": str, "model": dict, "error": str}),
}


@dataclass(slots=True)
class Event:
    name: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def to_wire(self) -> list[bytes]:
        _validate_event(self.name, self.fields)
        return [encode_header("event", event=self.name, **self.fields)]

    @classmethod
    def from_wire(cls, parts: Sequence[Any]) -> Event:
        if len(parts) != 1:
            raise WireError(f"event message has {len(parts)} parts, expected 1")
        head = decode_header(_buf(parts[0]), expect="event")
        name = head.pop("event", None)
        head.pop("v", None), head.pop("kind", None)
        _validate_event(name, head)
        return cls(name, head)


def _validate_event(name: Any, fields: dict[str, Any]) -> None:
    schema = EVENT_SCHEMAS.get(name) if isinstance(name, str) else None
    if schema is None:
        raise WireError(f"unknown event {name!r}")
    _check_fields(f"event {name!r}", fields, *schema)


def event(name: str, **fields: Any) -> list[bytes]:
    """Encode an event (validated against its schema before it leaves the process)."""
    return Event(name, fields).to_wire()


# ---------------------------------------------------------------------------------------- commands
#: op -> (required, optional). ``state`` carries a full run-state snapshot (see daemon.runstate).
COMMAND_SCHEMAS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "stop": ({}, {"target": str, "drain_s": float}),
    "state": ({"state": dict}, {}),
    "worker_gone": ({"worker": str}, {}),
    "broker_started": ({"generation": int}, {}),
    "reload": ({"inspection": str, "request_id": str}, {"version": str}),
}


@dataclass(slots=True)
class Command:
    op: str
    fields: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def to_wire(self) -> bytes:
        _validate_command(self.op, self.fields)
        return encode_header("command", op=self.op, **self.fields)

    @classmethod
    def from_wire(cls, data: bytes | memoryview) -> Command:
        head = decode_header(data, expect="command")
        op = head.pop("op", None)
        head.pop("v", None), head.pop("kind", None)
        _validate_command(op, head)
        return cls(op, head)


def _validate_command(op: Any, fields: dict[str, Any]) -> None:
    schema = COMMAND_SCHEMAS.get(op) if isinstance(op, str) else None
    if schema is None:
        raise WireError(f"unknown command {op!r}")
    _check_fields(f"command {op!r}", fields, *schema)


# ---------------------------------------------------------------------------------------- credit
@dataclass(slots=True)
class Ready:
    """One credit: the worker can take one frame from the broker of ``generation``.

    A credit sent to a broker that has since died may be delivered to its successor (ZeroMQ queues
    on the connecting side); the generation tag lets the new broker ignore it, so a worker never
    holds two credits.
    """

    generation: int
    KIND: ClassVar[str] = "ready"

    def to_wire(self) -> bytes:
        return encode_header("ready", generation=self.generation)

    @classmethod
    def from_wire(cls, data: bytes | memoryview) -> Ready:
        head = decode_header(data, expect="ready", max_bytes=4096)
        _check_fields("ready", head, {"generation": int}, {})
        return cls(head["generation"])
