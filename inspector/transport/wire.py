"""Wire format: multipart ``[header_json, buffer…]`` with a versioned JSON header. Never pickle.

Frame message (acquisition → worker)::

    [b'{"v":1,"kind":"frame","dtype":"uint8","shape":[960,1280],"strides":[1280,1],"meta":{…}}', <pixels>]

The pixel buffer is sent without copying (``copy=False`` on a C-contiguous array) and decoded
without copying (``np.frombuffer`` on the received ZeroMQ frame's buffer).

Results, events, commands and credits use the same header and are typed in
:mod:`inspector.transport.messages` (``Result``, ``Event``, ``Command``, ``Ready``)::

    [b'{"v":1,"kind":"result","meta":{…},"worker":"w0-1","results":[{decision}, …]}', <payload>, …]
    [b'{"v":1,"kind":"event","event":"acquired", …}']
    b'{"v":1,"kind":"command","op":"state","state":{…}}'
    b'{"v":1,"kind":"ready","generation":3}'

Every decoder validates what it reads and raises :class:`~inspector.errors.WireError` — and only
that — on anything malformed, so a bad peer can never crash a process.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np

from inspector.errors import WireError
from inspector.frame import PIXEL_FORMATS, Frame, FrameMeta

VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_PIXELS_BYTES = 256 * 1024 * 1024
DTYPES = {"uint8": np.uint8, "uint16": np.uint16}
KINDS = ("frame", "result", "event", "ready", "command")


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def encode_header(kind: str, /, **fields: Any) -> bytes:
    if "v" in fields or "kind" in fields:
        raise ValueError("'v' and 'kind' are reserved header fields")
    return _dumps({"v": VERSION, "kind": kind, **fields})


def decode_header(data: bytes | memoryview, *, expect: str | None = None,
                  max_bytes: int = MAX_HEADER_BYTES) -> dict[str, Any]:
    """Parse and check a header frame; raise WireError when it is not a v1 header of the expected kind."""
    if len(data) > max_bytes:
        raise WireError(f"header of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    try:
        obj = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise WireError(f"header is not UTF-8 JSON: {e}") from None
    if not isinstance(obj, dict):
        raise WireError("header is not a JSON object")
    if obj.get("v") != VERSION:
        raise WireError(f"unsupported wire version {obj.get('v')!r} (this build speaks v{VERSION})")
    kind = obj.get("kind")
    if kind not in KINDS or (expect is not None and kind != expect):
        raise WireError(f"unexpected message kind {kind!r}" + (f", expected {expect!r}" if expect else ""))
    return obj


# ---------------------------------------------------------------- frames
def encode_frame(frame: Frame) -> list[Any]:
    """Multipart parts for a frame; the pixel buffer is the array's own memory (no copy)."""
    px = frame.pixels
    if px.dtype.name not in DTYPES:
        raise WireError(f"cannot send pixels of dtype {px.dtype}")
    if not px.flags.c_contiguous:
        px = np.ascontiguousarray(px)
    header = encode_header(
        "frame", dtype=px.dtype.name, shape=list(px.shape), strides=list(px.strides),
        meta=frame.meta.to_dict(),
    )
    return [header, memoryview(px).cast("B")]


def _check_meta(meta: Any) -> FrameMeta:
    if not isinstance(meta, dict):
        raise WireError("frame header has no meta object")
    try:
        m = FrameMeta.from_dict(meta)
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise WireError(f"frame meta is malformed: {e!r}") from None
    if not math.isfinite(m.acquired_at) or m.frame_id < 0:
        raise WireError("frame meta has an invalid frame_id or acquired_at")
    if m.pixel_format not in PIXEL_FORMATS:
        raise WireError(f"unknown pixel format {m.pixel_format!r}")
    return m


def decode_frame(parts: Sequence[Any], *, max_bytes: int = MAX_PIXELS_BYTES) -> Frame:
    """Frame from ``[header, pixels]`` parts (bytes, memoryview or zmq.Frame). Zero-copy where possible."""
    if len(parts) != 2:
        raise WireError(f"frame message has {len(parts)} parts, expected 2")
    head = decode_header(_buf(parts[0]), expect="frame")
    dtype_name = head.get("dtype")
    if not isinstance(dtype_name, str) or dtype_name not in DTYPES:
        raise WireError(f"pixel dtype {dtype_name!r} not allowed (allowed: {', '.join(DTYPES)})")
    dtype = np.dtype(DTYPES[dtype_name])
    shape = head.get("shape")
    if (not isinstance(shape, list) or len(shape) not in (2, 3)
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 1 << 16 for s in shape)):
        raise WireError(f"invalid frame shape {shape!r}")
    if len(shape) == 3 and shape[2] not in (1, 3):
        raise WireError(f"invalid channel count {shape[2]}")
    expected_strides = []
    step = dtype.itemsize
    for s in reversed(shape):
        expected_strides.insert(0, step)
        step *= s
    if head.get("strides") != expected_strides:
        raise WireError(f"strides {head.get('strides')!r} are not C-contiguous for shape {shape}")
    nbytes = step
    if nbytes > max_bytes:
        raise WireError(f"frame of {nbytes} bytes exceeds the {max_bytes}-byte limit")
    buf = _buf(parts[1])
    if len(buf) != nbytes:
        raise WireError(f"pixel buffer has {len(buf)} bytes, header says {nbytes}")
    meta = _check_meta(head.get("meta"))
    if (meta.height, meta.width) != (shape[0], shape[1]):
        raise WireError(f"meta size {meta.width}x{meta.height} does not match shape {shape}")
    pixels = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return Frame(pixels=pixels, meta=meta)


def _buf(part: Any) -> memoryview:
    if isinstance(part, (bytes, bytearray)):
        return memoryview(part)
    if isinstance(part, memoryview):
        return part.cast("B") if part.format != "B" or part.ndim != 1 else part
    b = getattr(part, "buffer", None)  # zmq.Frame
    if b is not None:
        return memoryview(b).cast("B")
    raise WireError(f"message part of type {type(part).__name__} is not a buffer")
