"""Camera drivers behind one interface (see base.Camera). ``open_camera`` builds one from the config."""

from __future__ import annotations

from inspector.acquisition.base import BadInputHook, Camera, RawImage
from inspector.config import CameraConfig
from inspector.errors import ConfigError

__all__ = ["Camera", "RawImage", "open_camera", "make_camera"]


def make_camera(cfg: CameraConfig, camera_id: str, on_bad_input: BadInputHook | None = None) -> Camera:
    """Build (not open) the configured driver; configuration problems raise ConfigError here."""
    if cfg.driver == "genicam":
        from inspector.acquisition.genicam import GenICamCamera

        return GenICamCamera(camera_id, cti=cfg.cti, device=cfg.device, width=cfg.width, height=cfg.height,
                             pixel_format=cfg.pixel_format, fps=cfg.fps, on_bad_input=on_bad_input)
    if cfg.driver == "replay":
        from inspector.acquisition.replay import ReplayCamera, list_images

        list_images(cfg.path or "")  # fail fast on a missing/unreadable folder
        return ReplayCamera(camera_id, path=cfg.path or "", fps=cfg.fps, loop=cfg.loop, on_bad_input=on_bad_input)
    if cfg.driver == "synthetic":
        from inspector.acquisition.synthetic import SyntheticCamera

        return SyntheticCamera(camera_id, scene=cfg.scene, width=cfg.width or 1280, height=cfg.height or 960,
                               fps=cfg.fps, seed=cfg.seed, lot=cfg.lot, classes=cfg.classes,
                               on_bad_input=on_bad_input)
    raise ConfigError(f"camera.driver: unknown driver {cfg.driver!r}")


def open_camera(cfg: CameraConfig, camera_id: str, on_bad_input: BadInputHook | None = None) -> Camera:
    cam = make_camera(cfg, camera_id, on_bad_input)
    cam.open()
    return cam
