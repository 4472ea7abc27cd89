"""Fuzzing the transport wire decoders (inspector/transport/wire.py) with arbitrary multipart messages:
every decoder returns or raises WireError, nothing else, and never unpickles."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from inspector.errors import WireError
from inspector.transport.messages import Command, Event, Ready, Result

wire = pytest.importorskip("inspector.transport.wire", reason="transport wire format not present in this build")

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# broad generators: no shrinking phase (keeps the suite fast; failures print the example)
FUZZ_NO_SHRINK = settings(FUZZ, max_examples=120, phases=[Phase.explicit, Phase.reuse, Phase.generate])
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                      max_leaves=15)
META_KEYS = ["camera", "frame_id", "acquired_at", "width", "height", "pixel_format", "run_id", "context", "source"]


def meta_like():
    good = {"camera": st.just("cam0"), "frame_id": st.integers(0, 10), "acquired_at": st.just(1.7e9),
            "width": st.integers(1, 4), "height": st.integers(1, 4), "pixel_format": st.sampled_from(["Mono8", "RGB8"]),
            "run_id": st.just("r"), "context": st.just({}), "source": st.none()}
    return st.fixed_dictionaries({k: good[k] | values for k in META_KEYS}) | st.dictionaries(
        st.sampled_from(META_KEYS), values, max_size=9) | values


def header_like(kind: str):
    fields = {
        "frame": {"dtype": st.sampled_from(["uint8", "uint16", "float64", "object", "<u2"]) | values,
                  "shape": st.lists(st.integers(-2, 5) | values, max_size=4) | values,
                  "strides": st.lists(st.integers(-2, 40) | values, max_size=4) | values, "meta": meta_like()},
        "result": {"meta": meta_like(), "worker": st.text(max_size=4) | values,
                   "results": st.lists(st.dictionaries(st.sampled_from(["inspection", "verdict", "scores", "attachments"]),
                                                       values | st.lists(st.dictionaries(
                                                           st.sampled_from(["index", "kind", "header"]), values,
                                                           max_size=3), max_size=2), max_size=4), max_size=3) | values},
        "event": {"event": st.sampled_from(["acquired", "dropped", "stats", "bogus"]) | values,
                  "frame_id": st.integers(-1, 5) | values, "reason": values, "generation": st.integers(0, 3) | values,
                  "queue_depth": st.integers(0, 9) | values},
        "command": {"op": st.sampled_from(["stop", "state", "reload", "rm"]) | values,
                    "state": st.dictionaries(st.text(max_size=5), values, max_size=3) | values,
                    "inspection": values, "request_id": values},
        "ready": {"generation": st.integers(-1, 3) | values},
    }[kind]
    return st.fixed_dictionaries({"v": st.sampled_from([1, 1, 1, 2, "1", True]) | values,
                                  "kind": st.sampled_from([kind, kind, "frame", "other"]) | values},
                                 optional=fields)


def _enc(obj) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


def _only_wire_error(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except WireError as e:
        assert str(e)
        return None


parts_any = st.lists(st.binary(max_size=64), max_size=4)


@FUZZ
@given(st.binary(max_size=512))
@example(b"\x80\x04\x95\x00")  # pickle protocol 4 header: just bytes to us
@example(b"[" * 10_000)
def test_decode_header_and_command_on_arbitrary_bytes(data: bytes) -> None:
    _only_wire_error(wire.decode_header, data)
    _only_wire_error(Command.from_wire, data)
    _only_wire_error(Ready.from_wire, data)


@FUZZ
@given(parts_any)
def test_multipart_decoders_on_arbitrary_frames(parts: list[bytes]) -> None:
    _only_wire_error(wire.decode_frame, parts)
    _only_wire_error(Result.from_wire, parts)
    _only_wire_error(Event.from_wire, parts)


@FUZZ_NO_SHRINK
@given(header_like("frame"), st.binary(max_size=128))
@example({"v": 1, "kind": "frame", "dtype": "uint8", "shape": [2, 2], "strides": [2, 1],
          "meta": {"camera": "c", "frame_id": 1, "acquired_at": 1.0, "width": 2, "height": 2,
                   "pixel_format": "Mono8", "context": [1]}}, b"\x00" * 4)
def test_decode_frame_on_structured_headers(head: dict, pixels: bytes) -> None:
    f = _only_wire_error(wire.decode_frame, [_enc(head), pixels])
    if f is not None:
        assert f.pixels.nbytes == len(pixels) and f.pixels.dtype in (np.uint8, np.uint16)
        assert f.pixels.shape[:2] == (f.meta.height, f.meta.width)


@FUZZ_NO_SHRINK
@given(header_like("result"), st.lists(st.binary(max_size=16), max_size=3))
def test_decode_result_on_structured_headers(head: dict, payloads: list[bytes]) -> None:
    got = _only_wire_error(Result.from_wire, [_enc(head), *payloads])
    if got is not None:
        assert len(got.payloads) == len(payloads)
        for d in got.decisions:
            assert d.verdict in ("pass", "reject", "error")
            assert all(0 <= a.index < len(payloads) for a in d.attachments)


@settings(FUZZ, max_examples=120)
@given(st.sampled_from(["event", "command", "ready"]).flatmap(header_like))
def test_decode_event_and_command_on_structured_headers(head: dict) -> None:
    _only_wire_error(Event.from_wire, [_enc(head)])
    _only_wire_error(Command.from_wire, _enc(head))
    _only_wire_error(Ready.from_wire, _enc(head))


_META = {"camera": "c", "frame_id": 1, "acquired_at": 1.0, "width": 2, "height": 2, "pixel_format": "Mono8"}
KNOWN_DEFECTS = [  # found by this fuzzer, fixed in wire.py: regression cases
    pytest.param(Command.from_wire, b'{"v":1,"kind":"command","op":"stop","x":' + b"9" * 5000 + b"}",
                 id="int-over-4300-digits-ValueError"),
    pytest.param(wire.decode_frame, [_enc({"v": 1, "kind": "frame", "dtype": "uint8", "shape": [2, 2], "strides": [2, 1],
                                        "meta": {**_META, "frame_id": 1e999}}), b"\x00" * 4],
                 id="frame_id-inf-OverflowError"),
    pytest.param(Result.from_wire, [_enc({"v": 1, "kind": "result", "worker": "w", "meta": _META,
                                         "results": [{"inspection": "q", "verdict": "pass", "attachments": 5}]})],
                 id="attachments-not-a-list-TypeError"),
    pytest.param(wire.decode_frame, [_enc({"v": 1, "kind": "frame", "dtype": []}), b""], id="dtype-unhashable-TypeError"),
]


@pytest.mark.parametrize("decoder, message", KNOWN_DEFECTS)
def test_known_decoder_defects_raise_wire_error(decoder: str, message) -> None:
    with pytest.raises(WireError):
        decoder(message)


@pytest.mark.parametrize("meta", [{**_META, "context": "ab"}, {**_META, "context": [1]}, {**_META, "width": "x"},
                                  {**_META, "acquired_at": float("nan")}, {**_META, "frame_id": -1}])
def test_bad_frame_meta_is_a_wire_error(meta: dict) -> None:
    head = {"v": 1, "kind": "frame", "dtype": "uint8", "shape": [2, 2], "strides": [2, 1], "meta": meta}
    with pytest.raises(WireError):
        wire.decode_frame([_enc(head), b"\x00" * 4])


def test_a_valid_frame_round_trips() -> None:
    from inspector.frame import Frame, FrameMeta

    px = np.arange(12, dtype=np.uint16).reshape(3, 4)
    f = Frame(pixels=px, meta=FrameMeta.from_dict({**_META, "width": 4, "height": 3, "pixel_format": "Mono16"}))
    got = wire.decode_frame([bytes(p) for p in wire.encode_frame(f)])
    assert np.array_equal(got.pixels, px) and got.meta.frame_id == 1
