import json

import numpy as np
import pytest

from inspector.errors import WireError
from inspector.frame import Frame, FrameMeta
from inspector.transport import topics, wire
from inspector.transport.messages import AttachmentRef, Command, Decision, Event, Ready, Result, event


def _frame(shape=(48, 64), dtype=np.uint8, fmt="Mono8"):
    px = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    meta = FrameMeta("cam0", 7, 1700000000.5, shape[1], shape[0], fmt, run_id="r1", context={"lot": "L1"})
    return Frame(px, meta)


@pytest.mark.parametrize("shape,dtype,fmt", [((48, 64), np.uint8, "Mono8"), ((48, 64), np.uint16, "Mono16"),
                                             ((48, 64, 3), np.uint8, "RGB8")])
def test_frame_roundtrip_preserves_pixels_and_meta(shape, dtype, fmt):
    f = _frame(shape, dtype, fmt)
    parts = wire.encode_frame(f)
    g = wire.decode_frame([bytes(parts[0]), bytes(parts[1])])
    assert g.pixels.dtype == dtype and g.pixels.shape == shape
    np.testing.assert_array_equal(g.pixels, f.pixels)
    assert g.meta == f.meta


def test_encode_frame_does_not_copy_contiguous_pixels():
    f = _frame()
    _, buf = wire.encode_frame(f)
    assert np.shares_memory(np.frombuffer(buf, np.uint8), f.pixels)


def test_decode_is_zero_copy_on_the_received_buffer():
    f = _frame()
    header, buf = wire.encode_frame(f)
    raw = bytearray(bytes(buf))
    g = wire.decode_frame([header, raw])
    raw[0] = 255
    assert g.pixels[0, 0] == 255  # a view on the message buffer, not a copy


def test_non_contiguous_pixels_are_sent_contiguous():
    base = np.zeros((48, 128), np.uint8)
    base[:, ::2] = 9
    view = base[:, ::2]
    f = Frame(view, FrameMeta("c", 0, 1.0, 64, 48, "Mono8"))
    g = wire.decode_frame([bytes(p) for p in wire.encode_frame(f)])
    np.testing.assert_array_equal(g.pixels, view)


def _header(**over):
    h = {"v": 1, "kind": "frame", "dtype": "uint8", "shape": [2, 3], "strides": [3, 1],
         "meta": {"camera": "c", "frame_id": 1, "acquired_at": 1.0, "width": 3, "height": 2, "pixel_format": "Mono8"}}
    h.update(over)
    return json.dumps(h).encode()


@pytest.mark.parametrize("parts,msg", [
    ([b"not json", b"123456"], "JSON"),
    ([_header(v=2), b"123456"], "version"),
    ([_header(kind="result"), b"123456"], "kind"),
    ([_header(dtype="float64"), b"123456"], "dtype"),
    ([_header(dtype="object"), b"123456"], "dtype"),
    ([_header(shape=[2, -3]), b"123456"], "shape"),
    ([_header(strides=[1, 2]), b"123456"], "strides"),
    ([_header(), b"12345"], "bytes"),
    ([_header()], "parts"),
    ([_header(meta={"camera": "c"}), b"123456"], "meta"),
    ([_header(shape=[3, 2], strides=[2, 1]), b"123456"], "match"),
    ([b"[1,2]", b"x"], "object"),
])
def test_malformed_frames_raise_wire_error_only(parts, msg):
    with pytest.raises(WireError, match=msg):
        wire.decode_frame(parts)


def test_oversized_frame_is_refused_before_reading_it():
    with pytest.raises(WireError, match="limit"):
        wire.decode_frame([_header(shape=[4000, 4000], strides=[4000, 1],
                                   meta={"camera": "c", "frame_id": 1, "acquired_at": 1.0, "width": 4000,
                                         "height": 4000, "pixel_format": "Mono8"}), b""], max_bytes=1000)


def test_result_roundtrip_and_attachment_index_checked():
    meta = _frame().meta
    d = Decision("quality", "reject", reason="out_of_focus", scores={"focus": 1.0},
                 attachments=[AttachmentRef("gradcam", {}, 0)])
    got = Result.from_wire(Result(meta, "w0-0", [d], [b"PNG"], queue_s=0.5).to_wire())
    assert got.meta == meta and got.payloads == [b"PNG"] and got.queue_s == 0.5
    assert got.decisions[0].verdict == "reject" and got.decisions[0].reason == "out_of_focus"
    with pytest.raises(WireError, match="attachment"):
        Result.from_wire(Result(meta, "w0-0", [d], []).to_wire())
    d.verdict = "maybe"
    with pytest.raises(WireError, match="verdict"):
        Result.from_wire(Result(meta, "w0-0", [d], [b"PNG"]).to_wire())


def test_commands_and_events_validated_against_their_schemas():
    snap = {"revision": 1, "context": {"lot": "L2"}}
    assert Command.from_wire(Command("state", {"state": snap}).to_wire()).fields["state"] == snap
    with pytest.raises(WireError, match="unknown command"):
        Command.from_wire(wire.encode_header("command", op="format_disk"))
    with pytest.raises(WireError, match="missing field 'state'"):
        Command.from_wire(wire.encode_header("command", op="state"))
    with pytest.raises(WireError, match="unknown event"):
        Event.from_wire([wire.encode_header("event", event="nonsense")])
    with pytest.raises(WireError, match="wrong type"):
        Event.from_wire([wire.encode_header("event", event="dropped", frame_id="3", reason="queue_full")])
    assert Event.from_wire(event("dropped", frame_id=3, reason="queue_full"))["frame_id"] == 3
    with pytest.raises(WireError):  # a sender cannot emit what a receiver would refuse
        event("acquired", frame_id=1)


def test_credit_carries_its_generation():
    assert Ready.from_wire(Ready(4).to_wire()).generation == 4
    with pytest.raises(WireError):
        Ready.from_wire(wire.encode_header("ready"))


def test_topics_are_exact_per_inspection():
    t = topics.topic("result", "quality")
    assert t.startswith(topics.subscription("result.quality"))
    assert not topics.topic("result", "qualityx").startswith(topics.subscription("result.quality"))
    assert topics.topic("result", "qualityx").startswith(topics.subscription("result"))
    assert topics.topic_name(t) == "result.quality"
