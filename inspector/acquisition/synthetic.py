"""In-process synthetic microscope frames (the demo camera): SEM excipient scenes or tablet surfaces."""

from __future__ import annotations

import logging

import numpy as np

from inspector.acquisition.base import BadInputHook, Camera, Pacer, RawImage
from inspector.errors import ConfigError

log = logging.getLogger("inspector.camera.synthetic")


class SyntheticCamera(Camera):
    """Cycles through the classes of a scene generator; frame i of class c has seed (seed, i)."""

    driver = "synthetic"

    def __init__(self, camera_id: str, *, scene: str, width: int, height: int, fps: float,
                 seed: int = 0, lot: int = 0, classes: list[str] | None = None,
                 on_bad_input: BadInputHook | None = None):
        super().__init__(camera_id, on_bad_input=on_bad_input)
        self.scene, self.width, self.height = scene, width, height
        self.seed, self.lot = seed, lot
        self._pacer = Pacer(fps)
        self._n = 0
        self._render, all_classes = _generator(scene)
        self.classes = list(classes or all_classes)
        unknown = [c for c in self.classes if c not in all_classes and _slug_match(c, all_classes) is None]
        if unknown:
            raise ConfigError(f"camera.classes: unknown {scene} class(es) {unknown} (known: {list(all_classes)})")
        self.classes = [c if c in all_classes else _slug_match(c, all_classes) for c in self.classes]

    def open(self) -> None:
        log.info("synthetic %s camera: %dx%d, %d classes", self.scene, self.width, self.height, len(self.classes))

    def read(self, timeout: float) -> RawImage | None:
        if not self._pacer.wait(timeout):
            return None
        cls = self.classes[self._n % len(self.classes)]
        img = self._render(cls, self.seed * 1_000_003 + self._n, self.lot, self.width, self.height)
        self._n += 1
        return RawImage(img, "Mono8", f"{self.scene}:{cls}")

    def close(self) -> None:
        pass


def _slug_match(name: str, classes: tuple[str, ...]) -> str | None:
    key = name.lower().replace(" ", "_")
    for c in classes:
        if c.lower().replace(" ", "_") == key:
            return c
    return None


def _generator(scene: str):
    if scene == "sem":
        from inspector.synth.sem import SEM_CLASSES, render_sem

        def render(cls, seed, lot, w, h):
            return render_sem(cls, seed, lot=lot, width=w, height=h)[0]

        return render, tuple(SEM_CLASSES)
    if scene == "tablet":
        from inspector.synth.tablets import TABLET_CLASSES, render_tablet

        def render(cls, seed, lot, w, h):
            return render_tablet(cls, seed, width=w, height=h)[0]

        return render, tuple(TABLET_CLASSES)
    if scene == "noise":
        def render(cls, seed, lot, w, h):  # textured noise: cheap frames for transport tests
            rng = np.random.default_rng(seed)
            base = rng.normal(128, 30, (h // 8 + 1, w // 8 + 1)).astype(np.float32)
            import cv2

            img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 6, (h, w))
            return np.clip(img, 0, 255).astype(np.uint8)

        return render, ("noise",)
    raise ConfigError(f"camera.scene: unknown synthetic scene {scene!r}")
