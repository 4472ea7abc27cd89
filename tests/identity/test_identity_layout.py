"""Serving stays apart from offline work: the daemon's identity path never imports TensorFlow or
``inspector.offline`` (checked in a fresh interpreter, so other tests' imports cannot hide a leak)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVING_MODULES = [
    "inspector.identity",
    "inspector.identity.tiling",
    "inspector.identity.runtime",
    "inspector.identity.gradcam",
    "inspector.inspections",
    "inspector.inspections.excipient_identity",
]
FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "inspector.offline")


def _imported_after(modules: list[str]) -> list[str]:
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_serving_imports_no_tensorflow_and_no_offline_code():
    mods = _imported_after(SERVING_MODULES)
    assert "inspector.inspections.excipient_identity" in mods  # the check really imported it
    leaked = [m for m in mods if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert leaked == [], f"serving path imported offline modules: {leaked[:10]}"


def test_offline_package_is_where_training_lives():
    mods = _imported_after(["inspector.offline.identity.train"])
    assert "inspector.offline.identity.train" in mods
    assert "tensorflow" not in mods  # TF is imported lazily, inside the training functions
