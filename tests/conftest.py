"""Shared fixtures: paths to the real datasets in ../shared (tests skip cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INSPECTOR_SHARED", REPO.parent / "shared"))

# numpy/BLAS and ONNX Runtime threads fight on 2 cores (stack notes); keep tests predictable.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _dataset(name: str) -> Path:
    p = SHARED / "datasets" / name
    if not p.is_dir():
        pytest.skip(f"real dataset {p} not present (needs ../shared beside the repo)")
    return p


@pytest.fixture(scope="session")
def sem_maltodextrin_dir() -> Path:
    return _dataset("sem-maltodextrin")


@pytest.fixture(scope="session")
def magnetic_tile_dir() -> Path:
    return _dataset("magnetic-tile")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
