"""GenICam cameras through harvesters and any GenTL producer (.cti).

``cti: null`` selects the simulated producer shipped inside the ``genicam`` wheel (``viky.cti``),
so the whole path runs without a camera. Every fetch has a timeout (harvesters' ``fetch()`` without
one can block forever), and the payload is copied before the buffer goes back to the producer.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from inspector.acquisition.base import BadInputHook, Camera, RawImage
from inspector.acquisition.pixfmt import convert
from inspector.errors import BadFrameError, CameraError, ConfigError

log = logging.getLogger("inspector.camera.genicam")


def default_cti() -> Path:
    """The simulated GenTL producer inside the genicam wheel."""
    try:
        import genicam
    except ImportError as e:  # pragma: no cover - genicam is a hard dependency
        raise ConfigError(f"camera.cti is null but the genicam package is not importable: {e}") from None
    p = Path(os.path.dirname(genicam.__file__)) / "viky.cti"
    if not p.is_file():
        raise ConfigError(f"camera.cti is null but {p} is missing (pin genicam==1.6.0, which ships viky.cti)")
    return p


class GenICamCamera(Camera):
    driver = "genicam"

    def __init__(self, camera_id: str, *, cti: str | None, device: int | str = 0,
                 width: int | None = None, height: int | None = None, pixel_format: str | None = None,
                 fps: float | None = None, on_bad_input: BadInputHook | None = None):
        super().__init__(camera_id, on_bad_input=on_bad_input)
        self.cti = Path(os.path.expanduser(cti)) if cti else default_cti()
        if not self.cti.is_file():
            raise ConfigError(f"camera.cti: GenTL producer file not found: {self.cti}")
        self.device = device
        self.settings = {"Width": width, "Height": height, "PixelFormat": pixel_format,
                         "AcquisitionFrameRate": fps}
        self._h: Any = None
        self._ia: Any = None
        self._timeout_exc: tuple[type[BaseException], ...] = (TimeoutError,)
        self._incomplete = _Counter()

    # ------------------------------------------------------------------ open
    def open(self) -> None:
        from harvesters.core import Harvester

        try:
            from genicam.gentl import TimeoutException

            self._timeout_exc = (TimeoutException, TimeoutError)
        except ImportError:  # pragma: no cover
            pass
        h = Harvester()
        try:
            h.add_file(str(self.cti), check_existence=True, check_validity=True)
            h.update()
        except Exception as e:
            h.reset()
            raise CameraError(f"cannot load GenTL producer {self.cti}: {e}") from None
        for _ in range(3):  # producers enumerate lazily; a device held by another process may reappear
            if h.device_info_list:
                break
            time.sleep(0.5)
            h.update()
        if not h.device_info_list:
            h.reset()
            raise CameraError(f"no GenICam device found through {self.cti}")
        try:
            index = self._device_index(h)
            ia = h.create(index)
        except CameraError:
            h.reset()
            raise
        except Exception as e:
            h.reset()
            raise CameraError(f"cannot open GenICam device {self.device!r}: {e}") from None
        self._h, self._ia = h, ia
        try:
            self._incomplete = _Counter()
            ia.add_callback(ia.Events.INCOMPLETE_BUFFER, self._incomplete.callback())
            self._configure(ia.remote_device.node_map)
            ia.start()
        except CameraError:
            self.close()
            raise
        except Exception as e:
            self.close()
            raise CameraError(f"cannot start acquisition on {self.device!r}: {e}") from None
        info = h.device_info_list[index]
        log.info("opened GenICam device %s (%s %s) via %s", info.id_, info.vendor, info.model, self.cti.name)

    def _device_index(self, h: Any) -> int:
        devs = h.device_info_list
        if isinstance(self.device, int) or (isinstance(self.device, str) and self.device.isdigit()):
            i = int(self.device)
            if not 0 <= i < len(devs):
                raise CameraError(f"camera.device {i} out of range: {len(devs)} device(s) found")
            return i
        for i, d in enumerate(devs):
            if self.device in (d.id_, d.serial_number, getattr(d, "user_defined_name", None)):
                return i
        raise CameraError(f"no GenICam device with id/serial {self.device!r} "
                          f"(found: {', '.join(d.id_ for d in devs)})")

    def _configure(self, nm: Any) -> None:
        """Set the configured nodes the device has; a value it refuses is a clear error."""
        fps = self.settings["AcquisitionFrameRate"]
        if fps is not None and hasattr(nm, "AcquisitionFrameRateEnable"):
            try:
                nm.AcquisitionFrameRateEnable.value = True
            except Exception:  # optional node on many cameras
                pass
        for node, value in self.settings.items():
            if value is None:
                continue
            if not hasattr(nm, node):
                log.info("device has no %s node; leaving it at its default", node)
                continue
            try:
                getattr(nm, node).value = value
            except Exception as e:
                allowed = ""
                if node == "PixelFormat":
                    allowed = f" (device offers: {', '.join(getattr(nm.PixelFormat, 'symbolics', ()))})"
                raise CameraError(f"camera refused {node}={value!r}{allowed}: {e}") from None

    # ------------------------------------------------------------------ read
    def read(self, timeout: float) -> RawImage | None:
        """One frame, or None after ``timeout`` seconds in total.

        harvesters' ``fetch(timeout=t)`` bounds each attempt, not the call: it re-queues incomplete
        buffers and tries again, so under packet loss it can block for ever and the incomplete
        buffers are never seen. ``try_fetch`` returns None for a timeout *and* for an incomplete
        buffer (which harvesters re-queues and signals through the INCOMPLETE_BUFFER callback), so
        this loop bounds the whole call and reports every incomplete buffer as a bad input.
        """
        if self._ia is None:
            raise CameraError("camera is not open")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            seen = self._incomplete.count
            try:
                buf = self._ia.try_fetch(timeout=remaining)
                if buf is None:
                    if self._incomplete.count > seen:
                        self.bad_input("incomplete_buffer", "dropped an incomplete buffer from the device")
                        continue
                    return None
                with buf:
                    comp = buf.payload.components[0]
                    # copy out before the with-block requeues the buffer to the producer
                    pixels, pf = convert(comp.data, int(comp.width), int(comp.height), str(comp.data_format))
            except self._timeout_exc:
                return None
            except BadFrameError as e:
                self.bad_input(e.kind, f"dropped a buffer: {e}")
                return None
            except Exception as e:
                raise CameraError(f"fetch failed: {type(e).__name__}: {e}") from None
            return RawImage(pixels=pixels, pixel_format=pf)

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        ia, h = self._ia, self._h
        self._ia = self._h = None
        for step in (lambda: ia and ia.stop(), lambda: ia and ia.destroy(), lambda: h and h.reset()):
            try:
                step()
            except Exception as e:  # closing a vanished device must not hang or raise
                log.debug("while closing: %s", e)


class _Counter:
    """Counts harvesters' INCOMPLETE_BUFFER notifications (emitted on the fetching thread)."""

    def __init__(self) -> None:
        self.count = 0

    def callback(self) -> Any:
        from harvesters.core import Callback

        counter = self

        class _OnIncomplete(Callback):
            def emit(self, context: object | None = None) -> None:
                counter.count += 1

        return _OnIncomplete()
