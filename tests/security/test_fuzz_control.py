"""Fuzzing the control-channel decoders: any input either decodes to a valid request or raises WireError."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inspector.control.protocol import (
    COMMANDS,
    MAX_MESSAGE_BYTES,
    ControlRequest,
    decode_reply,
    decode_request,
    encode_reply,
)
from inspector.errors import WireError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                              max_size=4),
                           max_leaves=20)
arg_keys = st.sampled_from(["lot", "recipe", "excipient", "inspection", "version", "force", ""])
near_valid = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 0, 2, "1", True, 1.0, None]),
     "cmd": st.sampled_from([*COMMANDS, "shutdown", "", None, 7]),
     "args": st.one_of(st.dictionaries(arg_keys, json_values | st.text(max_size=250), max_size=3), json_values),
     "user": st.one_of(st.text(max_size=210), json_scalars)},
    optional={"extra": json_values},
)


def _check_request(data: bytes) -> None:
    try:
        r = decode_request(data)
    except WireError as e:
        msg = str(e)
        assert msg and "\n" not in msg  # one-line reason
        return
    assert isinstance(r, ControlRequest) and r.v == 1 and r.cmd in COMMANDS
    assert isinstance(r.user, str) and 0 < len(r.user) <= 200
    json.dumps(r.audit_payload())  # what gets audited is plain JSON data


@FUZZ
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\x80\x04\x95")  # a pickle header is just bytes here
@example(b"[" * 100_000)
@example(b'{"v":1,"cmd":"status","user":"u","args":{"a":' + b"1" * 5000 + b"}}")
def test_decode_request_arbitrary_bytes(data: bytes) -> None:
    _check_request(data)


@FUZZ
@given(json_values)
def test_decode_request_arbitrary_json(obj) -> None:
    _check_request(json.dumps(obj).encode())


@FUZZ
@given(near_valid)
def test_decode_request_near_valid_objects(obj) -> None:
    _check_request(json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=1024) | json_values.map(lambda o: json.dumps(o).encode()))
def test_decode_reply_never_raises_anything_but_wire_error(data: bytes) -> None:
    try:
        r = decode_reply(data)
    except WireError:
        return
    assert r.v == 1 and isinstance(r.ok, bool)


@settings(FUZZ, max_examples=100)
@given(st.booleans(), st.dictionaries(st.text(max_size=10), json_values, max_size=5), st.none() | st.text(max_size=50))
def test_encode_reply_always_produces_a_decodable_reply(ok, result, error) -> None:
    data = encode_reply(ok, result, error)
    assert len(data) <= MAX_MESSAGE_BYTES
    r = decode_reply(data)
    try:
        json.dumps(result, allow_nan=False)
    except ValueError:  # inf in the result: not JSON data, so the reply says so instead of crashing
        assert r.ok is False and r.error.startswith("internal error")
        return
    assert r.ok is ok and r.result == result and r.error == error
