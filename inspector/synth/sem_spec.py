"""The ten seed-000 excipients: names, magnifications and particle populations, in one table.

Sizes are area-equivalent diameters in µm drawn from a log-normal (median, geometric SD), from the
grades' public nominal particle sizes. Apparent size follows the real size × magnification: the pixel
size of the simulated Hitachi TM1000 frame (1280 × 960) is :data:`UM_PER_PX_AT_100X` µm at 100×
and scales as ``100 / magnification`` (1.0 µm/px at 100×, i.e. a 1.28 mm field of view, which matches
the 4"×5" print convention the TM1000 magnification refers to).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from inspector.synth.errors import SynthError

__all__ = [
    "UM_PER_PX_AT_100X",
    "ParticleFamily",
    "SemClassSpec",
    "SEM_SPECS",
    "SEM_CLASSES",
    "class_slug",
    "resolve_sem_class",
    "um_per_px",
    "lot_spec",
]

#: µm per pixel at 100× on the simulated 1280-pixel-wide TM1000 frame
UM_PER_PX_AT_100X = 1.0

#: particle outline / height-profile families drawn by :mod:`inspector.synth.sem_shapes`
SHAPES = ("fibre", "chunk", "sphere", "rugged_sphere", "starch", "lactose")


@dataclass(frozen=True)
class ParticleFamily:
    """One sub-population of particles of a class."""

    shape: str  # one of SHAPES
    weight: float  # number fraction within the class
    d_median_um: float  # median area-equivalent diameter
    d_gsd: float  # geometric standard deviation of the diameter
    aspect_median: float  # median length / width
    aspect_gsd: float
    roughness: float  # surface roughness amplitude, relative to the particle's inradius
    height: float = 1.0  # relief scale (1 = hemispherical cross-section)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown particle shape {self.shape!r}")


@dataclass(frozen=True)
class SemClassSpec:
    """Everything that makes one excipient look like itself."""

    name: str
    magnification: int
    families: tuple[ParticleFamily, ...]
    coverage: float  # fraction of the frame covered by particle area (before overlaps)
    yield_: float  # mean secondary-electron yield of the material (tape ≈ 0.3)
    d_min_um: float
    d_max_um: float

    @property
    def slug(self) -> str:
        return class_slug(self.name)


F = ParticleFamily
#: fixed class order (the label index everywhere)
SEM_SPECS: tuple[SemClassSpec, ...] = (
    # MCC grades share a 50 µm nominal size and differ in shape: KG-802 mostly fibres that overlap
    # PH-101's mixed population (the pair the seed's CNN confuses), KG-1000 thin filaments.
    SemClassSpec("CEOLUS KG-802", 250, (
        F("fibre", 0.70, 50, 1.45, 4.0, 1.45, 0.10, 0.55),
        F("chunk", 0.30, 45, 1.40, 1.9, 1.30, 0.12, 0.60),
    ), 0.42, 0.78, 12, 180),
    SemClassSpec("CEOLUS KG-1000", 250, (
        F("fibre", 0.90, 42, 1.40, 8.5, 1.35, 0.08, 0.50),
        F("chunk", 0.10, 38, 1.40, 2.4, 1.30, 0.12, 0.60),
    ), 0.36, 0.80, 10, 160),
    SemClassSpec("CEOLUS PH-101", 250, (
        F("fibre", 0.55, 50, 1.45, 3.3, 1.45, 0.10, 0.55),
        F("chunk", 0.45, 48, 1.40, 1.6, 1.30, 0.12, 0.65),
    ), 0.44, 0.78, 12, 180),
    SemClassSpec("CEOLUS PH-302", 250, (
        F("chunk", 0.85, 95, 1.35, 1.35, 1.18, 0.10, 0.75),
        F("fibre", 0.15, 80, 1.35, 2.2, 1.25, 0.10, 0.60),
    ), 0.48, 0.80, 25, 260),
    SemClassSpec("Dried corn starch", 500, (
        F("starch", 1.00, 14, 1.22, 1.12, 1.08, 0.04, 0.85),
    ), 0.45, 0.85, 5, 28),
    SemClassSpec("Mannit Q", 250, (
        F("sphere", 0.55, 14, 1.35, 1.05, 1.04, 0.015, 1.0),
        F("sphere", 0.30, 38, 1.30, 1.06, 1.04, 0.02, 1.0),
        F("sphere", 0.15, 85, 1.25, 1.07, 1.04, 0.025, 1.0),
    ), 0.45, 0.82, 5, 180),
    SemClassSpec("PEARLITOL 200SD", 150, (
        F("rugged_sphere", 1.00, 180, 1.30, 1.12, 1.08, 0.08, 0.95),
    ), 0.52, 0.80, 60, 420),
    # lactose is standardised at 150× within the brand: the three grades differ in size
    SemClassSpec("Pharmatose 100M", 150, (
        F("lactose", 1.00, 150, 1.32, 1.45, 1.20, 0.05, 0.75),
    ), 0.40, 0.84, 40, 380),
    SemClassSpec("Pharmatose 125M", 150, (
        F("lactose", 1.00, 110, 1.38, 1.45, 1.20, 0.05, 0.75),
    ), 0.40, 0.84, 30, 300),
    SemClassSpec("Pharmatose 200M", 150, (
        F("lactose", 1.00, 45, 1.45, 1.40, 1.20, 0.06, 0.75),
    ), 0.38, 0.84, 10, 140),
)
del F

#: the 10 display names, fixed order
SEM_CLASSES: tuple[str, ...] = tuple(s.name for s in SEM_SPECS)

_SLUG_RE = re.compile(r"[^a-z0-9_-]+")


def class_slug(name: str) -> str:
    """Folder-safe name: lower case, spaces to ``_`` (``"CEOLUS KG-802"`` → ``"ceolus_kg-802"``).

    Idempotent, so a slug maps to itself.
    """
    s = _SLUG_RE.sub("_", str(name).strip().lower().replace(" ", "_"))
    return s.strip("_")


_BY_KEY = {**{s.name: i for i, s in enumerate(SEM_SPECS)}, **{class_slug(s.name): i for i, s in enumerate(SEM_SPECS)}}


def resolve_sem_class(cls: str | int) -> int:
    """Index of a class given by display name, slug or index; :class:`SynthError` if unknown."""
    if isinstance(cls, (int, np.integer)) and not isinstance(cls, bool):
        if 0 <= int(cls) < len(SEM_SPECS):
            return int(cls)
        raise SynthError(f"SEM class index {cls} out of range 0..{len(SEM_SPECS) - 1}")
    key = str(cls)
    idx = _BY_KEY.get(key, _BY_KEY.get(class_slug(key)))
    if idx is None:
        raise SynthError(f"unknown SEM class {cls!r}; known: {', '.join(class_slug(n) for n in SEM_CLASSES)}")
    return idx


def um_per_px(magnification: float) -> float:
    """Pixel size in µm of the simulated TM1000 frame at ``magnification``."""
    return UM_PER_PX_AT_100X * 100.0 / float(magnification)


#: relative lot-to-lot spread (1 σ) of the median size and median aspect ratio
LOT_SIZE_SIGMA = 0.05
LOT_ASPECT_SIGMA = 0.05


def lot_spec(index: int, lot: int, size_factor: float | None = None,
             aspect_factor: float | None = None) -> tuple[SemClassSpec, dict[str, float]]:
    """The class spec of lot ``lot``: median sizes and aspects shifted by a few percent.

    Lot 0 is the nominal spec. Other lots draw one size factor and one aspect factor from a stream
    seeded by (class, lot) only, so every image of a lot shares the same drift. ``size_factor`` /
    ``aspect_factor`` set a factor explicitly instead (a controlled shift, for drift-detection power).
    """
    spec = SEM_SPECS[index]
    if isinstance(lot, bool) or not isinstance(lot, (int, np.integer)) or lot < 0:
        raise SynthError(f"lot must be a non-negative integer, got {lot!r}")
    for name, f in (("size_factor", size_factor), ("aspect_factor", aspect_factor)):
        if f is not None and not (isinstance(f, (int, float)) and 0.5 <= float(f) <= 2.0):
            raise SynthError(f"{name} must be a number in 0.5..2.0, got {f!r}")
    if lot == 0 and size_factor is None and aspect_factor is None:
        return spec, {"size_factor": 1.0, "aspect_factor": 1.0}
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([0x10F, index, int(lot)])))
    zs, za = rng.standard_normal(2) if lot else (0.0, 0.0)
    size_f = float(np.exp(LOT_SIZE_SIGMA * np.clip(zs, -2.5, 2.5))) if size_factor is None else float(size_factor)
    asp_f = float(np.exp(LOT_ASPECT_SIGMA * np.clip(za, -2.5, 2.5))) if aspect_factor is None else float(aspect_factor)
    fams = tuple(
        replace(f, d_median_um=f.d_median_um * size_f, aspect_median=1.0 + (f.aspect_median - 1.0) * asp_f)
        for f in spec.families
    )
    return replace(spec, families=fams), {"size_factor": size_f, "aspect_factor": asp_f}
