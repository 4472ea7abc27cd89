"""A calibrated copy of the shipped identity model, built once per test session (open-set and drift tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = "excipient-identity-default"
_CACHE: dict[int, tuple[Path, Path]] = {}


def calibrated_repo(tmp_path_factory, per_class: int = 6) -> tuple[Path, Path]:
    """(model repository holding MODEL/1 calibrated on ``per_class`` fresh synthetic frames per class,
    the calibration data folder). Real rendering, real ONNX Runtime, the real calibration step."""
    if per_class not in _CACHE:
        from inspector.offline.identity.openset_fit import calibrate_model
        from inspector.synth.dataset import write_sem_dataset

        base = tmp_path_factory.mktemp("openset")
        data = write_sem_dataset(base / "cal", per_class, seed=4242, progress=False)
        repo = base / "models"
        shutil.copytree(REPO / "models" / MODEL / "1", repo / MODEL / "1")
        calibrate_model(repo / MODEL / "1", data, progress=False, command="tests", drift_dims=8)
        _CACHE[per_class] = (repo, Path(data))
    return _CACHE[per_class]
