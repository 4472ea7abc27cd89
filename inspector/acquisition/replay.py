"""Replay recorded image files (PNG/TIFF/BMP/JPEG, 8 and 16 bit) at a given frame rate."""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from inspector.acquisition.base import BadInputHook, Camera, Pacer, RawImage
from inspector.errors import CameraError, ConfigError, SourceExhausted

log = logging.getLogger("inspector.camera.replay")
EXTENSIONS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")


def list_images(path: str) -> list[Path]:
    """Files of a folder (sorted, image extensions only) or of a glob pattern (sorted)."""
    p = Path(os.path.expanduser(path))
    if any(c in path for c in "*?["):
        files = [Path(f) for f in sorted(glob.glob(os.path.expanduser(path))) if Path(f).is_file()]
    elif p.is_dir():
        try:
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in EXTENSIONS)
        except OSError as e:
            raise ConfigError(f"camera.path: cannot read replay folder {p}: {e}") from None
    elif p.is_file():
        files = [p]
    else:
        raise ConfigError(f"camera.path: replay folder or file not found: {p}")
    if not files:
        raise ConfigError(f"camera.path: no image files in {path}")
    return files


def read_image(f: Path) -> RawImage:
    """Decode one file; raises ValueError when it is not an image this driver can replay."""
    data = np.fromfile(f, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ValueError(f"{f.name} is not a readable image")
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{f.name}: unsupported sample type {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    elif img.ndim != 2:
        raise ValueError(f"{f.name}: unsupported image shape {img.shape}")
    if img.ndim == 3:
        if img.dtype != np.uint8:  # frames carry RGB8 only; 16-bit colour is scaled to 8 bits
            img = (img >> 8).astype(np.uint8)
        return RawImage(np.ascontiguousarray(img), "RGB8", f.name)
    return RawImage(np.ascontiguousarray(img), "Mono8" if img.dtype == np.uint8 else "Mono16", f.name)


class ReplayCamera(Camera):
    driver = "replay"

    def __init__(self, camera_id: str, *, path: str, fps: float, loop: bool = True,
                 on_bad_input: BadInputHook | None = None):
        super().__init__(camera_id, on_bad_input=on_bad_input)
        self.path = path
        self.fps = fps
        self.loop = loop
        self._files: list[Path] = []
        self._i = 0
        self._pacer = Pacer(fps)
        self._good_in_pass = 0

    def open(self) -> None:
        self._files = list_images(self.path)
        self._i = 0
        log.info("replaying %d file(s) from %s at %.3g fps", len(self._files), self.path, self.fps)

    def read(self, timeout: float) -> RawImage | None:
        if not self._files:
            raise CameraError("replay camera is not open")
        if not self._pacer.wait(timeout):
            return None
        for _ in range(len(self._files)):
            if self._i >= len(self._files):
                if not self.loop:
                    raise SourceExhausted(f"replay of {self.path} finished (camera.loop is false)")
                if self._good_in_pass == 0:
                    raise CameraError(f"no readable image among the {len(self._files)} file(s) of {self.path}")
                self._i, self._good_in_pass = 0, 0
            f = self._files[self._i]
            self._i += 1
            try:
                raw = read_image(f)
            except (ValueError, OSError) as e:
                self.bad_input("unreadable_file", f"skipping {f}: {e}")
                continue
            self._good_in_pass += 1
            return raw
        return None

    def close(self) -> None:
        self._files = []
