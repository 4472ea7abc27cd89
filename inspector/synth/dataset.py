"""Image-folder datasets of synthetic scenes with their ground truth.

Layout: ``OUT/<class_slug>/<NNNN>.png`` plus ``OUT/params.csv`` (one row per image, scalar
parameters) and ``OUT/params.json`` (the run's arguments and every image's full parameters,
including particle lists). Each image's seed is derived with SeedSequence from
``(seed, class index, image index, lot)``, so an image does not depend on ``per_class`` or on which
other classes are written.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from inspector.synth.errors import SynthError
from inspector.synth.rng import check_seed, derive_seed
from inspector.synth.sem_spec import SEM_CLASSES, class_slug, resolve_sem_class

__all__ = ["image_seed", "write_sem_dataset", "write_tablet_dataset", "read_params", "PARAMS_CSV", "PARAMS_JSON"]

PARAMS_CSV = "params.csv"
PARAMS_JSON = "params.json"
SCHEMA = "inspector.synth.dataset/1"


def image_seed(seed: int, class_index: int, image_index: int, lot: int = 0) -> int:
    """The seed of image ``image_index`` of class ``class_index`` in a dataset generated with ``seed``."""
    return derive_seed(seed, class_index, image_index, lot)


def _check_per_class(per_class: object) -> int:
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or int(per_class) < 1:
        raise SynthError(f"per_class must be a positive integer, got {per_class!r}")
    return int(per_class)


def _prepare(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SynthError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise SynthError(f"output directory {out} is not empty; choose a new one")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write(
    out: Path,
    jobs: Sequence[tuple[str, int, int]],  # (slug, class_index, image_index)
    render: Callable[[int, int, int], tuple[np.ndarray, dict[str, Any]]],
    meta: dict[str, Any],
    progress: bool,
) -> Path:
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    for slug, ci, ii in tqdm(jobs, desc=f"synth {meta['kind']}", unit="img", disable=not progress):
        img, params = render(ci, ii, meta["seed"])
        rel = f"{slug}/{ii:04d}.png"
        path = out / rel
        path.parent.mkdir(exist_ok=True)
        if not cv2.imwrite(str(path), img):
            raise SynthError(f"could not write {path}")
        rows.append({"file": rel, "index": ii, **params})
    scalar_keys: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in scalar_keys and not isinstance(v, (list, dict)):
                scalar_keys.append(k)
    with open(out / PARAMS_CSV, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=scalar_keys, restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(out / PARAMS_JSON, "w", encoding="utf-8") as f:
        json.dump({"schema": SCHEMA, **meta, "images": rows}, f, indent=1)
    return out


def write_sem_dataset(
    out_dir: str | Path,
    per_class: int,
    seed: int,
    lot: int = 0,
    data_bar: bool = False,
    classes: Iterable[str] | None = None,
    progress: bool = True,
    size_factor: float | None = None,
    aspect_factor: float | None = None,
) -> Path:
    """Write ``per_class`` SEM frames of each class (all ten by default) to ``out_dir``; returns it.

    ``size_factor`` / ``aspect_factor``: the lot's shift set explicitly (else drawn from ``lot``)."""
    from inspector.synth.sem import render_sem

    per_class = _check_per_class(per_class)
    seed = check_seed(seed)
    check_seed(lot)
    idxs = sorted({resolve_sem_class(c) for c in classes}) if classes is not None else list(range(len(SEM_CLASSES)))
    if not idxs:
        raise SynthError("no SEM classes selected")
    out = _prepare(out_dir)
    jobs = [(class_slug(SEM_CLASSES[ci]), ci, ii) for ci in idxs for ii in range(per_class)]

    def render(ci: int, ii: int, s: int) -> tuple[np.ndarray, dict[str, Any]]:
        return render_sem(SEM_CLASSES[ci], image_seed(s, ci, ii, lot), lot=lot, data_bar=data_bar,
                          size_factor=size_factor, aspect_factor=aspect_factor)

    meta = {"kind": "sem", "seed": seed, "per_class": per_class, "lot": int(lot), "data_bar": bool(data_bar),
            "size_factor": size_factor, "aspect_factor": aspect_factor,
            "classes": [SEM_CLASSES[i] for i in idxs]}
    return _write(out, jobs, render, meta, progress)


def write_tablet_dataset(
    out_dir: str | Path,
    per_class: int,
    seed: int,
    view: str = "whole",
    progress: bool = True,
) -> Path:
    """Write ``per_class`` tablet images of each class (severity drawn per image) to ``out_dir``."""
    from inspector.synth.tablets import TABLET_CLASSES, TABLET_VIEWS, render_tablet

    per_class = _check_per_class(per_class)
    seed = check_seed(seed)
    if view not in TABLET_VIEWS:
        raise SynthError(f"unknown view {view!r}; known: {', '.join(TABLET_VIEWS)}")
    out = _prepare(out_dir)
    jobs = [(name, ci, ii) for ci, name in enumerate(TABLET_CLASSES) for ii in range(per_class)]

    def render(ci: int, ii: int, s: int) -> tuple[np.ndarray, dict[str, Any]]:
        return render_tablet(TABLET_CLASSES[ci], image_seed(s, ci, ii, 0), view=view)

    meta = {"kind": "tablets", "seed": seed, "per_class": per_class, "view": view, "classes": list(TABLET_CLASSES)}
    return _write(out, jobs, render, meta, progress)


def read_params(out_dir: str | Path) -> dict[str, Any]:
    """The ``params.json`` of a dataset written here (plain JSON, validated for its schema)."""
    p = Path(out_dir) / PARAMS_JSON
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SynthError(f"{p} not found: not a synthetic dataset folder") from None
    except (OSError, ValueError) as e:
        raise SynthError(f"cannot read {p}: {e}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SynthError(f"{p} is not a {SCHEMA} file")
    return data
