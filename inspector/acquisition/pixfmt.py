"""GenICam pixel formats (PFNC names) to numpy arrays, copying out of the transport buffer."""

from __future__ import annotations

import numpy as np

from inspector.errors import BadFrameError

_BAYER_8 = {"BayerRG8": "COLOR_BayerRG2RGB", "BayerGR8": "COLOR_BayerGR2RGB",
            "BayerGB8": "COLOR_BayerGB2RGB", "BayerBG8": "COLOR_BayerBG2RGB"}
SUPPORTED = ("Mono8", "Mono10", "Mono12", "Mono16", "RGB8", "BGR8", "RGBa8", "BGRa8", *_BAYER_8)


def convert(data: np.ndarray, width: int, height: int, pixel_format: str) -> tuple[np.ndarray, str]:
    """(pixels, frame pixel format) from a 1-D buffer. Always returns a new array (own memory)."""
    data = np.asarray(data)
    pf = pixel_format
    n = width * height
    if width <= 0 or height <= 0:
        raise BadFrameError(f"invalid frame size {width}x{height}", "bad_frame")
    if pf == "Mono8":
        return _take(data, np.uint8, n).reshape(height, width).copy(), "Mono8"
    if pf in ("Mono10", "Mono12", "Mono16"):
        # unpacked 10/12-bit formats are little-endian 16-bit containers
        return _take(data, np.uint16, n).reshape(height, width).copy(), "Mono16"
    if pf in ("RGB8", "BGR8", "RGBa8", "BGRa8"):
        ch = 4 if pf.endswith("a8") else 3
        px = _take(data, np.uint8, n * ch).reshape(height, width, ch)[:, :, :3]
        if pf.startswith("BGR"):
            px = px[:, :, ::-1]
        return np.ascontiguousarray(px), "RGB8"  # a copy: the slice/flip is not contiguous
    if pf in _BAYER_8:
        import cv2

        raw = _take(data, np.uint8, n).reshape(height, width)
        return cv2.cvtColor(raw, getattr(cv2, _BAYER_8[pf])), "RGB8"
    raise BadFrameError(f"unsupported pixel format {pf!r} (supported: {', '.join(SUPPORTED)})", "pixel_format")


def _take(data: np.ndarray, dtype: type, count: int) -> np.ndarray:
    if data.dtype != dtype:
        raw = data.view(np.uint8) if data.dtype.itemsize == 1 or data.flags.c_contiguous else data
        if raw.dtype == np.uint8 and np.dtype(dtype).itemsize > 1:
            if raw.size < count * np.dtype(dtype).itemsize:
                raise BadFrameError(f"buffer of {raw.size} bytes is too short for {count} pixels", "bad_frame")
            data = raw[: count * np.dtype(dtype).itemsize].view(dtype)
        else:
            data = data.astype(dtype, copy=False)
    if data.size < count:
        raise BadFrameError(f"buffer holds {data.size} values, frame needs {count}", "bad_frame")
    return data[:count]
